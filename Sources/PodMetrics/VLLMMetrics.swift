/// A cumulative Prometheus histogram as scraped: upper bounds, cumulative
/// counts, sum and count.
public struct CumulativeHistogram: Sendable, Equatable {
    public var bounds: [Double]
    public var cumulative: [Double]
    public var sum: Double
    public var count: Double

    public init(bounds: [Double], cumulative: [Double], sum: Double, count: Double) {
        self.bounds = bounds
        self.cumulative = cumulative
        self.sum = sum
        self.count = count
    }

    /// `self - earlier`, bucket by bucket; nil when the layouts differ. A
    /// reset (the engine restarted: any count, or the sum of non-negative
    /// observations, went down) yields `self`.
    public func delta(since earlier: CumulativeHistogram) -> CumulativeHistogram? {
        guard bounds == earlier.bounds else { return nil }
        if count < earlier.count || sum < earlier.sum || zip(cumulative, earlier.cumulative).contains(where: { $0 < $1 }) {
            return self
        }
        return CumulativeHistogram(bounds: bounds, cumulative: zip(cumulative, earlier.cumulative).map { $0 - $1 },
                                   sum: sum - earlier.sum, count: count - earlier.count)
    }

    /// Mean of the observations; nil when empty.
    public var mean: Double? { count > 0 ? sum / count : nil }

    /// Quantile by linear interpolation inside the bucket (as PromQL's
    /// histogram_quantile does); nil when empty.
    public func quantile(_ q: Double) -> Double? {
        guard count > 0, !bounds.isEmpty else { return nil }
        let rank = q * count
        var prevBound = 0.0, prevCount = 0.0
        for (i, b) in bounds.enumerated() {
            let c = cumulative[i]
            if c >= rank {
                if b.isInfinite { return prevBound }
                let inBucket = c - prevCount
                return inBucket > 0 ? prevBound + (b - prevBound) * (rank - prevCount) / inBucket : b
            }
            prevBound = b.isInfinite ? prevBound : b
            prevCount = c
        }
        return prevBound
    }
}

/// What one scrape says about one model served by a vLLM engine.
public struct VLLMEngineSample: Sendable, Equatable {
    public var running: Double?
    public var waiting: Double?
    /// V1 `kv_cache_usage_perc`, else V0 `gpu_cache_usage_perc` (0…1).
    public var kvCacheUsage: Double?
    public var prefixCacheQueries: Double?
    public var prefixCacheHits: Double?
    public var promptTokens: Double?
    public var generationTokens: Double?
    public var preemptions: Double?
    public var timeToFirstToken: CumulativeHistogram?
    public var timePerOutputToken: CumulativeHistogram?
    public var queueTime: CumulativeHistogram?
    public var e2eLatency: CumulativeHistogram?
    /// Per request: prefill seconds, and KV tokens computed in prefill
    /// (cached tokens excluded), for a fitted prefill-cost model.
    public var prefillTime: CumulativeHistogram?
    public var prefillComputedTokens: CumulativeHistogram?
    /// The engine's KV cache: `vllm:cache_config_info`'s num_gpu_blocks ×
    /// block_size tokens, and block_size (engine-wide: given to every model).
    public var kvCapacityTokens: Double?
    public var blockSize: Double?
    public init() {}
}

/// vLLM's metric names (V1 first, V0 fallbacks) and their extraction from a
/// parsed page, per `model_name` label.
public enum VLLMMetrics {
    static let gauges = ["vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc",
                         "vllm:gpu_cache_usage_perc", "vllm:cache_config_info"]

    /// `vllm:cache_config_info`'s capacity: (num_gpu_blocks × block_size, block_size), when both are numbers.
    static func capacity(blocks: Double?, size: Double?) -> (tokens: Double, size: Double)? {
        guard let b = blocks, let z = size, b > 0, z > 0 else { return nil }
        return (b * z, z)
    }

    /// Gives an engine-wide capacity to every model of a decoded page.
    static func applyCapacity(_ c: (tokens: Double, size: Double)?, to out: inout [String: VLLMEngineSample]) {
        guard let c else { return }
        for k in out.keys {
            out[k]!.kvCapacityTokens = c.tokens
            out[k]!.blockSize = c.size
        }
    }
    static let counters = ["vllm:prefix_cache_queries_total", "vllm:prefix_cache_hits_total", "vllm:prompt_tokens_total",
                           "vllm:generation_tokens_total", "vllm:num_preemptions_total",
                           // V0 spelled some counters without a TYPE on the _total name
                           "vllm:prefix_cache_queries", "vllm:prefix_cache_hits", "vllm:prompt_tokens",
                           "vllm:generation_tokens", "vllm:num_preemptions"]
    static let histograms = ["vllm:time_to_first_token_seconds", "vllm:request_time_per_output_token_seconds",
                             "vllm:time_per_output_token_seconds", "vllm:request_queue_time_seconds",
                             "vllm:e2e_request_latency_seconds", "vllm:request_prefill_time_seconds",
                             "vllm:request_prefill_kv_computed_tokens"]

