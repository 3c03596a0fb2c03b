/// What routers read about a model's candidate endpoints, as arrays aligned
/// by index: scrape freshness, this model's metrics (nil unless fresh) and
/// the gateway's load counter. Built once per published snapshot, so a
/// routing decision indexes arrays instead of hashing addresses per pod.
public struct ModelView: Sendable {
    public let model: String
    public let endpoints: [PodEndpoint]
    public let fresh: [Bool]
    public let metrics: [ModelMetrics?]
    public let loads: [PodLoad?]
    /// Whether any endpoint is fresh (then routers use only fresh ones).
    public let anyFresh: Bool
    public let freshCount: Int
    /// The deciding request's expected output tokens (its `max_tokens`, or
    /// a default), for scorers that estimate time to completion.
    public var outputTokens = 128
    /// Request-scoped prefix signals, filled by a prefix scorer's `prepare`:
    /// the prompt's block keys and, per candidate, how many of them the
    /// pod holds (empty until prepared).
    public var promptKeys: [UInt64] = []
    public var cachedBlocks: [Int] = []
    /// The prompt's length in bytes (-1: no prompt given).
    public var promptBytes = -1

    /// A view of any candidate list (a subset, or endpoints the snapshot no
    /// longer knows: those are neither fresh nor loaded).
    public init(model: String, candidates: [PodEndpoint], pods: [String: PodState], loads: [String: PodLoad]) {
        self.model = model
        endpoints = candidates
        var fresh: [Bool] = [], metrics: [ModelMetrics?] = [], ls: [PodLoad?] = []
        fresh.reserveCapacity(candidates.count)
        metrics.reserveCapacity(candidates.count)
        ls.reserveCapacity(candidates.count)
        var n = 0
        for e in candidates {
            let state = pods[e.address]
            let f = state?.health.isFresh == true
            fresh.append(f)
            metrics.append(f ? state?.models[model] : nil)
            ls.append(loads[e.address])
            if f { n += 1 }
        }
        self.fresh = fresh
        self.metrics = metrics
        self.loads = ls
        freshCount = n
        anyFresh = n > 0
    }

    public var count: Int { endpoints.count }

    /// May a router use endpoint `i`: fresh, or nothing is fresh.
    @inline(__always)
    public func usable(_ i: Int) -> Bool { !anyFresh || fresh[i] }

    /// Gateway in-flight requests at endpoint `i` (0 when unknown).
    @inline(__always)
    public func inFlight(_ i: Int) -> Int { loads[i]?.requests ?? 0 }
}
