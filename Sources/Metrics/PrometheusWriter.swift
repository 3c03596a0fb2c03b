/// Builds one Prometheus text-format (0.0.4) page. Every component that
/// exposes metrics (the gateway's admin endpoint, the KV agent, the vLLM
/// simulator) writes through this type, so escaping, `le` buckets, `+Inf`
/// and number formatting are done once.
///
/// Labels are passed already rendered (`a="x",b="y"`, see `labels(_:)`) so
/// hot renderers (the simulator answers a scrape every 50 ms per pod) can
/// build a label string once and reuse it.
public struct PrometheusWriter: Sendable {
    public private(set) var text = ""

    public init(reserving bytes: Int = 4096) {
        text.reserveCapacity(bytes)
    }

    public enum Kind: String, Sendable { case counter, gauge, histogram }

    /// `# HELP` and `# TYPE` lines of a family.
    public mutating func family(_ name: String, _ kind: Kind, help: String) {
        text += "# HELP \(name) \(help)\n# TYPE \(name) \(kind.rawValue)\n"
    }

    /// One sample line; `labels` is a rendered label list or "".
    public mutating func sample(_ name: String, labels: String = "", _ value: Double) {
        appendName(name, labels)
        text += "\(value)\n"
    }

    /// One sample line with an integer value (printed without a fraction).
    public mutating func sample(_ name: String, labels: String = "", _ value: Int) {
        appendName(name, labels)
        text += "\(value)\n"
    }

    /// One sample line with an unsigned integer value.
    public mutating func sample(_ name: String, labels: String = "", _ value: UInt64) {
        appendName(name, labels)
        text += "\(value)\n"
    }

    /// A family header and a single unlabelled sample.
    public mutating func single(_ name: String, _ kind: Kind, help: String, _ value: Int) {
        family(name, kind, help: help)
        sample(name, value)
    }

    /// The `_bucket` (cumulative, `le` between `before` and `after`), `_count`
    /// and `_sum` samples of a histogram, `_count` before `_sum` as vLLM does.
    /// `before`/`after` are rendered label lists (either may be "").
    public mutating func histogram(_ name: String, _ h: Histogram.Snapshot, before: String = "", after: String = "") {
        let pre = before.isEmpty ? "" : before + ","
        let post = after.isEmpty ? "" : "," + after
        for (i, b) in h.bounds.enumerated() {
            text += "\(name)_bucket{\(pre)le=\"\(b)\"\(post)} \(Double(h.cumulative[i]))\n"
        }
        text += "\(name)_bucket{\(pre)le=\"+Inf\"\(post)} \(Double(h.count))\n"
        let rest = Self.join(before, after)
        appendName("\(name)_count", rest)
        text += "\(Double(h.count))\n"
        appendName("\(name)_sum", rest)
        text += "\(h.sum)\n"
    }

    private mutating func appendName(_ name: String, _ labels: String) {
        text += name
        if !labels.isEmpty { text += "{\(labels)}" }
        text += " "
    }

    private static func join(_ a: String, _ b: String) -> String {
        a.isEmpty ? b : (b.isEmpty ? a : a + "," + b)
    }

    /// Renders `name="value"` pairs in the given order, escaping values.
    public static func labels(_ pairs: KeyValuePairs<String, String>) -> String {
        labels(pairs.map { ($0.key, $0.value) })
    }

    public static func labels(_ pairs: [(String, String)]) -> String {
        var out = ""
        for (i, (k, v)) in pairs.enumerated() {
            if i > 0 { out += "," }
            out += "\(k)=\"\(escape(v))\""
        }
        return out
    }

    /// Escapes a label value (`\`, `"` and newline).
    public static func escape(_ s: String) -> String {
        guard s.utf8.contains(where: { $0 == UInt8(ascii: "\\") || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\n") })
        else { return s }
        var out = ""
        for c in s {
            switch c {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            default: out.append(c)
            }
        }
        return out
    }
}
