import EventLoop
import HTTP1
import Logging
import Metrics
import PodSnapshot
import Synchronization

/// Scrapes every endpoint's `/metrics` concurrently from one event loop:
/// each endpoint has its own keep-alive connection, its own timer and its
/// own timeout, so a slow or dead endpoint never delays another. After each
/// round it publishes fresh `PodState`s to the registry.
///
/// Threading: all state lives on `loop`; `setEndpoints` may be called from
/// any thread.
public final class PodMetricsScraper: Sendable {
    public let configuration: ScraperConfiguration
    public let loop: EventLoop
    let registry: PodRegistry
    let logger: Logger
    let stats = ScraperStats()
    let decoder = VLLMScrapeDecoder()
    private let key = "pod-metrics-scraper"

    public init(configuration: ScraperConfiguration, loop: EventLoop, registry: PodRegistry, logger: Logger) {
        self.configuration = configuration
        self.loop = loop
        self.registry = registry
        self.logger = logger
    }

    /// Scrape counters (any thread).
    public var counters: ScraperStats { stats }

    /// Starts the periodic rounds on the loop.
    public func start() {
        loop.execute { [self] in tick(state()) }
    }

    /// The loop-confined state (created on first use, whichever call comes first).
    private func state() -> ScraperState {
        if let s = loop.loopLocal[key] as? ScraperState { return s }
        let s = ScraperState()
        loop.loopLocal[key] = s
        return s
    }

    /// Replaces the set of endpoints to scrape (keeps state of those that stay).
    public func setEndpoints(_ endpoints: [PodEndpoint]) {
        loop.execute { [self] in
            let s = state()
            var next: [String: ScrapeTarget] = [:]
            for e in endpoints {
                let metricsAddress = "\(e.host):\(e.metricsPort)"
                if let t = s.targets[e.address], t.metricsAddress == metricsAddress {
                    next[e.address] = t
                } else {
                    next[e.address] = ScrapeTarget(endpoint: e, loop: loop, configuration: configuration)
                }
            }
            for (k, t) in s.targets where next[k] == nil { t.client.close() }
            s.targets = next
        }
    }

    private func tick(_ s: ScraperState) {
        let now = monotonicNanos()
        var changed: [String: PodState] = [:]
        for (address, t) in s.targets {
            if !t.inFlight && !t.queued && now >= t.nextDue {
                t.queued = true
                s.due.append(t)
            }
            // Recompute a pod's published state only when it got a new
            // scrape or its health moved (age); most ticks touch few pods.
            if let st = t.publishIfChanged(now: now) { changed[address] = st }
        }
        pump(s)
        if !s.due.isEmpty { stats.skippedSaturated.add(UInt64(s.due.count)) }
        if !changed.isEmpty { registry.publish(pods: changed) }
        loop.schedule(afterNanos: configuration.intervalNanos) { [self] in tick(s) }
    }

    /// Starts due scrapes, oldest first, while slots are free.
    private func pump(_ s: ScraperState) {
        while s.inFlight < configuration.maxInFlight, s.head < s.due.count {
            let t = s.due[s.head]
            s.head += 1
            t.queued = false
            if s.targets[t.endpoint.address] === t { scrape(t, s) }
        }
        if s.head == s.due.count {
            s.due.removeAll(keepingCapacity: true)
            s.head = 0
        } else if s.head > 1024 {
            s.due.removeFirst(s.head)
            s.head = 0
        }
    }

    private func scrape(_ t: ScrapeTarget, _ s: ScraperState) {
        t.inFlight = true
        s.inFlight += 1
        let started = monotonicNanos()
        t.nextDue = started + configuration.intervalNanos
        t.client.get(configuration.path, timeoutNanos: configuration.timeoutNanos) { [self] result in
            t.inFlight = false
            s.inFlight -= 1
            defer { pump(s) }  // a slot is free: the next due target goes now, not at the next tick
            let now = monotonicNanos()
            t.lastDurationNanos = now - started
            t.dirty = true
            switch result {
            case .success(let r) where r.status == 200:
                do {
                    t.window.add(try decoder.decode(r.body), at: now)
                    let wasStale = t.machine.totalFailures > 0 && !t.machine.health(now: now).isFresh
                    t.machine.succeeded(at: now)
                    stats.succeeded.add(1)
                    if wasStale { logger.notice("pods.scrape.recovered", metadata: ["pod.address": "\(t.endpoint.address)"]) }
                } catch {
                    fail(t, "unparseable metrics page: \(error)", now)
                }
            case .success(let r):
                fail(t, "HTTP \(r.status) from \(configuration.path)", now)
            case .failure(let e):
                fail(t, "\(e)", now)
            }
        }
    }

    private func fail(_ t: ScrapeTarget, _ why: String, _ now: UInt64) {
        let wasStale = !t.machine.health(now: now).isFresh && t.machine.totalFailures > 0
        t.machine.failed(at: now, error: why)
        stats.failed.add(1)
        if case .stale(let reason) = t.machine.health(now: now), !wasStale {
            t.window.reset()
            logger.warning("pods.scrape.stale", metadata: ["pod.address": "\(t.endpoint.address)", "reason": "\(reason)"])
        }
    }
}
