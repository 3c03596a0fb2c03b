import Synchronization

/// A histogram family with labels (`model`, `strategy`, …): one `Histogram`
/// per distinct label set, made on first use. Bounded: past `maxSeries`
/// label sets, new ones are counted under every label = "other", so a
/// client choosing label text (a blend's name) cannot grow the page.
public final class LabelledHistogram: Sendable {
    public let labelNames: [String]
    public let bounds: [Double]
    public let maxSeries: Int
    private let series = Mutex<[[String]: Histogram]>([:])

    public init(labelNames: [String], bounds: [Double], maxSeries: Int = 1024) {
        self.labelNames = labelNames
        self.bounds = bounds
        self.maxSeries = maxSeries
    }

    /// Records `value` for the label values (in `labelNames` order).
    public func observe(_ values: [String], _ value: Double) {
        let h = series.withLock { m -> Histogram in
            if let h = m[values] { return h }
            let key = m.count < maxSeries ? values : Array(repeating: "other", count: labelNames.count)
            if let h = m[key] { return h }
            let h = Histogram(bounds: bounds)
            m[key] = h
            return h
        }
        h.observe(value)
    }

    /// Every series' rendered labels and snapshot, sorted by labels.
    public var snapshots: [(labels: String, snapshot: Histogram.Snapshot)] {
        let all = series.withLock { $0 }
        return all.map { (k, h) in
            (PrometheusWriter.labels(Array(zip(labelNames, k))), h.snapshot)
        }.sorted { $0.labels < $1.labels }
    }
}
