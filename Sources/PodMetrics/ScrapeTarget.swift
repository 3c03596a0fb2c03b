import EventLoop
import HTTP1
import Logging
import Metrics
import PodSnapshot
import Synchronization

/// Loop-confined scraper state.
final class ScraperState {
    var targets: [String: ScrapeTarget] = [:]
    var inFlight = 0
    /// Targets waiting for a slot, oldest first (`head` is the next one).
    var due: [ScrapeTarget] = []
    var head = 0
}

/// One endpoint's scrape state (loop-confined).
final class ScrapeTarget {
    let endpoint: PodEndpoint
    let metricsAddress: String
    let client: HTTP1Client
    var machine: ScrapeTargetStateMachine
    var window: MetricsWindow
    var inFlight = false
    var queued = false
    var nextDue: UInt64 = 0
    var lastDurationNanos: UInt64?

    init(endpoint: PodEndpoint, loop: EventLoop, configuration: ScraperConfiguration) {
        self.endpoint = endpoint
        self.metricsAddress = "\(endpoint.host):\(endpoint.metricsPort)"
        self.client = HTTP1Client(host: endpoint.host, port: endpoint.metricsPort, loop: loop)
        self.machine = ScrapeTargetStateMachine(failureThreshold: configuration.failureThreshold,
                                                maxAgeNanos: configuration.maxAgeNanos)
        self.window = MetricsWindow(windowNanos: configuration.windowNanos)
    }

    /// Set when a scrape finished since the last publication.
    var dirty = true
    private var publishedHealth: ScrapeTargetStateMachine.Health?

    /// The state to publish, or nil when nothing a reader sees has changed.
    func publishIfChanged(now: UInt64) -> PodState? {
        let h = machine.health(now: now)
        guard dirty || h != publishedHealth else { return nil }
        dirty = false
        publishedHealth = h
        return PodState(health: h, models: h.isFresh ? window.current() : [:], lastError: machine.lastError,
                        lastScrapeNanos: lastDurationNanos, scrapes: machine.totalSuccesses + machine.totalFailures,
                        failures: machine.totalFailures, lastSuccessNanos: machine.lastSuccessNanos)
    }
}
