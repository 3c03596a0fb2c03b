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
    public init() {}
}

/// vLLM's metric names (V1 first, V0 fallbacks) and their extraction from a
/// parsed page, per `model_name` label.
public enum VLLMMetrics {
    static let gauges = ["vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc",
                         "vllm:gpu_cache_usage_perc"]
    static let counters = ["vllm:prefix_cache_queries_total", "vllm:prefix_cache_hits_total", "vllm:prompt_tokens_total",
                           "vllm:generation_tokens_total", "vllm:num_preemptions_total",
                           // V0 spelled some counters without a TYPE on the _total name
                           "vllm:prefix_cache_queries", "vllm:prefix_cache_hits", "vllm:prompt_tokens",
                           "vllm:generation_tokens", "vllm:num_preemptions"]
    static let histograms = ["vllm:time_to_first_token_seconds", "vllm:request_time_per_output_token_seconds",
                             "vllm:time_per_output_token_seconds", "vllm:request_queue_time_seconds",
                             "vllm:e2e_request_latency_seconds"]

    /// The families the scraper keeps; everything else on the page is skipped.
    public static let keep: Set<String> = Set(gauges + counters + histograms)

    /// Per `model_name`: sums over other labels (several engines of one
    /// server add up; KV usage is averaged).
    public static func extract(_ families: [PrometheusFamily]) -> [String: VLLMEngineSample] {
        var out: [String: VLLMEngineSample] = [:]
        var kvSeen: [String: Int] = [:]
        var hist: [String: [String: (buckets: [Double: Double], sum: Double, count: Double)]] = [:]
        let hasV1KV = hasFamily(families, "vllm:kv_cache_usage_perc")
        for f in families {
            for s in f.samples {
                let model = s.label("model_name") ?? ""
                var e = out[model] ?? VLLMEngineSample()
                switch s.name {
                case "vllm:num_requests_running": e.running = (e.running ?? 0) + s.value
                case "vllm:num_requests_waiting": e.waiting = (e.waiting ?? 0) + s.value
                case "vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc":
                    // The V1 name wins when a page carries both.
                    if s.name == "vllm:gpu_cache_usage_perc" && hasV1KV { break }
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
                default:
                    let base: String, part: String
                    if s.name.hasSuffix("_bucket") { base = String(s.name.dropLast(7)); part = "bucket" }
                    else if s.name.hasSuffix("_sum") { base = String(s.name.dropLast(4)); part = "sum" }
                    else if s.name.hasSuffix("_count") { base = String(s.name.dropLast(6)); part = "count" }
                    else { continue }
                    guard histograms.contains(base) else { continue }
                    var h = hist[model, default: [:]][base, default: ([:], 0, 0)]
                    switch part {
                    case "bucket":
                        guard let le = s.label("le").flatMap(Double.init) else { continue }
                        h.buckets[le, default: 0] += s.value
                    case "sum": h.sum += s.value
                    default: h.count += s.value
                    }
                    hist[model, default: [:]][base] = h
                    out[model] = e
                    continue
                }
                out[model] = e
            }
        }
        for (model, byName) in hist {
            var e = out[model] ?? VLLMEngineSample()
            for (name, h) in byName {
                let bounds = h.buckets.keys.sorted()
                let hh = CumulativeHistogram(bounds: bounds, cumulative: bounds.map { h.buckets[$0]! }, sum: h.sum, count: h.count)
                switch name {
                case "vllm:time_to_first_token_seconds": e.timeToFirstToken = hh
                case "vllm:request_time_per_output_token_seconds": e.timePerOutputToken = hh
                case "vllm:time_per_output_token_seconds": if e.timePerOutputToken == nil { e.timePerOutputToken = hh }
                case "vllm:request_queue_time_seconds": e.queueTime = hh
                case "vllm:e2e_request_latency_seconds": e.e2eLatency = hh
                default: break
                }
            }
            out[model] = e
        }
        return out
    }

    private static func hasFamily(_ fs: [PrometheusFamily], _ name: String) -> Bool {
        fs.contains { $0.name == name && !$0.samples.isEmpty }
    }
}
