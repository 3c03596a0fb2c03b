/// Parses Prometheus text pages. Works on bytes, decodes only what it keeps,
/// and can skip whole families by name (`keep`), which is how the scraper
/// reads a 50 KB vLLM page while building strings for a few dozen samples.
public struct PrometheusParser: Sendable {
    public var limits: PrometheusLimits
    /// Family (or bare sample) names to keep; nil keeps everything.
    public var keep: Set<String>?

    /// `keep` as byte strings, so unwanted lines are skipped without building a String.
    private let keepBytes: Set<ArraySlice<UInt8>>?

    public init(limits: PrometheusLimits = PrometheusLimits(), keep: Set<String>? = nil) {
        self.limits = limits
        self.keep = keep
        self.keepBytes = keep.map { Set($0.map { Array($0.utf8)[...] }) }
    }

    private static let suffixBytes = suffixes.map { Array($0.utf8) }

    /// Whether a sample name, or its base name without a known suffix, is kept.
    private func wanted(_ name: ArraySlice<UInt8>) -> Bool {
        guard let keepBytes else { return true }
        if keepBytes.contains(name) { return true }
        for s in Self.suffixBytes where name.count > s.count && name.suffix(s.count).elementsEqual(s) {
            if keepBytes.contains(name.dropLast(s.count)) { return true }
        }
        return false
    }

    /// Suffixes that attach a sample to the family of its base name.
    static let suffixes = ["_bucket", "_sum", "_count", "_created", "_total", "_gcount", "_gsum", "_info"]

    public func parse(_ text: String) throws(PrometheusParseError) -> [PrometheusFamily] {
        try parse(Array(text.utf8))
    }

    public func parse(_ bytes: [UInt8]) throws(PrometheusParseError) -> [PrometheusFamily] {
        var families: [PrometheusFamily] = []
        var index: [String: Int] = [:]  // family name -> position
        var help: [String: String] = [:]
        var lineNo = 0
        var pos = 0
        var samples = 0
        let n = bytes.count
        let span = bytes.span
        while pos < n {
            lineNo += 1
            var end = pos
            while end < n && span[end] != 0x0A { end += 1 }
            let lineStart = pos
            pos = end + 1
            if end - lineStart > limits.maxLineBytes {
                throw PrometheusParseError(line: lineNo, reason: "line longer than \(limits.maxLineBytes) bytes")
            }
            var lineEnd = end
            if lineEnd > lineStart && span[lineEnd - 1] == 0x0D { lineEnd -= 1 }
            var i = lineStart
            while i < lineEnd && (span[i] == 0x20 || span[i] == 0x09) { i += 1 }
            if i == lineEnd { continue }
            if span[i] == UInt8(ascii: "#") {
                try comment(bytes, i + 1, lineEnd, lineNo, &families, &index, &help)
                continue
            }
            // Sample line: the name first, so unwanted families are skipped cheaply.
            let nameStart = i
            while i < lineEnd, Self.isNameByte(span[i], first: i == nameStart) { i += 1 }
            if i == nameStart { throw PrometheusParseError(line: lineNo, reason: "expected a metric name") }
            if !wanted(bytes[nameStart..<i]) { continue }
            let name = String(decoding: bytes[nameStart..<i], as: UTF8.self)
            let familyName = Self.familyName(for: name, known: index, keep: keep)
            samples += 1
            if samples > limits.maxSamples {
                throw PrometheusParseError(line: lineNo, reason: "more than \(limits.maxSamples) samples")
            }
            var labels: [PrometheusLabel] = []
            if i < lineEnd && span[i] == UInt8(ascii: "{") {
                i = try parseLabels(bytes, i + 1, lineEnd, lineNo, &labels)
            }
            guard i < lineEnd, span[i] == 0x20 || span[i] == 0x09 else {
                throw PrometheusParseError(line: lineNo, reason: "expected a space and a value after the name")
            }
            while i < lineEnd && (span[i] == 0x20 || span[i] == 0x09) { i += 1 }
            let valueStart = i
            while i < lineEnd && span[i] != 0x20 && span[i] != 0x09 { i += 1 }
            guard i > valueStart else { throw PrometheusParseError(line: lineNo, reason: "missing value") }
            guard let value = Self.parseValue(bytes[valueStart..<i]) else {
                throw PrometheusParseError(line: lineNo, reason: "invalid value '\(String(decoding: bytes[valueStart..<i], as: UTF8.self))'")
            }
            while i < lineEnd && (span[i] == 0x20 || span[i] == 0x09) { i += 1 }
            var ts: Int64?
            if i < lineEnd {
                let tsStart = i
                while i < lineEnd && span[i] != 0x20 && span[i] != 0x09 { i += 1 }
                guard let t = Int64(String(decoding: bytes[tsStart..<i], as: UTF8.self)) else {
                    throw PrometheusParseError(line: lineNo, reason: "invalid timestamp")
                }
                ts = t
                while i < lineEnd && (span[i] == 0x20 || span[i] == 0x09) { i += 1 }
                if i < lineEnd { throw PrometheusParseError(line: lineNo, reason: "unexpected text after the timestamp") }
            }
            let sample = PrometheusSample(name: name, labels: labels, value: value, timestampMillis: ts)
            if let f = index[familyName] {
                families[f].samples.append(sample)
            } else {
                index[familyName] = families.count
                families.append(PrometheusFamily(name: familyName, type: .untyped, help: help[familyName], samples: [sample]))
            }
        }
        return families
    }

