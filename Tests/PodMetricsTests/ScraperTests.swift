import EventLoop
import Foundation
import HTTP1
import Logging
@testable import PodMetrics
import PodSnapshot
import Synchronization
import Testing

/// Waits (polling, bounded) until `condition` holds; returns whether it did.
func eventually(_ seconds: Double = 10, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if condition() { return true }
        usleep(10_000)  // pacing between looks; the deadline bounds the wait
    }
    return condition()
}

@Suite struct ScraperTests {
    /// A metrics endpoint whose page the test changes, one that never
    /// answers, and a port nobody listens on: the slow one must not delay the
    /// good one, and both bad ones go stale.
    @Test func slowAndDeadPodsNeverDelayOthers() throws {
        let group = try EventLoopGroup(count: 1)
        let page = Mutex("vllm:num_requests_running{model_name=\"m\"} 3\nvllm:num_requests_waiting{model_name=\"m\"} 1\n")
        let good = try HTTP1Server(address: .tcp(host: "127.0.0.1", port: 0), group: group) { _, w in
            w.respond(status: 200, body: Array(page.withLock { $0 }.utf8))
        }
        let slow = try HTTP1Server(address: .tcp(host: "127.0.0.1", port: 0), group: group) { _, _ in /* never answers */ }
        let deadPort: Int = {
            let l = try! Listener(address: .tcp(host: "127.0.0.1", port: 0))
            defer { l.close() }
            return l.boundPort!
        }()
        group.start()
        let control = try EventLoopGroup(count: 1)
        control.start()
        defer { group.stopAll(); control.stopAll(); group.join(); control.join() }

        let registry = PodRegistry()
        let eps = [PodEndpoint(host: "127.0.0.1", port: good.listener.boundPort!),
                   PodEndpoint(host: "127.0.0.1", port: slow.listener.boundPort!),
                   PodEndpoint(host: "127.0.0.1", port: deadPort)]
        registry.publish(models: ["m": eps])
        var c = ScraperConfiguration()
        c.intervalNanos = 20_000_000
        c.timeoutNanos = 300_000_000
        c.maxAgeNanos = 2_000_000_000
        let scraper = PodMetricsScraper(configuration: c, loop: control.loops[0], registry: registry, logger: Logger(label: "t"))
        scraper.setEndpoints(eps)
        scraper.start()

        func state(_ e: PodEndpoint) -> PodState? { registry.snapshot.pods[e.address] }
        #expect(eventually { registry.snapshot.metrics(for: eps[0], model: "m")?.running == 3 })
        #expect(registry.snapshot.metrics(for: eps[0], model: "m")?.waiting == 1)
        #expect(eventually { !(state(eps[1])?.health.isFresh ?? true) && state(eps[1])?.health != .unknown })
        #expect(state(eps[1])?.lastError?.contains("no response within 300 ms") == true, "\(String(describing: state(eps[1])))")
        #expect(eventually { state(eps[2])?.lastError?.contains("onnection") == true })
        // While the slow pod times out (300 ms each), the good pod keeps being
        // scraped every 20 ms: many more scrapes than the slow one's.
        #expect(eventually { (state(eps[0])?.scrapes ?? 0) > 5 * (state(eps[1])?.scrapes ?? 0) + 10 })
        #expect(registry.snapshot.metrics(for: eps[1], model: "m") == nil)
        // The page changes: the cache follows.
        page.withLock { $0 = "vllm:num_requests_running{model_name=\"m\"} 7\n" }
        #expect(eventually { registry.snapshot.metrics(for: eps[0], model: "m")?.running == 7 })
        // A malformed page is a failed scrape with the parser's reason.
        page.withLock { $0 = "vllm:num_requests_running{model_name=\"m\" 7\n" }
        #expect(eventually { state(eps[0])?.lastError?.contains("unparseable metrics page") == true })
    }
}
