import PodSnapshot
import Routing
import Synchronization

/// Routed requests whose response is read by the usage observer (a second
/// ext_proc filter in Envoy's observability mode) instead of by the stream
/// that routed them. The routing stream registers the request under a
/// ticket it sends upstream in `x-switchboard-ticket`; Envoy copies that
/// into the response headers the observer sees (and strips it before the
/// client does); the observer finds the request's charge by it. The entry
/// lives exactly as long as the routing stream.
public final class ObservedRequests: Sendable {
    public struct Entry: Sendable {
        public let requestID: String
        public let charge: RequestCharge?
        /// When the pod was chosen (TTFT is measured from here).
        public let routedAt: UInt64
        /// The routing strategy's own charge to settle (fairness), if any.
        public let usage: (any UsageSink)?
    }

    public static let header = "x-switchboard-ticket"

    private let entries = Mutex<[UInt64: Entry]>([:])
    private let next = Atomic<UInt64>(1)

    public init() {}

    /// Registers a routed request; returns its ticket.
    public func register(_ entry: Entry) -> UInt64 {
        let t = next.add(1, ordering: .relaxed).oldValue
        entries.withLock { $0[t] = entry }
        return t
    }

    public func entry(_ ticket: UInt64) -> Entry? {
        entries.withLock { $0[ticket] }
    }

    public func remove(_ ticket: UInt64) {
        _ = entries.withLock { $0.removeValue(forKey: ticket) }
    }

    /// Requests routed and not yet ended (for /debug and tests).
    public var count: Int { entries.withLock { $0.count } }
}
