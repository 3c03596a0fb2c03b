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
    /// Other gateway replicas' in flight on this pod (shared state; 0 when not shared).
    private let peerRequestsInFlight = Atomic<Int>(0)
    private let peerTokensInFlight = Atomic<Int>(0)
    public init() {}

    /// Prompt tokens the pod's responses reported (usage), since start.
    public var promptTokensTotal: Int { promptTotal.load(ordering: .relaxed) }
    /// Completion tokens the pod's responses reported or the gateway counted
    /// from streamed content events when no usage came.
    public var completionTokensTotal: Int { completionTotal.load(ordering: .relaxed) }

    /// In flight from every replica: this one's plus its peers' last report
    /// (what routers weigh).
    public var requests: Int { requestsInFlight.load(ordering: .relaxed) + peerRequestsInFlight.load(ordering: .relaxed) }
    public var tokens: Int { tokensInFlight.load(ordering: .relaxed) + peerTokensInFlight.load(ordering: .relaxed) }
    /// In flight from this replica only (what it reports to its peers and on `/metrics`).
    public var localRequests: Int { requestsInFlight.load(ordering: .relaxed) }
    public var localTokens: Int { tokensInFlight.load(ordering: .relaxed) }
    /// The peers' part of `requests`/`tokens`.
    public var peerRequests: Int { peerRequestsInFlight.load(ordering: .relaxed) }

    /// The other replicas' latest in-flight report for this pod.
    public func setPeers(requests: Int, tokens: Int) {
        peerRequestsInFlight.store(max(0, requests), ordering: .relaxed)
        peerTokensInFlight.store(max(0, tokens), ordering: .relaxed)
    }
    public var routed: Int { routedTotal.load(ordering: .relaxed) }

    public func start(tokens: Int) {
        requestsInFlight.add(1, ordering: .relaxed)
        tokensInFlight.add(tokens, ordering: .relaxed)
        routedTotal.add(1, ordering: .relaxed)
    }

    /// A response's usage is known: its real prompt tokens replace the
    /// estimate charged at routing (when reported), and the totals grow.
    /// Returns the charge `finish` must release.
    /// `inFlight: false`: the request was released already; only the totals grow.
    public func settle(charged: Int, promptTokens: Int?, completionTokens: Int, inFlight: Bool = true) -> Int {
        if let p = promptTokens {
            if inFlight { tokensInFlight.add(p - charged, ordering: .relaxed) }
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

/// One routed request's charge on its pod. The stream that routed it
/// releases it (`finish`, once); usage may arrive from that stream or from
/// an observer stream, before or after the release (`settle`, once): the
/// totals always grow, the in-flight tokens are corrected only while the
/// charge is still held. Safe from any thread.
public final class RequestCharge: Sendable {
    public let load: PodLoad
    private struct State {
        var tokens: Int
        var settled = false
        var finished = false
    }
    private let state: Mutex<State>

    /// Charges `load` with one request of `tokens` estimated prompt tokens.
    public init(load: PodLoad, tokens: Int) {
        self.load = load
        state = Mutex(State(tokens: tokens))
        load.start(tokens: tokens)
    }

    /// Records the response's usage; false when it was already recorded.
    @discardableResult
    public func settle(promptTokens: Int?, completionTokens: Int) -> Bool {
        state.withLock { s in
            guard !s.settled else { return false }
            s.settled = true
            if s.finished {
                // Released already: only the totals grow.
                _ = load.settle(charged: 0, promptTokens: promptTokens, completionTokens: completionTokens, inFlight: false)
            } else {
                s.tokens = load.settle(charged: s.tokens, promptTokens: promptTokens, completionTokens: completionTokens)
            }
            return true
        }
    }

    /// Releases the charge; later calls do nothing.
    public func finish() {
        state.withLock { s in
            guard !s.finished else { return }
            s.finished = true
            load.finish(tokens: s.tokens)
        }
    }
}