    /// The families the scraper keeps; everything else on the page is skipped.
    public static let keep: Set<String> = Set(gauges + counters + histograms)

    /// Per `model_name`: sums over other labels (several engines of one
    /// server add up; KV usage is averaged). One pass per family, with the
    /// family decided once and the sample kind read from the name's length.
    public static func extract(_ families: [PrometheusFamily]) -> [String: VLLMEngineSample] {
        var out: [String: VLLMEngineSample] = [:]
        // The V1 KV name wins for a model that has it (per model, as the scraper's decoder reads it).
        let v1KVModels = Set(families.filter { $0.name == "vllm:kv_cache_usage_perc" }
            .flatMap { f in f.samples.filter { $0.name == f.name }.map { $0.label("model_name") ?? "" } })
        // The page's first cache_config_info sample is the engine's config
        // (a page that repeats it, or whose first lacks numbers, gets none
        // from the later ones: both readers agree on exactly this).
        var capacity: (tokens: Double, size: Double)?
        var configSeen = false
        for f in families {
            if f.name == "vllm:cache_config_info" {
                if !configSeen, let s = f.samples.first(where: { $0.name == f.name }) {
                    configSeen = true
                    capacity = Self.capacity(blocks: s.label("num_gpu_blocks").flatMap(Double.init),
                                             size: s.label("block_size").flatMap(Double.init))
                }
                continue
            }
            if let h = histogramSlot(f.name) {
                var byModel: [String: (bounds: [Double], counts: [Double], sum: Double, count: Double)] = [:]
                let baseLength = f.name.utf8.count
                for s in f.samples {
                    let model = s.label("model_name") ?? ""
                    var acc = byModel[model] ?? ([], [], 0, 0)
                    switch s.name.utf8.dropFirst(baseLength) {
                    case let x where x.elementsEqual("_bucket".utf8):
                        guard let le = s.label("le").flatMap(Double.init) else { continue }
                        if let k = acc.bounds.firstIndex(of: le) {
                            acc.counts[k] += s.value
                        } else {
                            acc.bounds.append(le)
                            acc.counts.append(s.value)
                        }
                    case let x where x.elementsEqual("_sum".utf8): acc.sum += s.value
                    case let x where x.elementsEqual("_count".utf8): acc.count += s.value
                    default: continue  // _created and anything else
                    }
                    byModel[model] = acc
                }
                for (model, acc) in byModel {
                    let order = acc.bounds.indices.sorted { acc.bounds[$0] < acc.bounds[$1] }
                    let hist = CumulativeHistogram(bounds: order.map { acc.bounds[$0] }, cumulative: order.map { acc.counts[$0] },
                                                   sum: acc.sum, count: acc.count)
                    var e = out[model] ?? VLLMEngineSample()
                    switch h {
                    case .ttft: e.timeToFirstToken = hist
                    case .tpot: e.timePerOutputToken = hist
                    case .tpotV0: if e.timePerOutputToken == nil { e.timePerOutputToken = hist }
                    case .queue: e.queueTime = hist
                    case .e2e: e.e2eLatency = hist
                    case .prefill: e.prefillTime = hist
                    case .prefillTokens: e.prefillComputedTokens = hist
                    }
                    out[model] = e
                }
                continue
            }
            var kvSeen: [String: Int] = [:]
            let isCounter = Self.counters.contains(f.name)
            for s in f.samples {
                // Only the sample itself: a gauge's own name, a counter's own
                // name or its _total (never _created start times, nor a stray
                // _bucket or _count someone put on a counter's name).
                let suffix = s.name.utf8.dropFirst(f.name.utf8.count)
                guard suffix.isEmpty || (isCounter && suffix.elementsEqual("_total".utf8)) else { continue }
                let model = s.label("model_name") ?? ""
                var e = out[model] ?? VLLMEngineSample()
                switch f.name {
                case "vllm:num_requests_running": e.running = (e.running ?? 0) + s.value
                case "vllm:num_requests_waiting": e.waiting = (e.waiting ?? 0) + s.value
                case "vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc":
                    // The V1 name wins when a model has both.
                    if f.name == "vllm:gpu_cache_usage_perc" && v1KVModels.contains(model) { continue }
                    let n = kvSeen[model, default: 0]
                    e.kvCacheUsage = ((e.kvCacheUsage ?? 0) * Double(n) + s.value) / Double(n + 1)
                    kvSeen[model] = n + 1
                case "vllm:prefix_cache_queries_total", "vllm:prefix_cache_queries":
                    e.prefixCacheQueries = (e.prefixCacheQueries ?? 0) + s.value
                case "vllm:prefix_cache_hits_total", "vllm:prefix_cache_hits":
                    e.prefixCacheHits = (e.prefixCacheHits ?? 0) + s.value
                case "vllm:prompt_tokens_total", "vllm:prompt_tokens": e.promptTokens = (e.promptTokens ?? 0) + s.value
                case "vllm:generation_tokens_total", "vllm:generation_tokens":
                    e.generationTokens = (e.generationTokens ?? 0) + s.value
                case "vllm:num_preemptions_total", "vllm:num_preemptions": e.preemptions = (e.preemptions ?? 0) + s.value
                default: continue
                }
                out[model] = e
            }
        }
        applyCapacity(capacity, to: &out)
        return out
    }

