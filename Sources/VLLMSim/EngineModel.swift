import KVProtocol

/// Settings of the simulated engine, named after the vLLM flags they mirror.
public struct EngineConfiguration: Sendable {
    /// The step-time model (and the default KV size).
    public var profile: LatencyProfile
    /// Tokens per KV block (`--block-size`).
    public var blockSize: Int
    /// KV blocks in the cache (vLLM's `num_gpu_blocks`).
    public var numBlocks: Int
    /// Sequences in one batch at most (`--max-num-seqs`).
    public var maxNumSeqs = 256
    /// New tokens per step at most; longer prefills are chunked (`--max-num-batched-tokens`).
    public var maxNumBatchedTokens = 8192
    /// Reuse KV of full blocks across requests (`--enable-prefix-caching`).
    public var enablePrefixCaching = true

    public init(profile: LatencyProfile = .h100Llama3_8B) {
        self.profile = profile
        self.blockSize = profile.blockSize
        self.numBlocks = profile.kvBlocks
    }

    /// Tokens the KV cache holds.
    public var kvTokens: Int { blockSize * numBlocks }
}

/// One token produced by a step, or the end of a request.
public struct EngineEmission: Sendable, Equatable {
    public var request: Int
    /// Index into `SimTokenizer.vocabulary`.
    public var word: Int
    public var finished: Bool
}

/// What the engine did in one step, for metrics and tests.
public struct EngineStepReport: Sendable, Equatable {
    public var scheduledTokens = 0
    public var prefillTokens = 0
    public var decodeSequences = 0
    public var contextTokens = 0
    public var preempted: [Int] = []
    public var seconds = 0.0
}

/// A model of vLLM's V1 engine core: an FCFS scheduler with continuous
/// batching, chunked prefill and recompute preemption, over a paged KV cache
/// with block-level prefix caching (LRU among free cached blocks, the tail
/// blocks of a request evicted first). Time is not measured here: a step
/// reports how long it takes under the latency profile, and the driver calls
/// `finishStep` when that time has passed. Deterministic: the same calls in
/// the same order give the same schedule and the same tokens.
///
/// Not thread-safe; the simulator drives it from one event loop.
public final class EngineModel {
    public let configuration: EngineConfiguration
    let metrics: SimMetrics?
    private let seed: UInt64
    private var pool: BlockPool
    private var requests: [Int: Sequence] = [:]
    private var waiting: [Int] = []   // request ids, front = next
    private var running: [Int] = []   // in admission order
    private var inFlight: [(id: Int, tokens: Int)] = []
    private var nextID = 1
    public private(set) var totalPreemptions = 0
    /// The KV-connector model, when the pod has a node agent.
    let connector: SimKVConnector?

    public convenience init(configuration: EngineConfiguration, seed: UInt64 = 0, metrics: SimMetrics? = nil) {
        self.init(configuration: configuration, seed: seed, metrics: metrics, connector: nil)
    }

    init(configuration: EngineConfiguration, seed: UInt64, metrics: SimMetrics?, connector: SimKVConnector?) {
        self.configuration = configuration
        self.seed = seed
        self.metrics = metrics
        pool = BlockPool(count: configuration.numBlocks)
        self.connector = connector
    }

    final class Sequence {
        let id: Int
        var tokens: [UInt32]
        let promptLength: Int
        let maxTokens: Int
        var computed = 0
        var blocks: [Int32] = []
        var hashes: [UInt64] = []    // chained hashes of the full blocks of `tokens`
        var registered = 0           // leading blocks published in the prefix cache
        var generated = 0
        let outputSeed: UInt64
        var aborted = false
        var preemptions = 0
        var cachedAtFirstSchedule = -1
        /// Connector keys of the prompt's full blocks (computed at first admission).
        var promptKeys: [BlockKey]?
        /// Blocks from here on were computed by this engine (earlier ones were cached or loaded).
        var firstComputedBlock = 0
        // Times (the driver's clock) for the request metrics.
        let arrival: Double
        var firstScheduled: Double?
        var firstToken: Double?
        var lastToken = 0.0

        init(id: Int, tokens: [UInt32], maxTokens: Int, outputSeed: UInt64, arrival: Double) {
            self.id = id
            self.tokens = tokens
            self.promptLength = tokens.count
            self.maxTokens = maxTokens
            self.outputSeed = outputSeed
            self.arrival = arrival
        }
    }

