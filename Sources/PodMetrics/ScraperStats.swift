import EventLoop
import HTTP1
import Logging
import Metrics
import PodSnapshot
import Synchronization

/// Scrape outcome counters.
public final class ScraperStats: Sendable {
    public let succeeded = Counter()
    public let failed = Counter()
    /// Due scrapes left waiting for a slot at the end of a tick (`maxInFlight` reached).
    public let skippedSaturated = Counter()
}
