import PodSnapshot
import PrefixIndex
import Synchronization
import Tokenization

/// Settings of the prefix-cache strategies (`switchboard serve --prefix-*`).
public struct PrefixCacheOptions: Sendable {
    /// Character mode: bytes of prompt text per block (about 16 tokens of
    /// English at 4 bytes a token, vLLM's default block).
    public var blockBytes = 64
    /// Seed of the chained block keys: replicas with the same seed agree.
    public var seed: UInt64 = 0
    /// The imbalance gate: when the most loaded usable pod has more than
    /// this many requests in flight above the least loaded, only the least
    /// loaded pods are considered (prefix matching among them).
    public var imbalance = 8
    /// The hot-spot guard: a matching pod is taken only while its load is at
    /// most mean + k·σ of the usable pods' loads.
    public var stddevFactor = 2.0
    /// A match counts only when it covers at least this fraction of the
    /// prompt's blocks: a shared first block (a common system prompt) in
    /// front of long unique prompts must not pull every request to the pod
    /// that happened to see it first.
    public var minMatchFraction = 0.1
    public var maxEntries = 2_000_000
    public var ttlSeconds = 1200
    /// Blocks the index keeps per pod (its mirror of the engine's cache);
    /// nil: bounded only by `maxEntries` and the TTL.
    public var podCapacityBlocks: Int?
    /// Tokenizer mode: the model's tokenizer, and the engine's block size in
    /// tokens (so index blocks are the engine's blocks). Models without a
    /// tokenizer use character mode.
    public var tokenizers: [String: BPETokenizer] = [:]
    public var blockTokens = 16
    /// Bytes of prompt text per token, to turn character blocks into tokens.
    public var bytesPerToken = 4.0
    /// `prefix-cache-cost`: what one request in a pod's queue costs, in
    /// prompt tokens to compute.
    public var queueTokens = 256.0
    public init() {}
}

/// The prefix index and block hashing the prefix strategies share, and what
/// they did (for `/metrics` and `/debug`).
public final class PrefixCache: Sendable {
    public let options: PrefixCacheOptions
    public let hasher: BlockHasher
    /// Tokenizer mode's hasher (blocks of `blockTokens` ids).
    public let tokenHasher: BlockHasher
    public let index: PrefixIndex
    /// Decisions by how they were made: a prefix match, the imbalance gate,
    /// no pod holding the prompt's first block (or the guard refused every
    /// pod that did) → least loaded.
    public let matchedDecisions = Atomic<Int>(0)
    public let imbalancedDecisions = Atomic<Int>(0)
    public let unmatchedDecisions = Atomic<Int>(0)
    /// Prompt blocks routed, and of those, blocks the chosen pod held.
    public let promptBlocks = Atomic<Int>(0)
    public let hitBlocks = Atomic<Int>(0)
    /// Other replicas' view of this one's insertions (shared state); nil: not shared.
    let sink: (any RoutingStateSink)?

    public init(options: PrefixCacheOptions = PrefixCacheOptions(), sink: (any RoutingStateSink)? = nil) {
        self.options = options
        self.sink = sink
        hasher = BlockHasher(blockSize: max(1, options.blockBytes), seed: options.seed)
        tokenHasher = BlockHasher(blockSize: max(1, options.blockTokens), seed: options.seed)
        index = PrefixIndex(limits: .init(maxEntries: options.maxEntries, ttlSeconds: options.ttlSeconds,
                                          podCapacity: options.podCapacityBlocks))
    }

    /// Decisions by selection: prefix_match, imbalance, no_match.
    public var decisionCounts: [(String, Int)] {
        [("prefix_match", matchedDecisions.load(ordering: .relaxed)), ("imbalance", imbalancedDecisions.load(ordering: .relaxed)),
         ("no_match", unmatchedDecisions.load(ordering: .relaxed))]
    }

    /// The prompt's block keys (token blocks when the model has a
    /// tokenizer, else byte blocks); nil when the request carried no prompt.
    func keys(_ request: RoutingRequest) -> [UInt64]? { encode(request)?.keys }