    /// `# HELP name text` / `# TYPE name type`; other comments are ignored.
    private func comment(_ b: [UInt8], _ from: Int, _ end: Int, _ lineNo: Int,
                         _ families: inout [PrometheusFamily], _ index: inout [String: Int],
                         _ help: inout [String: String]) throws(PrometheusParseError) {
        var i = from
        while i < end && b[i] == 0x20 { i += 1 }
        let kwStart = i
        while i < end && b[i] != 0x20 { i += 1 }
        let kw = b[kwStart..<i]
        let isHelp = kw.elementsEqual("HELP".utf8), isType = kw.elementsEqual("TYPE".utf8)
        guard isHelp || isType else { return }
        while i < end && b[i] == 0x20 { i += 1 }
        let nameStart = i
        while i < end && b[i] != 0x20 { i += 1 }
        guard i > nameStart else { throw PrometheusParseError(line: lineNo, reason: "\(isHelp ? "HELP" : "TYPE") without a metric name") }
        let name = String(decoding: b[nameStart..<i], as: UTF8.self)
        if i < end { i += 1 }
        if let keep, !keep.contains(name) { return }
        if isHelp {
            var text: [UInt8] = []
            var k = i
            while k < end {
                if b[k] == 0x5C && k + 1 < end {
                    switch b[k + 1] {
                    case 0x5C: text.append(0x5C)
                    case UInt8(ascii: "n"): text.append(0x0A)
                    default:
                        throw PrometheusParseError(line: lineNo, reason: "invalid escape in HELP")
                    }
                    k += 2
                } else {
                    text.append(b[k])
                    k += 1
                }
            }
            let h = String(decoding: text, as: UTF8.self)
            help[name] = h
            if let f = index[name] { families[f].help = h }
        } else {
            let t = String(decoding: b[i..<end], as: UTF8.self).trimmingBlanks()
            guard let type = PrometheusMetricType(rawValue: t) else {
                throw PrometheusParseError(line: lineNo, reason: "unknown metric type '\(t)'")
            }
            if let f = index[name] {
                families[f].type = type
            } else {
                index[name] = families.count
                families.append(PrometheusFamily(name: name, type: type, help: help[name], samples: []))
            }
        }
    }

