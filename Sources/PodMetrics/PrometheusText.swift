/// The Prometheus text exposition format (version 0.0.4): families with
/// HELP and TYPE, samples with escaped label values, histograms and
/// summaries, `+Inf`/`-Inf`/`NaN`, optional timestamps, `_created` samples.

/// One `name{labels} value [timestamp]` line.
public struct PrometheusSample: Sendable, Equatable {
    public var name: String
    public var labels: [PrometheusLabel]
    public var value: Double
    public var timestampMillis: Int64?

    public init(name: String, labels: [PrometheusLabel], value: Double, timestampMillis: Int64? = nil) {
        self.name = name
        self.labels = labels
        self.value = value
        self.timestampMillis = timestampMillis
    }

    /// A label's value, or nil.
    public func label(_ name: String) -> String? {
        for l in labels where l.name == name { return l.value }
        return nil
    }

    public static func == (a: Self, b: Self) -> Bool {
        a.name == b.name && a.labels == b.labels && a.timestampMillis == b.timestampMillis
            && (a.value == b.value || (a.value.isNaN && b.value.isNaN))
    }
}

public struct PrometheusLabel: Sendable, Equatable {
    public var name: String
    public var value: String
    public init(_ name: String, _ value: String) {
        self.name = name
        self.value = value
    }
}

public enum PrometheusMetricType: String, Sendable {
    case counter, gauge, histogram, summary, untyped, info, stateset, gaugehistogram
}

/// Samples that share a family (a TYPE line, or a bare name).
public struct PrometheusFamily: Sendable, Equatable {
    public var name: String
    public var type: PrometheusMetricType
    public var help: String?
    public var samples: [PrometheusSample]
}

/// A parse failure: the 1-based line and why.
public struct PrometheusParseError: Error, Sendable, Equatable, CustomStringConvertible {
    public let line: Int
    public let reason: String
    public var description: String { "line \(line): \(reason)" }
}

/// Limits that keep a hostile or broken page from costing unbounded memory.
public struct PrometheusLimits: Sendable {
    public var maxLabelsPerSample = 64
    public var maxLabelValueBytes = 4096
    public var maxLineBytes = 64 * 1024
    public var maxSamples = 200_000
    public init() {}
}
