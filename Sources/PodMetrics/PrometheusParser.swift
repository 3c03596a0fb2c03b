/// Parses Prometheus text pages. Works on bytes, decodes only what it keeps,
/// and can skip whole families by name (`keep`), which is how the scraper
/// reads a 50 KB vLLM page while building strings for a few dozen samples.
public struct PrometheusParser: Sendable {
    public var limits: PrometheusLimits
    /// Family (or bare sample) names to keep; nil keeps everything.
    public var keep: Set<String>?

    /// `keep` as byte strings, so unwanted lines are skipped without building a String.
    private let keepBytes: Set<ArraySlice<UInt8>>?
    /// Every sample name a kept family can have (name, name_bucket, …), by
    /// FNV-1a hash of its bytes, with its family ordinal and a prebuilt
    /// String: the scraper's fast path allocates no name strings.
    private let table: [KeptName?]
    private let tableMask: Int
    let keptFamilies: [String]

    struct KeptName: Sendable {
        let bytes: [UInt8]
        let name: String
        let family: Int
    }

    public init(limits: PrometheusLimits = PrometheusLimits(), keep: Set<String>? = nil) {
        self.limits = limits
        self.keep = keep
        self.keepBytes = keep.map { Set($0.map { Array($0.utf8)[...] }) }
        // Open addressing over the FNV hash (no Hasher on the hot path),
        // at most a quarter full.
        let families = (keep ?? []).sorted()
        var size = 16
        while size < families.count * (Self.suffixes.count + 1) * 4 { size *= 2 }
        var table = [KeptName?](repeating: nil, count: size)
        for (ordinal, f) in families.enumerated() {
            // `_created` samples are their own gauge families in the text
            // format (prometheus_client writes a TYPE line for each); keep
            // them only when asked for by name.
            for suffix in [""] + Self.suffixes where suffix != "_created" {
                let name = f + suffix
                let bytes = Array(name.utf8)
                var slot = Int(truncatingIfNeeded: Self.fnv(bytes[...])) & (size - 1)
                var taken = false
                while let k = table[slot] {
                    if k.bytes == bytes { taken = true; break }  // e.g. "x_total" as x + "_total" and as itself
                    slot = (slot + 1) & (size - 1)
                }
                if !taken { table[slot] = KeptName(bytes: bytes, name: name, family: ordinal) }
            }
        }
        self.table = table
        self.tableMask = size - 1
        self.keptFamilies = families
    }

    @inline(__always) static func fnv(_ b: ArraySlice<UInt8>) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for c in b { h = (h ^ UInt64(c)) &* 0x100_0000_01b3 }
        return h
    }

    func lookup(_ name: ArraySlice<UInt8>, hash: UInt64? = nil) -> KeptName? {
        var slot = Int(truncatingIfNeeded: hash ?? Self.fnv(name)) & tableMask
        while let k = table[slot] {
            if k.bytes.count == name.count && k.bytes.elementsEqual(name) { return k }
            slot = (slot + 1) & tableMask
        }
        return nil
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
        if keep != nil { return try parseKept(bytes) }
        var families: [PrometheusFamily] = []
        var index: [String: Int] = [:]  // family name -> position
        var help: [String: String] = [:]
        var lineNo = 0
        var pos = 0
        var samples = 0
        let n = bytes.count
        let span = bytes.span
        var labelRanges: [PrometheusLineView.LabelRange] = []
        while pos < n {
            lineNo += 1
            guard let (content, lineEnd) = try Self.nextLine(span, &pos, n, limits.maxLineBytes, lineNo) else { continue }
            var i = content
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
            labelRanges.removeAll(keepingCapacity: true)
            if i < lineEnd && span[i] == UInt8(ascii: "{") {
                i = try scanLabels(span, i + 1, lineEnd, lineNo, &labelRanges)
            }
            let labels = Self.decodeLabels(bytes, labelRanges[...])
            let (value, ts) = try Self.sampleTail(bytes, span, i, lineEnd, lineNo)
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

    /// The kept-families path: `scan`, with each view turned into a sample.
    private func parseKept(_ bytes: [UInt8]) throws(PrometheusParseError) -> [PrometheusFamily] {
        var families: [PrometheusFamily?] = Array(repeating: nil, count: keptFamilies.count)
        var order: [Int] = []
        func family(_ f: Int) {
            if families[f] == nil {
                families[f] = PrometheusFamily(name: keptFamilies[f], type: .untyped, help: nil, samples: [])
                order.append(f)
            }
        }
        try scan(bytes, onType: { f, type in
            family(f)
            families[f]!.type = type
        }, visit: { line in
            family(line.family)
            let name = keptFamilies[line.family] + line.suffix
            families[line.family]!.samples.append(PrometheusSample(name: name, labels: line.decodedLabels(), value: line.value,
                                                                   timestampMillis: line.timestampMillis))
        })
        return order.map { families[$0]! }
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

    static let commonLabels = ["model_name", "engine", "le", "quantile", "finished_reason", "reason", "source"].map { (Array($0.utf8), $0) }

    /// Label names repeat on every sample: reuse the common ones.
    static func labelName(_ b: ArraySlice<UInt8>) -> String {
        for (bytes, s) in commonLabels where bytes.count == b.count && bytes.elementsEqual(b) { return s }
        return String(decoding: b, as: UTF8.self)
    }

    static func familyName(for sample: String, known: [String: Int], keep: Set<String>?) -> String {
        if known[sample] != nil { return sample }
        for s in suffixes where sample.hasSuffix(s) {
            let base = String(sample.dropLast(s.count))
            if known[base] != nil || keep?.contains(base) == true { return base }
        }
        return sample
    }

    /// Exact powers of ten (every one up to 1e22 is representable).
    static let powersOfTen: [Double] = (0...22).map { k in (0..<k).reduce(1.0) { a, _ in a * 10 } }

    static func parseValue(_ s: ArraySlice<UInt8>) -> Double? {
        // Fast path: plain decimals with at most 15 digits (most samples).
        // mantissa / 10^k with both exact is correctly rounded, so the
        // result equals what the full conversion gives.
        var mantissa: UInt64 = 0, digits = 0, fractionDigits = 0, inFraction = false, simple = true
        for c in s {
            if c >= 0x30 && c <= 0x39 {
                mantissa = mantissa &* 10 &+ UInt64(c - 0x30)
                digits += 1
                if inFraction { fractionDigits += 1 }
            } else if c == UInt8(ascii: ".") && !inFraction {
                inFraction = true
            } else {
                simple = false
                break
            }
        }
        if simple && digits > 0 && digits <= 15 { return Double(mantissa) / powersOfTen[fractionDigits] }
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
