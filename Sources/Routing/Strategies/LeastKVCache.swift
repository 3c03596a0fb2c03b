import PodSnapshot

/// `least-kv-cache` (and its reference alias `least-gpu-cache`): the pod
/// whose KV cache is least used, from vLLM V1's `vllm:kv_cache_usage_perc`
/// (V0's `gpu_cache_usage_perc` was renamed; both names read the same
/// signal here, unlike the reference, whose `least-gpu-cache` read a metric
/// V1 no longer exports and silently routed at random). Signal: scraped;
/// pods without a fresh value are left out, and with none the decision
/// falls back to `least-request` (`kv_cache_usage_unknown`).
public struct LeastKVCacheScorer: Scorer {
    public let name: String
    public let unknownReason = "kv_cache_usage_unknown"
    public init(name: String = "least-kv-cache") { self.name = name }
    public func cost(at i: Int, in view: ModelView) -> Double? {
        view.metrics[i]?.kvCacheUsage
    }
}
