import PodSnapshot

/// `power-of-two`: two distinct pods drawn at random (fresh ones when any
/// candidate is fresh), the one with fewer requests in flight wins, counted
/// as `least-request` counts them (ties: the first drawn). Constant work per
/// decision whatever the pod count. Signal: gateway accounting, plus the
/// scrape when fresh.
public struct PowerOfTwoRouter: Router {
    public let name = "power-of-two"
    private let source: RandomSource
    private let load = LeastRequestScorer()

    public init(source: RandomSource) { self.source = source }

    public func decide(_ request: RoutingRequest, view: ModelView) throws(RoutingError) -> RoutingDecision {
        let n = view.usableCount
        guard n > 0 else { throw .noCandidates(model: request.model) }
        if n == 1 { return RoutingDecision(pod: view.endpoints[view.usableIndex(0)]) }
        let i = Int(source.next() % UInt64(n))
        var j = Int(source.next() % UInt64(n - 1))
        if j >= i { j += 1 }
        let a = view.usableIndex(i), b = view.usableIndex(j)
        let la = load.cost(at: a, in: view) ?? 0, lb = load.cost(at: b, in: view) ?? 0
        return RoutingDecision(pod: view.endpoints[lb < la ? b : a])
    }
}

extension ModelView {
    /// How many endpoints a router may use (the fresh ones, or all).
    var usableCount: Int { anyFresh ? freshCount : count }

    /// The index of the k-th usable endpoint (direct when all are usable,
    /// else one scan of the freshness flags).
    func usableIndex(_ k: Int) -> Int {
        guard anyFresh, freshCount < count else { return k }
        var seen = 0
        for i in fresh.indices where fresh[i] {
            if seen == k { return i }
            seen += 1
        }
        return k  // unreachable: k < freshCount
    }
}
