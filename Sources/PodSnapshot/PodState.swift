/// Whether a pod's scraped metrics may be used, as the scraper last judged it.
public enum PodHealth: Sendable, Equatable {
    /// Not scraped successfully yet.
    case unknown
    /// The last scrape succeeded and is recent enough.
    case fresh
    /// Metrics must not be used: why.
    case stale(String)

    public var isFresh: Bool { self == .fresh }
}

/// Scraped state of one endpoint, as routers and the debug endpoint see it.
public struct PodState: Sendable {
    public var health: PodHealth
    /// Per `model_name`; empty unless `health` is fresh.
    public var models: [String: ModelMetrics]
    public var lastError: String?
    /// How long the last scrape took (ns).
    public var lastScrapeNanos: UInt64?
    /// Monotonic time (ns) of the last successful scrape; nil before the first.
    public var lastSuccessNanos: UInt64?
    public var scrapes: Int
    public var failures: Int

    public init(health: PodHealth, models: [String: ModelMetrics] = [:], lastError: String? = nil,
                lastScrapeNanos: UInt64? = nil, scrapes: Int = 0, failures: Int = 0, lastSuccessNanos: UInt64? = nil) {
        self.lastSuccessNanos = lastSuccessNanos
        self.health = health
        self.models = models
        self.lastError = lastError
        self.lastScrapeNanos = lastScrapeNanos
        self.scrapes = scrapes
        self.failures = failures
    }
}