    /// The keys and the prompt's length in tokens (counted in tokenizer
    /// mode, estimated from bytes in character mode).
    func encode(_ request: RoutingRequest) -> (keys: [UInt64], tokens: Double)? {
        guard let prompt = request.prompt else { return nil }
        if let t = options.tokenizers[request.model] {
            let ids = t.encode(String(decoding: prompt, as: UTF8.self), addSpecialTokens: request.promptIsRaw)
            return (tokenHasher.keys(tokens: ids, model: request.model), Double(ids.count))
        }
        return (hasher.keys(bytes: prompt, model: request.model), Double(prompt.count) / options.bytesPerToken)
    }

    /// Prompt tokens one index block stands for.
    func tokensPerBlock(model: String) -> Double {
        options.tokenizers[model] == nil ? Double(options.blockBytes) / options.bytesPerToken : Double(options.blockTokens)
    }


    /// Blocks the index keeps for candidate `i`: `--prefix-pod-blocks` when
    /// set, else the engine's scraped KV size (`vllm:cache_config_info`) in
    /// index blocks, so the index forgets about when the engine does; nil
    /// (bounded only globally) when neither is known.
    func capacity(_ i: Int, in view: ModelView) -> Int? {
        if let c = options.podCapacityBlocks { return c }
        guard let tokens = view.metrics[i]?.kvCapacityTokens, tokens > 0 else { return nil }
        return max(1, Int(tokens / tokensPerBlock(model: view.model)))
    }

    /// Remembers the routed prompt at its pod (not for explanations).
    func record(_ request: RoutingRequest, keys: [UInt64], pod: PodEndpoint, cached: Int, capacity: Int?) {
        guard request.records else { return }
        index.record(keys, pod: pod, capacity: capacity)
        sink?.recorded(keys: keys, pod: pod, capacity: capacity)
        promptBlocks.add(keys.count, ordering: .relaxed)
        hitBlocks.add(cached, ordering: .relaxed)
    }

    /// Another replica routed `keys` to `pod`: the index learns it as if
    /// this replica had (not counted in this replica's decisions).
    public func recordPeer(_ keys: [UInt64], pod: PodEndpoint, capacity: Int?, at: UInt32? = nil) {
        index.record(keys, pod: pod, capacity: capacity, at: at)
    }
}

/// `prefix-cache`: the reference's rule, on chained block keys.
///
/// 1. **Imbalance gate**: loads are requests in flight (`least-request`'s
///    measure). If max − min > `imbalance`, only the least loaded pods are
///    candidates (the prompt's longest match among them wins).
/// 2. Otherwise the pod holding the longest prefix of the prompt's blocks
///    wins, fewer in flight on equal matches, among pods whose load is at
///    most mean + `stddevFactor`·σ (sample σ over usable pods) and whose
///    match covers at least `minMatchFraction` of the prompt (the reference
///    took any match: one shared leading block pulled everything to one pod).
/// 3. No such pod: the least loaded (ties at random).
/// 4. The prompt's blocks are recorded for the chosen pod; multi-turn
///    conversations resend their history, so a turn matches its history.
///
/// Signals: the prompt (the gateway's rendering of the messages), the
/// gateway's prefix index, in-flight counts. Without a prompt (token-id
/// prompts) the decision is `least-request`'s, reported as `no_prompt`.
public struct PrefixCacheRouter: Router {
    public let name = "prefix-cache"
    public var needsPrompt: Bool { true }
    public let cache: PrefixCache
    private let source: RandomSource
    private let load = LeastRequestScorer()

    public init(cache: PrefixCache, source: RandomSource) {
        self.cache = cache
        self.source = source
    }

