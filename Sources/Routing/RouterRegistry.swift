import Synchronization

/// The strategies a gateway offers, by name, and weighted blends of the
/// scoring ones (`least-request:1,least-kv-cache:2`), parsed once and kept.
public struct RouterRegistry: Sendable {
    private let routers: [String: any Router]
    private let scorers: [String: any Scorer]
    private let source: RandomSource
    private let blends: BlendCache
    public let defaultStrategy: String?
    /// The prefix strategies' shared index (for `/metrics` and `/debug`).
    public let prefixCache: PrefixCache?
    /// `vtc-basic`'s user counters (shared state applies other replicas' charges).
    public var fairness: VTCBasicRouter? { routers["vtc-basic"] as? VTCBasicRouter }

    /// `defaultStrategy` is used when a request names none; nil makes the
    /// `routing-strategy` header mandatory. `scorers` may be blended.
    public init(routers: [any Router], scorers: [any Scorer] = [], defaultStrategy: String?, source: RandomSource = RandomSource(seed: nil),
                prefixCache: PrefixCache? = nil) {
        self.prefixCache = prefixCache
        var m: [String: any Router] = [:]
        for r in routers { m[r.name] = r }
        var s: [String: any Scorer] = [:]
        for x in scorers { s[x.name] = x }
        self.routers = m
        self.scorers = s
        self.source = source
        self.blends = BlendCache()
        self.defaultStrategy = defaultStrategy
    }

    /// The registry this build ships: `random`, `power-of-two`, and the
    /// scoring strategies `least-request`, `least-kv-cache`,
    /// `least-gpu-cache` (the same V1 signal) and `throughput`.
    /// `sessionInner` places new sessions for `session-affinity`.
    public static func standard(defaultStrategy: String? = "random", seed: UInt64? = nil,
                                sessionInner: String = "least-request",
                                prefix: PrefixCache = PrefixCache(), sink: (any RoutingStateSink)? = nil) -> RouterRegistry {
        let source = RandomSource(seed: seed)
        let scorers: [any Scorer] = [LeastRequestScorer(), LeastKVCacheScorer(), LeastKVCacheScorer(name: "least-gpu-cache"),
                                     ThroughputScorer(), LeastLatencyScorer(), PrefixMatchScorer(cache: prefix)]
        var routers: [any Router] = [RandomRouter(source: source), PowerOfTwoRouter(source: source),
                                     PrefixCacheRouter(cache: prefix, source: source),
                                     PrefixCacheCostRouter(cache: prefix, source: source),
                                     PrebleRouter(cache: prefix, source: source)]
            + scorers.map { ScoringRouter(name: $0.name, parts: [($0, 1)], source: source) }
        let base = RouterRegistry(routers: routers, scorers: scorers, defaultStrategy: nil, source: source)
        let leastRequest = routers.first { $0.name == "least-request" }!  // every fallback's
        let inner = (try? base.router(named: sessionInner)) ?? leastRequest
        routers.append(SessionAffinityRouter(inner: inner))
        routers.append(VTCBasicRouter(fallback: leastRequest, source: source, sink: sink))
        return RouterRegistry(routers: routers, scorers: scorers, defaultStrategy: defaultStrategy, source: source,
                              prefixCache: prefix)
    }

    public var names: [String] { routers.keys.sorted() }

    /// Resolves a header value (trimmed; nil or empty means the default).
    public func router(named header: String?) throws(RoutingError) -> any Router {
        if let h = header, let r = routers[h] { return r }  // the common, exact case
        let trimmed = header?.trimmingBlanks() ?? ""
        let name = trimmed.isEmpty ? (defaultStrategy ?? "") : trimmed
        if let r = routers[name] { return r }
        if let why = Self.refused[name] { throw .refused(name: name, why: why) }
        guard name.contains(",") || name.contains(":") else { throw .unknownStrategy(name: name, known: names) }
        if let b = blends.get(name) { return b }
        let parts = try BlendSpec.parse(name, scorers: scorers)
        let b = ScoringRouter(name: name, parts: parts, source: source)
        blends.put(name, b)
        return b
    }

    /// Reference names this gateway declines, and why (never silently random).
    static let refused: [String: String] = [
        "least-busy-time": "the reference reads a busy-time metric no engine exports (it routed at random); "
            + "use least-request (the gateway's exact in-flight count) or least-latency (windowed queue, TTFT and TPOT)",
    ]

}

/// Parsed blends by header text; bounded (clients choose the text).
final class BlendCache: Sendable {
    private let map = Mutex<[String: ScoringRouter]>([:])
    static let capacity = 256

    func get(_ key: String) -> ScoringRouter? { map.withLock { $0[key] } }

    func put(_ key: String, _ r: ScoringRouter) {
        map.withLock { m in
            if m.count >= Self.capacity { m.removeAll(keepingCapacity: true) }
            m[key] = r
        }
    }
}