    public var numRunning: Int { running.count }
    public var numWaiting: Int { waiting.count }
    public var isIdle: Bool { running.isEmpty && waiting.isEmpty }
    /// Fraction of KV blocks held by requests (cached free blocks count as free, as in vLLM).
    public var kvUsage: Double { 1 - Double(pool.freeCount) / Double(max(1, configuration.numBlocks)) }
    public var cachedBlocks: Int { pool.cachedCount }

    /// Queues a request; returns its id. The caller has checked that
    /// `prompt.count + maxTokens` fits the KV cache.
    public func submit(prompt: [UInt32], maxTokens: Int, now: Double) -> Int {
        let id = nextID
        nextID += 1
        var h = seed ^ 0x9E37_79B9_7F4A_7C15
        for t in prompt { h = mix(h ^ UInt64(t)) }
        requests[id] = Sequence(id: id, tokens: prompt, maxTokens: max(1, maxTokens), outputSeed: h, arrival: now)
        waiting.append(id)
        metrics?.setQueues(running: running.count, waiting: waiting.count, kvUsage: kvUsage)
        return id
    }

    /// Drops a request (client gone). Its blocks are freed at once unless a
    /// step is computing it, in which case at the end of that step.
    public func abort(_ id: Int, now: Double) {
        guard let s = requests[id], !s.aborted else { return }
        s.aborted = true
        if inFlight.contains(where: { $0.id == id }) { return }
        retire(s, now: now, reason: .abort)
    }

    /// Schedules the next step at `now` (the driver's clock). Returns its
    /// report (with its duration in model seconds), or nil when idle.
    public func beginStep(now: Double) -> EngineStepReport? {
        precondition(inFlight.isEmpty, "beginStep called twice")
        var report = EngineStepReport()
        var budget = configuration.maxNumBatchedTokens
        let bs = configuration.blockSize

        // Running requests first, oldest first; preempt from the newest when
        // the KV cache is full.
        var i = 0
        var preemptedAny = false
        var loadSeconds = 0.0
        while i < running.count, budget > 0 {
            let s = requests[running[i]]!
            let n = min(s.tokens.count - s.computed, budget)
            var scheduled = true
            while !allocate(s, newTokens: n) {
                let victim = requests[running.removeLast()]!
                preempt(victim)
                report.preempted.append(victim.id)
                preemptedAny = true
                if victim === s { scheduled = false; break }
            }
            if !scheduled { break }
            inFlight.append((s.id, n))
            budget -= n
            i += 1
        }

        // Then waiting requests, in order, while there is budget, room in the
        // batch and KV; nothing new is admitted in a step that preempted.
        if !preemptedAny {
            while let id = waiting.first, budget > 0, running.count < configuration.maxNumSeqs {
                let s = requests[id]!
                let hit = configuration.enablePrefixCaching ? lookupPrefix(s) : []
                for b in hit { pool.touch(b) }
                s.blocks = hit
                s.registered = hit.count
                // What the local cache lacks, the connector may load (charged as transfer time, not prefill).
                let loaded = externalLoad(s, after: hit.count)
                s.computed = (hit.count + loaded) * bs
                s.firstComputedBlock = hit.count + loaded
                let n = min(s.tokens.count - s.computed, budget)
                if !allocate(s, newTokens: n) {
                    for b in hit.reversed() { pool.release(b) }
                    s.blocks = []
                    s.registered = 0
                    s.computed = 0
                    break
                }
                waiting.removeFirst()
                running.append(id)
                if s.firstScheduled == nil { s.firstScheduled = now }
                metrics?.prefixQuery(tokens: s.tokens.count, hits: hit.count * bs)
                if let connector {
                    metrics?.externalQuery(tokens: s.tokens.count - hit.count * bs, hits: loaded * bs)
                    loadSeconds += Double(loaded) * connector.settings.secondsPerLoadedBlock
                }
                if s.cachedAtFirstSchedule < 0 {
                    s.cachedAtFirstSchedule = s.computed
                    metrics?.promptTokens(total: s.promptLength, cached: s.computed, external: loaded * bs)
                }
                inFlight.append((id, n))
                budget -= n
            }
        }

        if inFlight.isEmpty { return nil }
        for (id, n) in inFlight {
            let s = requests[id]!
            report.scheduledTokens += n
            report.contextTokens += s.computed + n
            if s.computed + n == s.tokens.count && s.computed == s.tokens.count - 1 && s.generated > 0 {
                report.decodeSequences += 1
            } else {
                report.prefillTokens += n
            }
        }
        report.seconds = configuration.profile.stepSeconds(tokens: report.scheduledTokens, context: report.contextTokens) + loadSeconds
        totalPreemptions += report.preempted.count
        metrics?.step(tokens: report.scheduledTokens, preemptions: report.preempted.count)
        return report
    }

