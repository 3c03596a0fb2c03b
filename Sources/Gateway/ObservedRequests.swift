import EventLoop
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
        /// The response's HTTP status, set by the observer (0 until seen):
        /// the routing stream labels its request with it when it ends.
        public let status = ResponseStatus()
    }

    public final class ResponseStatus: Sendable {
        private let code = Atomic<Int>(0)
        public init() {}
        public var value: Int { code.load(ordering: .relaxed) }
        public func set(_ v: Int) { code.store(v, ordering: .relaxed) }
    }

    public static let header = "x-switchboard-ticket"

    private let entries = Mutex<[UInt64: Entry]>([:])
    private let next = Atomic<UInt64>(1)
    /// How long an entry stays findable after its routing stream ended (0:
    /// not at all). With shared state, usage read by another replica's
    /// observer arrives a batch interval or two later, usually after the
    /// routing stream is gone.
    private let lingerNanos: UInt64
    /// Ended entries still findable, oldest first (deadline, ticket).
    private let ended = Mutex<(queue: [(UInt64, UInt64)], head: Int, entries: [UInt64: Entry])>(([], 0, [:]))

    public init(lingerNanos: UInt64 = 0) {
        self.lingerNanos = lingerNanos
    }

    /// Registers a routed request; returns its ticket.
    public func register(_ entry: Entry) -> UInt64 {
        let t = next.add(1, ordering: .relaxed).oldValue
        entries.withLock { $0[t] = entry }
        return t
    }

    public func entry(_ ticket: UInt64) -> Entry? {
        if let e = entries.withLock({ $0[ticket] }) { return e }
        guard lingerNanos > 0 else { return nil }
        return ended.withLock { $0.entries[ticket] }
    }

    public func remove(_ ticket: UInt64) {
        guard let e = entries.withLock({ $0.removeValue(forKey: ticket) }), lingerNanos > 0 else { return }
        let now = monotonicNanos()
        ended.withLock { x in
            while x.head < x.queue.count && x.queue[x.head].0 <= now {
                x.entries[x.queue[x.head].1] = nil
                x.head += 1
            }
            if x.head > 4096 && x.head * 2 > x.queue.count {
                x.queue.removeFirst(x.head)
                x.head = 0
            }
            x.queue.append((now &+ lingerNanos, ticket))
            x.entries[ticket] = e
        }
    }

    /// Requests routed and not yet ended (for /debug and tests).
    public var count: Int { entries.withLock { $0.count } }
}