    public func decide(_ request: RoutingRequest, view: ModelView) throws(RoutingError) -> RoutingDecision {
        guard view.count > 0 else { throw .noCandidates(model: request.model) }
        guard let keys = cache.keys(request) else {
            return RoutingDecision(pod: view.endpoints[load.leastLoaded(view, source: source)], fallback: "no_prompt")
        }
        let spread = LoadSpread(view, load: load)
        let matched = cache.index.longestMatches(keys, pods: view.endpoints)
        var pick: Int
        if spread.imbalanced(gate: cache.options.imbalance) {
            pick = best(view, matched, among: { load.cost(at: $0, in: view) ?? 0 <= spread.lo })
            cache.imbalancedDecisions.add(1, ordering: .relaxed)
        } else {
            let bound = spread.mean + cache.options.stddevFactor * spread.sd
            let minimum = max(1, Int((cache.options.minMatchFraction * Double(keys.count)).rounded(.up)))
            pick = best(view, matched, among: { matched[$0] >= minimum && (load.cost(at: $0, in: view) ?? 0) <= bound })
            if pick >= 0 {
                cache.matchedDecisions.add(1, ordering: .relaxed)
            } else {
                pick = load.leastLoaded(view, source: source)
                cache.unmatchedDecisions.add(1, ordering: .relaxed)
            }
        }
        let pod = view.endpoints[pick]
        cache.record(request, keys: keys, pod: pod, cached: matched[pick], capacity: cache.capacity(pick, in: view))
        return RoutingDecision(pod: pod)
    }

    /// The basics plus each pod's cached prompt blocks.
    public func explain(_ request: RoutingRequest, view: ModelView) -> RoutingExplanation {
        var out = explainBasics(request, view: view)
        if let keys = cache.keys(request) {
            for (i, m) in cache.index.longestMatches(keys, pods: view.endpoints).enumerated() { out.rows[i].cachedBlocks = m }
        }
        return out
    }

    /// The usable pod passing `among` with the longest match, then the
    /// least load, then at random; -1 when none passes.
    private func best(_ view: ModelView, _ matched: [Int], among ok: (Int) -> Bool) -> Int {
        var best = -1, ties = 0
        var bestMatch = -1, bestLoad = Double.infinity
        for i in 0..<view.count where view.usable(i) && ok(i) {
            let m = matched[i], l = load.cost(at: i, in: view) ?? 0
            if m > bestMatch || (m == bestMatch && l < bestLoad) {
                best = i; bestMatch = m; bestLoad = l; ties = 1
            } else if m == bestMatch && l == bestLoad {
                ties += 1
                if source.next() % UInt64(ties) == 0 { best = i }
            }
        }
        return best
    }
}

/// `prefix-cache-cost`: weighs the tokens a pod would have to prefill for
/// this request (the prompt minus the prefix that pod holds) against its
/// queue length (`least-request`'s load: in flight or running + waiting):
/// cost = uncached + `queueTokens` × queue, lowest wins, ties at random.
/// `queueTokens` is what one queued request is worth in prefill tokens. A
/// long cached prefix on a busy pod loses to an idle pod once the queue
/// costs more than the recompute. Signals: as `prefix-cache`; without a
/// prompt, `least-request` (`no_prompt`).
public struct PrefixCacheCostRouter: Router {
    public let name = "prefix-cache-cost"
    public var needsPrompt: Bool { true }
    public let cache: PrefixCache
    private let scorer: ScoringRouter

    public init(cache: PrefixCache, source: RandomSource) {
        self.cache = cache
        scorer = ScoringRouter(name: "prefix-cache-cost", parts: [(PrefixCostScorer(cache: cache), 1)], source: source)
    }

    public func decide(_ request: RoutingRequest, view: ModelView) throws(RoutingError) -> RoutingDecision {
        try scorer.decide(request, view: view)
    }

    public func explain(_ request: RoutingRequest, view: ModelView) -> RoutingExplanation {
        scorer.explain(request, view: view)
    }
}

/// The usable pods' loads (`least-request`'s measure) in one pass: the
/// imbalance gate and the mean + k·σ guard of the prefix strategies.
struct LoadSpread {
    var lo = Double.infinity, hi = -Double.infinity
    var mean = 0.0
    /// Sample standard deviation (0 for one pod).
    var sd = 0.0