    private func parseLabels(_ b: [UInt8], _ from: Int, _ end: Int, _ lineNo: Int,
                             _ labels: inout [PrometheusLabel]) throws(PrometheusParseError) -> Int {
        var i = from
        while true {
            while i < end && (b[i] == 0x20 || b[i] == 0x09) { i += 1 }
            guard i < end else { throw PrometheusParseError(line: lineNo, reason: "unterminated label set") }
            if b[i] == UInt8(ascii: "}") { return i + 1 }
            let ns = i
            while i < end, Self.isLabelNameByte(b[i], first: i == ns) { i += 1 }
            guard i > ns else { throw PrometheusParseError(line: lineNo, reason: "expected a label name") }
            let lname = String(decoding: b[ns..<i], as: UTF8.self)
            while i < end && b[i] == 0x20 { i += 1 }
            guard i < end, b[i] == UInt8(ascii: "=") else { throw PrometheusParseError(line: lineNo, reason: "expected '=' after label \(lname)") }
            i += 1
            while i < end && b[i] == 0x20 { i += 1 }
            guard i < end, b[i] == UInt8(ascii: "\"") else { throw PrometheusParseError(line: lineNo, reason: "label value must be quoted") }
            i += 1
            var value: [UInt8] = []
            var closed = false
            while i < end {
                let c = b[i]
                if c == UInt8(ascii: "\"") { closed = true; i += 1; break }
                if c == 0x5C {
                    guard i + 1 < end else { break }
                    switch b[i + 1] {
                    case 0x5C: value.append(0x5C)
                    case UInt8(ascii: "\""): value.append(UInt8(ascii: "\""))
                    case UInt8(ascii: "n"): value.append(0x0A)
                    default: throw PrometheusParseError(line: lineNo, reason: "invalid escape in label \(lname)")
                    }
                    i += 2
                    continue
                }
                value.append(c)
                i += 1
                if value.count > limits.maxLabelValueBytes {
                    throw PrometheusParseError(line: lineNo, reason: "label \(lname) longer than \(limits.maxLabelValueBytes) bytes")
                }
            }
            guard closed else { throw PrometheusParseError(line: lineNo, reason: "unterminated label value") }
            labels.append(PrometheusLabel(lname, String(decoding: value, as: UTF8.self)))
            if labels.count > limits.maxLabelsPerSample {
                throw PrometheusParseError(line: lineNo, reason: "more than \(limits.maxLabelsPerSample) labels")
            }
            while i < end && b[i] == 0x20 { i += 1 }
            guard i < end else { throw PrometheusParseError(line: lineNo, reason: "unterminated label set") }
            if b[i] == UInt8(ascii: ",") { i += 1; continue }
            if b[i] == UInt8(ascii: "}") { return i + 1 }
            throw PrometheusParseError(line: lineNo, reason: "expected ',' or '}' in label set")
        }
    }

    static func familyName(for sample: String, known: [String: Int], keep: Set<String>?) -> String {
        if known[sample] != nil { return sample }
        for s in suffixes where sample.hasSuffix(s) {
            let base = String(sample.dropLast(s.count))
            if known[base] != nil || keep?.contains(base) == true { return base }
        }
        return sample
    }

    static func parseValue(_ s: ArraySlice<UInt8>) -> Double? {
        // Fast path: plain decimals like 12 or 0.0 (most samples).
        var v = 0.0, frac = 0.0, scale = 1.0, sawDigit = false, inFrac = false, simple = true
        for c in s {
            if c >= 0x30 && c <= 0x39 {
                sawDigit = true
                if inFrac { scale /= 10; frac += Double(c - 0x30) * scale } else { v = v * 10 + Double(c - 0x30) }
            } else if c == UInt8(ascii: ".") && !inFrac {
                inFrac = true
            } else {
                simple = false
                break
            }
        }
        if simple && sawDigit && s.count <= 15 { return v + frac }
        return Double(String(decoding: s, as: UTF8.self))
    }

    static func isNameByte(_ c: UInt8, first: Bool) -> Bool {
        (c >= 0x61 && c <= 0x7A) || (c >= 0x41 && c <= 0x5A) || c == 0x5F || c == 0x3A || (!first && c >= 0x30 && c <= 0x39)
    }

    static func isLabelNameByte(_ c: UInt8, first: Bool) -> Bool {
        (c >= 0x61 && c <= 0x7A) || (c >= 0x41 && c <= 0x5A) || c == 0x5F || (!first && c >= 0x30 && c <= 0x39)
    }
}

extension String {
    func trimmingBlanks() -> String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" { s = s.dropLast() }
        return String(s)
    }
}