    enum HistogramSlot { case ttft, tpot, tpotV0, queue, e2e, prefill, prefillTokens }

    static func histogramSlot(_ family: String) -> HistogramSlot? {
        switch family {
        case "vllm:time_to_first_token_seconds": return .ttft
        case "vllm:request_time_per_output_token_seconds": return .tpot
        case "vllm:time_per_output_token_seconds": return .tpotV0
        case "vllm:request_queue_time_seconds": return .queue
        case "vllm:e2e_request_latency_seconds": return .e2e
        case "vllm:request_prefill_time_seconds": return .prefill
        case "vllm:request_prefill_kv_computed_tokens": return .prefillTokens
        default: return nil
        }
    }

}

/// Reads a vLLM `/metrics` page straight into per-model samples without
/// building samples, label arrays or strings per line (one String per model
/// name seen). Equivalent to `VLLMMetrics.extract(parser.parse(page))`; the
/// tests check the two agree. Build once, use for every scrape.
public struct VLLMScrapeDecoder: Sendable {
    public let parser = PrometheusParser(keep: VLLMMetrics.keep)
    private let roles: [Role]

    enum Role: Sendable {
        case running, waiting, kvV1, kvV0, queries, hits, prompt, generation, preemptions, cacheConfig
        case histogram(VLLMMetrics.HistogramSlot)
    }

    public init() {
        roles = parser.keptFamilyNames.map { name in
            if let h = VLLMMetrics.histogramSlot(name) { return .histogram(h) }
            switch name {
            case "vllm:num_requests_running": return .running
            case "vllm:num_requests_waiting": return .waiting
            case "vllm:kv_cache_usage_perc": return .kvV1
            case "vllm:gpu_cache_usage_perc": return .kvV0
            case "vllm:prefix_cache_queries_total", "vllm:prefix_cache_queries": return .queries
            case "vllm:prefix_cache_hits_total", "vllm:prefix_cache_hits": return .hits
            case "vllm:prompt_tokens_total", "vllm:prompt_tokens": return .prompt
            case "vllm:generation_tokens_total", "vllm:generation_tokens": return .generation
            case "vllm:cache_config_info": return .cacheConfig
            default: return .preemptions
            }
        }
    }

    private static let modelLabel = Array("model_name".utf8)
    private static let blocksLabel = Array("num_gpu_blocks".utf8)
    private static let blockSizeLabel = Array("block_size".utf8)
    private static let leLabel = Array("le".utf8)

    private struct Acc {
        var sample = VLLMEngineSample()
        var kvV1 = (sum: 0.0, n: 0), kvV0 = (sum: 0.0, n: 0)
        var hist: [(bounds: [Double], counts: [Double], sum: Double, count: Double, seen: Bool)] =
            Array(repeating: ([], [], 0, 0, false), count: 7)
    }

