import Synchronization

/// Gateway-side load of one endpoint: requests and prompt tokens routed to it
/// and not yet finished. Incremented when a request is routed, decremented
/// exactly once when its stream ends (however it ends).
public final class PodLoad: Sendable {
    private let requestsInFlight = Atomic<Int>(0)
    private let tokensInFlight = Atomic<Int>(0)
    private let routedTotal = Atomic<Int>(0)
    private let promptTotal = Atomic<Int>(0)
    private let completionTotal = Atomic<Int>(0)
    public init() {}

    /// Prompt tokens the pod's responses reported (usage), since start.
    public var promptTokensTotal: Int { promptTotal.load(ordering: .relaxed) }
    /// Completion tokens the pod's responses reported or the gateway counted
    /// from streamed content events when no usage came.
    public var completionTokensTotal: Int { completionTotal.load(ordering: .relaxed) }

    public var requests: Int { requestsInFlight.load(ordering: .relaxed) }
    public var tokens: Int { tokensInFlight.load(ordering: .relaxed) }
    public var routed: Int { routedTotal.load(ordering: .relaxed) }

    public func start(tokens: Int) {
        requestsInFlight.add(1, ordering: .relaxed)
        tokensInFlight.add(tokens, ordering: .relaxed)
        routedTotal.add(1, ordering: .relaxed)
    }

    /// A response's usage is known: its real prompt tokens replace the
    /// estimate charged at routing (when reported), and the totals grow.
    /// Returns the charge `finish` must release.
    public func settle(charged: Int, promptTokens: Int?, completionTokens: Int) -> Int {
        if let p = promptTokens {
            tokensInFlight.add(p - charged, ordering: .relaxed)
            promptTotal.add(p, ordering: .relaxed)
        }
        completionTotal.add(completionTokens, ordering: .relaxed)
        return promptTokens ?? charged
    }

    public func finish(tokens: Int) {
        requestsInFlight.subtract(1, ordering: .relaxed)
        tokensInFlight.subtract(tokens, ordering: .relaxed)
    }
}