    init(_ view: ModelView, load: LeastRequestScorer) {
        var n = 0.0, sum = 0.0, sumSq = 0.0
        for i in 0..<view.count where view.usable(i) {
            let l = load.cost(at: i, in: view) ?? 0
            n += 1; sum += l; sumSq += l * l
            lo = min(lo, l); hi = max(hi, l)
        }
        guard n > 0 else { return }
        mean = sum / n
        sd = n > 1 ? (max(0, sumSq - n * mean * mean) / (n - 1)).squareRoot() : 0
    }

    /// The busiest pod has more than `gate` requests in flight over the least busy.
    func imbalanced(gate: Int) -> Bool { hi - lo > Double(gate) }
}

extension LeastRequestScorer {
    /// The usable pod with the fewest requests in flight, ties at random
    /// (the prefix strategies' fallback and no-match choice).
    func leastLoaded(_ view: ModelView, source: RandomSource) -> Int {
        var best = 0, ties = 0, bestLoad = Double.infinity
        for i in 0..<view.count where view.usable(i) {
            let l = cost(at: i, in: view) ?? 0
            if l < bestLoad {
                best = i; bestLoad = l; ties = 1
            } else if l == bestLoad {
                ties += 1
                if source.next() % UInt64(ties) == 0 { best = i }
            }
        }
        return best
    }
}

/// The prefix scorers' shared request step: keys and matches into the view.
extension PrefixCache {
    func prepare(_ request: RoutingRequest, view: inout ModelView) {
        guard view.cachedBlocks.isEmpty, let keys = keys(request) else { return }
        view.promptKeys = keys
        view.cachedBlocks = index.longestMatches(keys, pods: view.endpoints)
    }

    func chosen(_ i: Int, request: RoutingRequest, view: ModelView) {
        guard !view.cachedBlocks.isEmpty else { return }
        record(request, keys: view.promptKeys, pod: view.endpoints[i], cached: view.cachedBlocks[i], capacity: capacity(i, in: view))
    }
}

/// `prefix-match` (blendable): cost = −(prompt blocks the pod holds), or 0
/// below `minMatchFraction` of the prompt, so a blend such as
/// `prefix-match:2,least-request:1` trades cache affinity against load with
/// explicit weights. Unknown without a prompt.
public struct PrefixMatchScorer: Scorer {
    public let name = "prefix-match"
    public let unknownReason = "no_prompt"
    public var needsPrompt: Bool { true }
    let cache: PrefixCache
    public init(cache: PrefixCache) { self.cache = cache }

    public func cost(at i: Int, in view: ModelView) -> Double? {
        guard !view.cachedBlocks.isEmpty else { return nil }
        // Below --prefix-min-match a lead is noise (a shared first block), not a cache hit worth a blend's weight.
        let m = view.cachedBlocks[i]
        return Double(m) >= cache.options.minMatchFraction * Double(view.promptKeys.count) ? -Double(m) : 0
    }
    public func prepare(_ request: RoutingRequest, view: inout ModelView) { cache.prepare(request, view: &view) }
    public func chosen(_ i: Int, request: RoutingRequest, view: ModelView) { cache.chosen(i, request: request, view: view) }
}

/// `prefix-cache-cost`'s cost: uncached prompt tokens + `queueTokens` ×
/// the pod's queue length.
struct PrefixCostScorer: Scorer {
    let name = "prefix-cache-cost"
    let load = LeastRequestScorer()
    let unknownReason = "no_prompt"
    var needsPrompt: Bool { true }
    let cache: PrefixCache
    func cost(at i: Int, in view: ModelView) -> Double? {
        guard view.promptBytes >= 0, !view.cachedBlocks.isEmpty else { return nil }
        let cached = view.cachedBlocks[i]
        let uncached = max(0, Double(view.promptBytes) / cache.options.bytesPerToken - Double(cached) * cache.tokensPerBlock(model: view.model))
        let queued = load.cost(at: i, in: view) ?? 0
        return uncached + cache.options.queueTokens * queued
    }
    func prepare(_ request: RoutingRequest, view: inout ModelView) {
        guard let p = request.prompt else { return }
        view.promptBytes = p.count
        cache.prepare(request, view: &view)
    }
    func chosen(_ i: Int, request: RoutingRequest, view: ModelView) { cache.chosen(i, request: request, view: view) }
}