    public func decode(_ page: [UInt8]) throws(PrometheusParseError) -> [String: VLLMEngineSample] {
        // Models by name as the parser keys them (escapes decoded, UTF-8 repaired),
        // found per line by their raw bytes first.
        var names: [String] = []
        var byName: [String: Int] = [:]
        var raw: [(bytes: ArraySlice<UInt8>, index: Int)] = []
        var accs: [Acc] = []
        func slot(_ name: String) -> Int {
            if let k = byName[name] { return k }
            names.append(name)
            accs.append(Acc())
            byName[name] = accs.count - 1
            return accs.count - 1
        }
        var capacity: (tokens: Double, size: Double)?
        var configSeen = false
        try parser.scan(page) { line in
            if case .cacheConfig = roles[line.family] {
                // Engine-wide, no model_name: the first sample only, given to every model below.
                if !configSeen && line.suffixLength == 0 {
                    configSeen = true
                    capacity = VLLMMetrics.capacity(blocks: line.label(Self.blocksLabel).flatMap { PrometheusParser.parseValue($0) },
                                                    size: line.label(Self.blockSizeLabel).flatMap { PrometheusParser.parseValue($0) })
                }
                return
            }
            let k: Int
            if let escaped = line.escapedLabel(Self.modelLabel) {
                k = slot(escaped)
            } else {
                let m = line.label(Self.modelLabel) ?? []
                var j = 0
                while j < raw.count && !raw[j].bytes.elementsEqual(m) { j += 1 }
                if j == raw.count { raw.append((m, slot(String(decoding: m, as: UTF8.self)))) }
                k = raw[j].index
            }
            let v = line.value
            func add(_ x: inout Double?) { x = (x ?? 0) + v }
            // Counters: the sample itself (no suffix on an x_total family, _total on x);
            // never _created, nor a stray _count or _bucket on a counter's name.
            let counterSample = line.suffixLength == 0 || (line.suffixLength == 6 && line.suffixLetter == UInt8(ascii: "t"))
            switch roles[line.family] {
            case .running: if line.suffixLength == 0 { add(&accs[k].sample.running) }
            case .waiting: if line.suffixLength == 0 { add(&accs[k].sample.waiting) }
            case .kvV1: if line.suffixLength == 0 { accs[k].kvV1.sum += v; accs[k].kvV1.n += 1 }
            case .kvV0: if line.suffixLength == 0 { accs[k].kvV0.sum += v; accs[k].kvV0.n += 1 }
            case .queries: if counterSample { add(&accs[k].sample.prefixCacheQueries) }
            case .hits: if counterSample { add(&accs[k].sample.prefixCacheHits) }
            case .prompt: if counterSample { add(&accs[k].sample.promptTokens) }
            case .generation: if counterSample { add(&accs[k].sample.generationTokens) }
            case .preemptions: if counterSample { add(&accs[k].sample.preemptions) }
            case .cacheConfig: break
            case .histogram(let slot):
                let h = Self.index(slot)
                // Only a bucket with an `le`, a _sum or a _count makes the histogram exist.
                switch (line.suffixLength, line.suffixLetter) {
                case (7, UInt8(ascii: "b")):
                    guard let raw = line.label(Self.leLabel), let le = PrometheusParser.parseValue(raw) else { return }
                    if let at = accs[k].hist[h].bounds.firstIndex(of: le) {
                        accs[k].hist[h].counts[at] += v
                    } else {
                        accs[k].hist[h].bounds.append(le)
                        accs[k].hist[h].counts.append(v)
                    }
                case (4, _): accs[k].hist[h].sum += v
                case (6, UInt8(ascii: "c")): accs[k].hist[h].count += v
                default: return
                }
                accs[k].hist[h].seen = true
            }
        }
        var out: [String: VLLMEngineSample] = [:]
        for (k, name) in names.enumerated() {
            var a = accs[k]
            if a.kvV1.n > 0 {
                a.sample.kvCacheUsage = a.kvV1.sum / Double(a.kvV1.n)
            } else if a.kvV0.n > 0 {
                a.sample.kvCacheUsage = a.kvV0.sum / Double(a.kvV0.n)
            }
            for (h, acc) in a.hist.enumerated() where acc.seen {
                let order = acc.bounds.indices.sorted { acc.bounds[$0] < acc.bounds[$1] }
                let hist = CumulativeHistogram(bounds: order.map { acc.bounds[$0] }, cumulative: order.map { acc.counts[$0] },
                                               sum: acc.sum, count: acc.count)
                switch h {
                case 0: a.sample.timeToFirstToken = hist
                case 1: a.sample.timePerOutputToken = hist
                case 2: if a.sample.timePerOutputToken == nil { a.sample.timePerOutputToken = hist }
                case 3: a.sample.queueTime = hist
                case 4: a.sample.e2eLatency = hist
                case 5: a.sample.prefillTime = hist
                default: a.sample.prefillComputedTokens = hist
                }
            }
            // A model no sample counted for (only _created lines, a bucket without `le`) is not reported.
            if a.sample == VLLMEngineSample() { continue }
            out[name] = a.sample
        }
        VLLMMetrics.applyCapacity(capacity, to: &out)
        return out
    }

    private static func index(_ s: VLLMMetrics.HistogramSlot) -> Int {
        switch s {
        case .ttft: return 0
        case .tpot: return 1
        case .tpotV0: return 2
        case .queue: return 3
        case .e2e: return 4
        case .prefill: return 5
        case .prefillTokens: return 6
        }
    }
}
