/// What routers may know about one model on one pod, derived from recent
/// scrapes. Every value may be nil ("unknown"): never yesterday's numbers.
public struct ModelMetrics: Sendable, Equatable {
    /// Monotonic time (ns) of the newest scrape these values come from.
    public var scrapedAtNanos: UInt64
    public var running: Double?
    public var waiting: Double?
    public var kvCacheUsage: Double?
    /// Δhits / Δqueries over the window.
    public var prefixCacheHitRate: Double?
    public var promptTokensPerSecond: Double?
    public var generationTokensPerSecond: Double?
    /// From histogram deltas over the window (not since engine start).
    public var ttftMean: Double?
    public var ttftP90: Double?
    public var tpotMean: Double?
    public var queueTimeMean: Double?
    public var e2eMean: Double?
    /// Prefill seconds per computed (uncached) prompt token over the window:
    /// Δ sum of prefill time / Δ sum of prefill-computed tokens.
    public var prefillSecondsPerToken: Double?
    /// The engine's KV cache size in tokens and its block size
    /// (`vllm:cache_config_info`), from the newest scrape.
    public var kvCapacityTokens: Double?
    public var blockSize: Double?
    /// Requests finished inside the window (Δ of the TTFT histogram count).
    public var requestsInWindow: Double?

    public init(scrapedAtNanos: UInt64) {
        self.scrapedAtNanos = scrapedAtNanos
    }
}
