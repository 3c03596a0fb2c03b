import Synchronization

/// Gateway-side load of one endpoint: requests and prompt tokens routed to it
/// and not yet finished. Incremented when a request is routed, decremented
/// exactly once when its stream ends (however it ends).
public final class PodLoad: Sendable {
    private let requestsInFlight = Atomic<Int>(0)
    private let tokensInFlight = Atomic<Int>(0)
    private let routedTotal = Atomic<Int>(0)
    public init() {}

    public var requests: Int { requestsInFlight.load(ordering: .relaxed) }
    public var tokens: Int { tokensInFlight.load(ordering: .relaxed) }
    public var routed: Int { routedTotal.load(ordering: .relaxed) }

    public func start(tokens: Int) {
        requestsInFlight.add(1, ordering: .relaxed)
        tokensInFlight.add(tokens, ordering: .relaxed)
        routedTotal.add(1, ordering: .relaxed)
    }

    public func finish(tokens: Int) {
        requestsInFlight.subtract(1, ordering: .relaxed)
        tokensInFlight.subtract(tokens, ordering: .relaxed)
    }
}
