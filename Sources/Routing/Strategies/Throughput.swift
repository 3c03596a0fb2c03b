import PodSnapshot

/// `throughput`: the pod processing the fewest tokens per second (prompt +
/// generation), from the deltas of `vllm:prompt_tokens_total` and
/// `vllm:generation_tokens_total` over the scrape window (the reference
/// summed since-start counters, so a pod that was busy yesterday looked
/// busy forever). Signal: scraped; falls back to `least-request`
/// (`token_rate_unknown`).
public struct ThroughputScorer: Scorer {
    public let name = "throughput"
    public let unknownReason = "token_rate_unknown"
    public init() {}
    public func cost(at i: Int, in view: ModelView) -> Double? {
        guard let m = view.metrics[i], let p = m.promptTokensPerSecond, let g = m.generationTokensPerSecond else { return nil }
        return p + g
    }
}
