import EventLoop
import HTTP1
import Logging
import Metrics
import PodSnapshot
import Synchronization

/// How the scraper runs.
public struct ScraperConfiguration: Sendable {
    /// Time between scrapes of one endpoint.
    public var intervalNanos: UInt64 = 50_000_000
    /// A scrape with no full response by then fails (and its connection closes).
    public var timeoutNanos: UInt64 = 1_000_000_000
    /// Scrapes in flight at once, across all endpoints; the rest wait a tick.
    public var maxInFlight = 256
    /// Failures in a row that make an endpoint stale.
    public var failureThreshold = 3
    /// Age of the last good scrape after which an endpoint is stale.
    public var maxAgeNanos: UInt64 = 1_000_000_000
    /// Span of the counter and histogram deltas.
    public var windowNanos: UInt64 = 10_000_000_000
    public var path = "/metrics"
    public init() {}
}
