import PodSnapshot
import PrefixIndex
import Synchronization

/// `prefix-cache-preble`: Preble's E2 rule (Srivatsa et al., ICLR 2025) in
/// full, on the gateway's prefix index.
///
/// - **Exploit**: when the longest cached prefix on some pod covers more of
///   the prompt than it leaves uncached, the request goes to a pod with that
///   longest prefix (the least loaded of them).
/// - **Explore** otherwise: each pod costs L + M + P, in seconds, lowest wins:
///   - L, load: the work routed to the pod over the last `window` seconds
///     (each request's estimated prefill plus decode time);
///   - M, eviction: the prefill time to recompute the blocks this request
///     would push out of the pod's cache (its least recent blocks, beyond
///     the scraped KV size), weighted by how often routed requests reused them;
///   - P, prefill: this request's uncached tokens × the pod's fitted prefill
///     cost per token (Δ `vllm:request_prefill_time_seconds` sum / Δ
///     `vllm:request_prefill_kv_computed_tokens` sum over the scrape window),
///     not a hard-coded GPU profile.
///
/// The imbalance gate of `prefix-cache` guards exploitation (a hot prefix
/// spreads). A pod without a fitted prefill cost uses the median of those
/// that have one; with none fitted anywhere, `defaultPrefillSecondsPerToken`
/// stands in and the decision says so (`prefill_model_unknown`). Decode time
/// per token is the pod's windowed TPOT (`defaultDecodeSecondsPerToken`
/// when unknown). Without a prompt: `least-request`'s decision (`no_prompt`).
public final class PrebleRouter: Router {
    public let name = "prefix-cache-preble"
    public var needsPrompt: Bool { true }
    public let cache: PrefixCache
    private let source: RandomSource
    private let load = LeastRequestScorer()
    public let windowSeconds: Int
    public let defaultPrefillSecondsPerToken = 2e-4
    public let defaultDecodeSecondsPerToken = 0.02
    private let clock = ContinuousClock()
    private let origin: ContinuousClock.Instant
    /// Work routed per pod (by pod id) over the window, in seconds.
    private let loads = Mutex<[Int32: SlidingSum]>([:])
    /// Decisions by branch.
    public let exploited = Atomic<Int>(0)
    public let explored = Atomic<Int>(0)

    public init(cache: PrefixCache, source: RandomSource, windowSeconds: Int = 180) {
        self.cache = cache
        self.source = source
        self.windowSeconds = max(1, windowSeconds)
        origin = clock.now
    }

    private var second: Int { Int((clock.now - origin).components.seconds) }

    /// Work routed to `pod` within the window (seconds).
    public func windowLoad(_ pod: PodEndpoint) -> Double { windowLoads([pod])[0] }

    /// Each pod's routed work within the window, expiring what left it.
    private func windowLoads(_ pods: [PodEndpoint]) -> [Double] {
        let now = second
        return loads.withLock { m in
            pods.map { p in
                guard var w = m[p.id] else { return 0 }
                w.expire(now: now)
                m[p.id] = w
                return w.total
            }
        }
    }

    public func decide(_ request: RoutingRequest, view: ModelView) throws(RoutingError) -> RoutingDecision {
        guard view.count > 0 else { throw .noCandidates(model: request.model) }
        guard let (keys, promptTokens) = cache.encode(request) else {
            return RoutingDecision(pod: view.endpoints[load.leastLoaded(view, source: source)], fallback: "no_prompt")
        }
        let matched = cache.index.longestMatches(keys, pods: view.endpoints)
        let perBlock = cache.tokensPerBlock(model: request.model)
        let now = second
        let history = windowLoads(view.endpoints)
        // Prefill seconds per token: each pod's fit, else the median fit, else the default (reported).
        var fits: [Double] = []
        for i in 0..<view.count where view.usable(i) {
            if let f = view.metrics[i]?.prefillSecondsPerToken, f > 0, f.isFinite { fits.append(f) }
        }
        fits.sort()
        let median = fits.isEmpty ? nil : fits[fits.count / 2]
        var fallback: String? = median == nil ? "prefill_model_unknown" : nil
        func spt(_ i: Int) -> Double {
            if let f = view.metrics[i]?.prefillSecondsPerToken, f > 0, f.isFinite { return f }
            return median ?? defaultPrefillSecondsPerToken
        }
        var best = 0
        for i in 0..<view.count where view.usable(i) { best = max(best, matched[i]) }
        let spread = LoadSpread(view, load: load)
        let gated = spread.imbalanced(gate: cache.options.imbalance)
        let cachedTokens = min(promptTokens, Double(best) * perBlock)
        var pick = -1
        var ties = 0
        var bestCost = Double.infinity
        func consider(_ i: Int, _ c: Double) {
            if c < bestCost - 1e-12 {
                pick = i; bestCost = c; ties = 1
            } else if abs(c - bestCost) <= 1e-12 {
                ties += 1
                if source.next() % UInt64(ties) == 0 { pick = i }
            }
        }
        if best > 0 && cachedTokens > promptTokens - cachedTokens && !gated {
            for i in 0..<view.count where view.usable(i) && matched[i] == best { consider(i, history[i]) }
            exploited.add(1, ordering: .relaxed)
        } else {
            for i in 0..<view.count where view.usable(i) {
                if gated && (load.cost(at: i, in: view) ?? 0) > spread.lo { continue }
                let rate = spt(i)
                let uncached = max(0, promptTokens - Double(matched[i]) * perBlock)
                var m = 0.0
                if let cap = cache.capacity(i, in: view) {
                    let cost = cache.index.evictionCost(pod: view.endpoints[i], incoming: keys.count - matched[i], capacity: cap)
                    m = Double(cost.hits) * perBlock * rate
                }
                consider(i, history[i] + m + uncached * rate)
            }
            explored.add(1, ordering: .relaxed)
        }
        if pick < 0 { pick = load.leastLoaded(view, source: source); fallback = fallback ?? "no_candidate" }
        let pod = view.endpoints[pick]
        if request.records {
            cache.record(request, keys: keys, pod: pod, cached: matched[pick], capacity: cache.capacity(pick, in: view))
            let uncached = max(0, promptTokens - Double(matched[pick]) * perBlock)
            let decode = Double(view.outputTokens) * (view.metrics[pick]?.tpotMean ?? defaultDecodeSecondsPerToken)
            let work = uncached * spt(pick) + decode
            let size = windowSeconds
            loads.withLock { m in
                var w = m[pod.id] ?? SlidingSum(size: size, now: now)
                w.add(work, at: now)
                m[pod.id] = w
            }
        }
        return RoutingDecision(pod: pod, fallback: fallback)
    }
}