    /// Applies the step begun last: KV written, full blocks published in the
    /// prefix cache, one token for every request whose context is complete.
    /// `now` is the driver's clock, used for the request metrics.
    public func finishStep(now: Double) -> [EngineEmission] {
        var out: [EngineEmission] = []
        var gaps: [Double] = []
        let bs = configuration.blockSize
        let vocab = UInt64(SimTokenizer.vocabulary.count)
        var toStore: [BlockKey] = []
        for (id, n) in inFlight {
            guard let s = requests[id] else { continue }
            s.computed += n
            if configuration.enablePrefixCaching {
                let full = s.computed / bs
                while s.registered < full {
                    pool.register(s.blocks[s.registered], hash: blockHash(s, s.registered))
                    s.registered += 1
                }
            }
            // Prompt blocks this engine computed go to the agent (stores are not charged: real
            // connectors write them while the next layers compute).
            if let keys = s.promptKeys {
                let done = min(s.computed / bs, keys.count)
                if done > s.firstComputedBlock {
                    toStore += keys[s.firstComputedBlock..<done]
                    s.firstComputedBlock = done
                }
            }
            if s.aborted { retire(s, now: now, reason: .abort); continue }
            guard s.computed == s.tokens.count else { continue }
            let word = Int(mix(s.outputSeed &+ UInt64(s.generated)) % vocab)
            s.generated += 1
            if s.firstToken == nil { s.firstToken = now } else { gaps.append(now - s.lastToken) }
            s.lastToken = now
            let done = s.generated >= s.maxTokens
            out.append(EngineEmission(request: id, word: word, finished: done))
            if done { retire(s, now: now, reason: .length) } else { s.tokens.append(SimTokenizer.vocabularyIDs[word]) }
        }
        inFlight.removeAll(keepingCapacity: true)
        connector?.store(toStore)
        metrics?.stepOutput(generated: out.count, gaps: gaps)
        metrics?.setQueues(running: running.count, waiting: waiting.count, kvUsage: kvUsage)
        return out
    }

    // MARK: - KV blocks

    private func allocate(_ s: Sequence, newTokens: Int) -> Bool {
        let bs = configuration.blockSize
        let need = (s.computed + newTokens + bs - 1) / bs - s.blocks.count
        if need <= 0 { return true }
        if pool.freeCount < need { return false }
        for _ in 0..<need { s.blocks.append(pool.allocate()!) }
        return true
    }

    private func preempt(_ s: Sequence) {
        freeBlocks(s)
        s.computed = 0
        s.registered = 0
        s.preemptions += 1
        waiting.insert(s.id, at: 0)
    }

    /// Frees a request's blocks, last first, so that a request's tail is
    /// evicted before its (more shareable) head.
    private func freeBlocks(_ s: Sequence) {
        for b in s.blocks.reversed() { pool.release(b) }
        s.blocks = []
    }

    enum FinishReason { case length, abort }

    private func retire(_ s: Sequence, now: Double, reason: FinishReason) {
        freeBlocks(s)
        requests[s.id] = nil
        if let i = running.firstIndex(of: s.id) { running.remove(at: i) }
        if let i = waiting.firstIndex(of: s.id) { waiting.remove(at: i) }
        metrics?.requestFinished(
            aborted: reason == .abort, prompt: s.promptLength, generated: s.generated, maxTokens: s.maxTokens,
            arrival: s.arrival, firstScheduled: s.firstScheduled, firstToken: s.firstToken, end: now,
            preemptions: s.preemptions, computedPrefill: s.promptLength - max(0, s.cachedAtFirstSchedule))
        metrics?.setQueues(running: running.count, waiting: waiting.count, kvUsage: kvUsage)
    }

