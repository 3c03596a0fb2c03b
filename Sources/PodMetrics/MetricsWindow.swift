import PodSnapshot

/// The recent scrapes of one pod, and the values derived from them.
public struct MetricsWindow: Sendable {
    public let windowNanos: UInt64
    /// Baselines, at most one per tenth of the window (a 50 ms scraper
    /// keeps about 11 samples, not 200), oldest first.
    private var samples: [(at: UInt64, models: [String: VLLMEngineSample])] = []
    private var latest: (at: UInt64, models: [String: VLLMEngineSample])?

    public init(windowNanos: UInt64) {
        self.windowNanos = windowNanos
    }

    public var isEmpty: Bool { latest == nil }

    /// Adds a scrape taken at `at` (monotonic ns) and drops baselines older
    /// than the window (keeping one as the baseline for deltas).
    public mutating func add(_ models: [String: VLLMEngineSample], at: UInt64) {
        latest = (at, models)
        if let last = samples.last, at - last.at < windowNanos / 10 {
            // Too close to the previous baseline: only `latest` moves.
        } else {
            samples.append((at, models))
        }
        let cutoff = at > windowNanos ? at - windowNanos : 0
        while samples.count > 2, samples[1].at <= cutoff { samples.removeFirst() }
    }

    /// Forgets everything (the pod went stale or away).
    public mutating func reset() {
        samples.removeAll()
        latest = nil
    }

    /// Derived values per model.
    public func current() -> [String: ModelMetrics] {
        guard let last = latest else { return [:] }
        let first = samples.first.flatMap { $0.at < last.at ? $0 : nil }
        var out: [String: ModelMetrics] = [:]
        for (model, now) in last.models {
            var m = ModelMetrics(scrapedAtNanos: last.at)
            m.running = now.running
            m.waiting = now.waiting
            m.kvCacheUsage = now.kvCacheUsage
            m.kvCapacityTokens = now.kvCapacityTokens
            m.blockSize = now.blockSize
            if let first, let then = first.models[model], last.at > first.at {
                let dt = Double(last.at - first.at) / 1e9
                m.promptTokensPerSecond = Self.increase(now.promptTokens, then.promptTokens).map { $0 / dt }
                m.generationTokensPerSecond = Self.increase(now.generationTokens, then.generationTokens).map { $0 / dt }
                if let q = Self.increase(now.prefixCacheQueries, then.prefixCacheQueries), q > 0,
                   let h = Self.increase(now.prefixCacheHits, then.prefixCacheHits) {
                    m.prefixCacheHitRate = h / q
                }
                if let a = now.timeToFirstToken, let b = then.timeToFirstToken, let d = a.delta(since: b) {
                    m.ttftMean = d.mean
                    m.ttftP90 = d.quantile(0.9)
                    m.requestsInWindow = d.count
                }
                if let a = now.timePerOutputToken, let b = then.timePerOutputToken { m.tpotMean = a.delta(since: b)?.mean }
                if let a = now.queueTime, let b = then.queueTime { m.queueTimeMean = a.delta(since: b)?.mean }
                if let a = now.e2eLatency, let b = then.e2eLatency { m.e2eMean = a.delta(since: b)?.mean }
                if let a = now.prefillTime, let b = then.prefillTime, let dt = a.delta(since: b),
                   let c = now.prefillComputedTokens, let d = then.prefillComputedTokens, let dn = c.delta(since: d),
                   dn.sum > 0, dt.count > 0 {
                    m.prefillSecondsPerToken = dt.sum / dn.sum
                }
            }
            out[model] = m
        }
        return out
    }

    /// Counter increase with reset handling (a smaller value means the
    /// engine restarted: the increase is the new value).
    static func increase(_ now: Double?, _ then: Double?) -> Double? {
        guard let now, let then else { return nil }
        return now >= then ? now - then : now
    }
}
