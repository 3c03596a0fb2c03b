import PodSnapshot

/// `power-of-two`: two distinct pods drawn at random (fresh ones when any
/// candidate is fresh), the one with fewer gateway in-flight requests wins
/// (ties: the first drawn). Constant work per decision whatever the pod
/// count. Signal: gateway accounting.
public struct PowerOfTwoRouter: Router {
    public let name = "power-of-two"
    private let source: RandomSource

    public init(source: RandomSource) { self.source = source }

    public func route(_ request: RoutingRequest, candidates: [PodEndpoint], snapshot: PodSnapshot) throws(RoutingError) -> PodEndpoint {
        try decide(request, candidates: candidates, snapshot: snapshot).pod
    }

    public func decide(_ request: RoutingRequest, candidates: [PodEndpoint], snapshot: PodSnapshot) throws(RoutingError) -> RoutingDecision {
        let pool = FreshPool(candidates, snapshot: snapshot)
        guard pool.count > 0 else { throw .noCandidates(model: request.model) }
        if pool.count == 1 { return RoutingDecision(pod: pool[0]) }
        let i = Int(source.next() % UInt64(pool.count))
        var j = Int(source.next() % UInt64(pool.count - 1))
        if j >= i { j += 1 }
        let a = pool[i], b = pool[j]
        let la = snapshot.loads[a.address]?.requests ?? 0, lb = snapshot.loads[b.address]?.requests ?? 0
        return RoutingDecision(pod: lb < la ? b : a)
    }
}

/// The candidates a strategy may use: the fresh ones when any is fresh,
/// else all of them. Indexes without copying.
struct FreshPool {
    let candidates: [PodEndpoint]
    let snapshot: PodSnapshot
    let freshOnly: Bool
    let count: Int

    init(_ candidates: [PodEndpoint], snapshot: PodSnapshot) {
        self.candidates = candidates
        self.snapshot = snapshot
        var fresh = 0
        for p in candidates where snapshot.pods[p.address]?.health.isFresh == true { fresh += 1 }
        freshOnly = fresh > 0
        count = fresh > 0 ? fresh : candidates.count
    }

    /// The k-th usable candidate (a scan; callers take one or two).
    subscript(k: Int) -> PodEndpoint {
        guard freshOnly else { return candidates[k] }
        var seen = 0
        for p in candidates where snapshot.pods[p.address]?.health.isFresh == true {
            if seen == k { return p }
            seen += 1
        }
        return candidates[k]  // unreachable: k < count
    }
}