    /// Asks the connector for the prompt blocks after the first `first`
    /// (never the last token's block); returns how many it loaded.
    private func externalLoad(_ s: Sequence, after first: Int) -> Int {
        guard let c = connector else { return 0 }
        let bs = configuration.blockSize
        if s.promptKeys == nil { s.promptKeys = c.keys(s.tokens[0..<(s.promptLength / bs * bs)]) }
        let usable = min((s.tokens.count - 1) / bs, s.promptKeys!.count)
        guard first < usable else { return 0 }
        return c.load(s.promptKeys![first..<usable])
    }

    private func lookupPrefix(_ s: Sequence) -> [Int32] {
        // Never the whole prompt: the last token is always computed, as in vLLM.
        let maxBlocks = (s.tokens.count - 1) / configuration.blockSize
        var hit: [Int32] = []
        var i = 0
        while i < maxBlocks, let b = pool.lookup(blockHash(s, i)) {
            hit.append(b)
            i += 1
        }
        return hit
    }

    /// Chained hash of block `i` of `s`: equal prefixes give equal hashes.
    private func blockHash(_ s: Sequence, _ i: Int) -> UInt64 {
        let bs = configuration.blockSize
        while s.hashes.count <= i {
            let k = s.hashes.count
            var h = k == 0 ? 0xCBF2_9CE4_8422_2325 : s.hashes[k - 1]
            for t in s.tokens[(k * bs)..<((k + 1) * bs)] { h = (h ^ UInt64(t)) &* 0x100_0000_01B3 }
            h = mix(h)
            s.hashes.append(h == 0 ? 1 : h)
        }
        return s.hashes[i]
    }
}

@inline(__always) func mix(_ x: UInt64) -> UInt64 {
    var z = x &+ 0x9E37_79B9_7F4A_7C15
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
}

/// KV blocks with reference counts and a prefix cache: a block whose count
/// drops to zero keeps its hash and joins the tail of an LRU free list; it is
/// reused (and its hash forgotten) only when it reaches the head.
struct BlockPool {
    private var refs: [Int32]
    private var hashOf: [UInt64]
    private var prev: [Int32]
    private var next: [Int32]
    private var head: Int32 = -1
    private var tail: Int32 = -1
    private var byHash: [UInt64: Int32] = [:]
    private(set) var freeCount = 0

    init(count: Int) {
        refs = Array(repeating: 0, count: count)
        hashOf = Array(repeating: 0, count: count)
        prev = Array(repeating: -1, count: count)
        next = Array(repeating: -1, count: count)
        for b in 0..<count { pushTail(Int32(b)) }
    }

    var cachedCount: Int { byHash.count }

    func lookup(_ hash: UInt64) -> Int32? { byHash[hash] }

    mutating func touch(_ b: Int32) {
        if refs[Int(b)] == 0 { unlink(b) }
        refs[Int(b)] += 1
    }

    mutating func release(_ b: Int32) {
        refs[Int(b)] -= 1
        if refs[Int(b)] == 0 { pushTail(b) }
    }

    /// Takes the least recently freed block, evicting its cached hash.
    mutating func allocate() -> Int32? {
        guard head >= 0 else { return nil }
        let b = head
        unlink(b)
        let h = hashOf[Int(b)]
        if h != 0 {
            if byHash[h] == b { byHash[h] = nil }
            hashOf[Int(b)] = 0
        }
        refs[Int(b)] = 1
        return b
    }

    /// Publishes a full block's hash; a hash already held by another block keeps that block.
    mutating func register(_ b: Int32, hash: UInt64) {
        guard hashOf[Int(b)] == 0, byHash[hash] == nil else { return }
        hashOf[Int(b)] = hash
        byHash[hash] = b
    }

    private mutating func pushTail(_ b: Int32) {
        prev[Int(b)] = tail
        next[Int(b)] = -1
        if tail >= 0 { next[Int(tail)] = b } else { head = b }
        tail = b
        freeCount += 1
    }

    private mutating func unlink(_ b: Int32) {
        let p = prev[Int(b)], n = next[Int(b)]
        if p >= 0 { next[Int(p)] = n } else { head = n }
        if n >= 0 { prev[Int(n)] = p } else { tail = p }
        prev[Int(b)] = -1
        next[Int(b)] = -1
        freeCount -= 1
    }
}
