import PodSnapshot

/// `least-latency`: the pod expected to finish this request soonest, from
/// its windowed histograms (deltas over the scrape window, not since engine
/// start): mean queue time + mean TTFT + mean TPOT × the request's
/// `max_tokens` (128 when absent). A fresh pod with nothing running or
/// waiting and no finished request in the window costs 0 (idle, nothing to
/// estimate from, nothing in its way). Signal: scraped; pods without an
/// estimate are left out, and with none the decision falls back to
/// `least-request` (`latency_unknown`).
public struct LeastLatencyScorer: Scorer {
    public let name = "least-latency"
    public let unknownReason = "latency_unknown"
    public static let defaultOutputTokens = 128
    public init() {}

    public func cost(at i: Int, in view: ModelView) -> Double? {
        guard let m = view.metrics[i] else { return nil }
        if let ttft = m.ttftMean, let tpot = m.tpotMean {
            return (m.queueTimeMean ?? 0) + ttft + tpot * Double(view.outputTokens)
        }
        if m.running == 0 && m.waiting == 0 { return 0 }
        return nil
    }
}
