/// A borrowed view of one kept sample line, handed to `PrometheusParser.scan`'s
/// visitor. Nothing is copied or decoded until asked: label values come back
/// as byte slices of the page.
public struct PrometheusLineView {
    /// Ordinal of the family in `PrometheusParser.keptFamilyNames`.
    public let family: Int
    /// Length of the sample name minus the family name (0 plain, 7 `_bucket`,
    /// 4 `_sum`, 6 `_count` or `_total`, 8 `_created`).
    public let suffixLength: Int
    public let value: Double
    public let timestampMillis: Int64?
    let page: [UInt8]
    let labels: ArraySlice<LabelRange>
    let sampleName: Range<Int>
    let familyNameLength: Int

    struct LabelRange {
        var name: Range<Int>
        var value: Range<Int>
        var escaped: Bool
    }

    /// The suffix's first letter after its underscore (`t` for `_total`,
    /// `c` for `_count`, `b` for `_bucket`, `g` for `_gcount`/`_gsum`), 0
    /// for a plain sample: with `suffixLength` it tells same-length suffixes apart.
    public var suffixLetter: UInt8 {
        suffixLength > 1 ? page[sampleName.lowerBound + familyNameLength + 1] : 0
    }

    /// The sample name's suffix after the family name (`_bucket`, …, or "").
    public var suffix: String {
        String(decoding: page[(sampleName.lowerBound + familyNameLength)..<sampleName.upperBound], as: UTF8.self)
    }

    /// Every label, with escapes decoded.
    public func decodedLabels() -> [PrometheusLabel] { PrometheusParser.decodeLabels(page, labels) }

    /// A label's value with escapes decoded, when it holds escapes (nil when
    /// absent or plain: read those with `label(_:)`, without a copy).
    public func escapedLabel(_ name: [UInt8]) -> String? {
        for l in labels where l.escaped && l.name.count == name.count && page[l.name].elementsEqual(name) {
            return PrometheusParser.decodeLabels(page, [l][...]).first?.value
        }
        return nil
    }

    /// The raw bytes of a label's value (nil when absent or when it holds
    /// escapes: `escapedLabel(_:)` reads those).
    public func label(_ name: [UInt8]) -> ArraySlice<UInt8>? {
        for l in labels where !l.escaped && l.name.count == name.count && page[l.name].elementsEqual(name) {
            return page[l.value]
        }
        return nil
    }
}

extension PrometheusParser {
    /// Family names in the order of `PrometheusLineView.family`.
    public var keptFamilyNames: [String] { keptFamilies }

    /// Validates the whole page like `parse`, but hands each kept sample to
    /// `visit` as a borrowed view and allocates nothing per line: the
    /// scraper's hot path. `onType` hears the TYPE lines of kept families.
    /// Requires `keep`.
    public func scan(_ bytes: [UInt8], onType: ((Int, PrometheusMetricType) -> Void)? = nil,
                     visit: (PrometheusLineView) -> Void) throws(PrometheusParseError) {
        precondition(keep != nil, "scan needs a parser built with `keep`")
        var labelBuffer: [PrometheusLineView.LabelRange] = []
        labelBuffer.reserveCapacity(limits.maxLabelsPerSample)
        var lineNo = 0
        var pos = 0
        var samples = 0
        let span = bytes.span
        let n = span.count
        while pos < n {
            lineNo += 1
            guard let (content, lineEnd) = try Self.nextLine(span, &pos, n, limits.maxLineBytes, lineNo) else { continue }
            var i = content
            if span[i] == UInt8(ascii: "#") {
                if let onType, let (f, type) = try typeLine(bytes, i + 1, lineEnd, lineNo) { onType(f, type) }
                continue
            }
            // Name and its FNV-1a hash in one pass.
            let nameStart = i
            var h: UInt64 = 0xcbf2_9ce4_8422_2325
            while i < lineEnd {
                let c = span[i]
                guard Self.isNameByte(c, first: i == nameStart) else { break }
                h = (h ^ UInt64(c)) &* 0x100_0000_01b3
                i += 1
            }
            if i == nameStart { throw PrometheusParseError(line: lineNo, reason: "expected a metric name") }
            guard let kept = lookup(bytes[nameStart..<i], hash: h) else { continue }
            samples += 1
            if samples > limits.maxSamples {
                throw PrometheusParseError(line: lineNo, reason: "more than \(limits.maxSamples) samples")
            }
            labelBuffer.removeAll(keepingCapacity: true)
            if i < lineEnd && span[i] == UInt8(ascii: "{") {
                i = try scanLabels(span, i + 1, lineEnd, lineNo, &labelBuffer)
            }
            let (value, ts) = try Self.sampleTail(bytes, span, i, lineEnd, lineNo)
            let familyLength = keptFamilies[kept.family].utf8.count
            visit(PrometheusLineView(family: kept.family, suffixLength: kept.bytes.count - familyLength, value: value,
                                     timestampMillis: ts, page: bytes, labels: labelBuffer[...],
                                     sampleName: nameStart..<(nameStart + kept.bytes.count), familyNameLength: familyLength))
        }
    }

    /// Advances `pos` past the next line (newline found eight bytes at a
    /// time). Returns where its content starts (after blanks) and ends
    /// (before any CR), or nil for a blank line.
    static func nextLine(_ span: borrowing Span<UInt8>, _ pos: inout Int, _ n: Int, _ maxLineBytes: Int,
                         _ lineNo: Int) throws(PrometheusParseError) -> (Int, Int)? {
        let raw = span.bytes
        var end = pos
        while end + 8 <= n {
            let w = raw.unsafeLoadUnaligned(fromByteOffset: end, as: UInt64.self) ^ 0x0A0A_0A0A_0A0A_0A0A
            if (w &- 0x0101_0101_0101_0101) & ~w & 0x8080_8080_8080_8080 != 0 { break }
            end += 8
        }
        while end < n && span[end] != 0x0A { end += 1 }
        let lineStart = pos
        pos = end + 1
        if end - lineStart > maxLineBytes {
            throw PrometheusParseError(line: lineNo, reason: "line longer than \(maxLineBytes) bytes")
        }
        var lineEnd = end
        if lineEnd > lineStart && span[lineEnd - 1] == 0x0D { lineEnd -= 1 }
        var i = lineStart
        while i < lineEnd && (span[i] == 0x20 || span[i] == 0x09) { i += 1 }
        return i == lineEnd ? nil : (i, lineEnd)
    }

    /// The value and optional timestamp after a sample's name and labels.
    static func sampleTail(_ bytes: [UInt8], _ span: borrowing Span<UInt8>, _ from: Int, _ lineEnd: Int,
                           _ lineNo: Int) throws(PrometheusParseError) -> (Double, Int64?) {
        var i = from
        guard i < lineEnd, span[i] == 0x20 || span[i] == 0x09 else {
            throw PrometheusParseError(line: lineNo, reason: "expected a space and a value after the name")
        }
        while i < lineEnd && (span[i] == 0x20 || span[i] == 0x09) { i += 1 }
        let valueStart = i
        while i < lineEnd && span[i] != 0x20 && span[i] != 0x09 { i += 1 }
        guard i > valueStart else { throw PrometheusParseError(line: lineNo, reason: "missing value") }
        guard let value = parseValue(bytes[valueStart..<i]) else {
            throw PrometheusParseError(line: lineNo, reason: "invalid value '\(String(decoding: bytes[valueStart..<i], as: UTF8.self))'")
        }
        while i < lineEnd && (span[i] == 0x20 || span[i] == 0x09) { i += 1 }
        guard i < lineEnd else { return (value, nil) }
        let tsStart = i
        while i < lineEnd && span[i] != 0x20 && span[i] != 0x09 { i += 1 }
        guard let ts = Int64(String(decoding: bytes[tsStart..<i], as: UTF8.self)) else {
            throw PrometheusParseError(line: lineNo, reason: "invalid timestamp")
        }
        while i < lineEnd && (span[i] == 0x20 || span[i] == 0x09) { i += 1 }
        if i < lineEnd { throw PrometheusParseError(line: lineNo, reason: "unexpected text after the timestamp") }
        return (value, ts)
    }

    /// Labels from their ranges in the page, escapes decoded.
    static func decodeLabels(_ page: [UInt8], _ ranges: ArraySlice<PrometheusLineView.LabelRange>) -> [PrometheusLabel] {
        ranges.map { l in
            let name = labelName(page[l.name])
            guard l.escaped else { return PrometheusLabel(name, String(decoding: page[l.value], as: UTF8.self)) }
            var out: [UInt8] = []
            var i = l.value.lowerBound
            while i < l.value.upperBound {
                if page[i] == 0x5C {
                    let e = page[i + 1]
                    out.append(e == UInt8(ascii: "n") ? 0x0A : e)
                    i += 2
                } else {
                    out.append(page[i])
                    i += 1
                }
            }
            return PrometheusLabel(name, String(decoding: out, as: UTF8.self))
        }
    }

    /// `TYPE name type` of a kept family: its ordinal and type; nil for other comments.
    private func typeLine(_ b: [UInt8], _ from: Int, _ end: Int, _ lineNo: Int) throws(PrometheusParseError) -> (Int, PrometheusMetricType)? {
        var k = from
        while k < end && b[k] == 0x20 { k += 1 }
        guard k + 5 <= end, b[k] == UInt8(ascii: "T"), b[k + 1] == UInt8(ascii: "Y"), b[k + 2] == UInt8(ascii: "P"),
              b[k + 3] == UInt8(ascii: "E"), b[k + 4] == 0x20 else { return nil }
        k += 5
        while k < end && b[k] == 0x20 { k += 1 }
        let ns = k
        while k < end && b[k] != 0x20 { k += 1 }
        guard let kept = lookup(b[ns..<k]), kept.name == keptFamilies[kept.family] else { return nil }
        while k < end && b[k] == 0x20 { k += 1 }
        let t = String(decoding: b[k..<end], as: UTF8.self).trimmingBlanks()
        guard let type = PrometheusMetricType(rawValue: t) else {
            throw PrometheusParseError(line: lineNo, reason: "unknown metric type '\(t)'")
        }
        return (kept.family, type)
    }

    /// Validates a label set and records where each name and value lie.
    func scanLabels(_ b: borrowing Span<UInt8>, _ from: Int, _ end: Int, _ lineNo: Int,
                            _ out: inout [PrometheusLineView.LabelRange]) throws(PrometheusParseError) -> Int {
        var i = from
        while true {
            while i < end && (b[i] == 0x20 || b[i] == 0x09) { i += 1 }
            guard i < end else { throw PrometheusParseError(line: lineNo, reason: "unterminated label set") }
            if b[i] == UInt8(ascii: "}") { return i + 1 }
            let ns = i
            while i < end, Self.isLabelNameByte(b[i], first: i == ns) { i += 1 }
            guard i > ns else { throw PrometheusParseError(line: lineNo, reason: "expected a label name") }
            let nameRange = ns..<i
            while i < end && b[i] == 0x20 { i += 1 }
            guard i < end, b[i] == UInt8(ascii: "=") else { throw PrometheusParseError(line: lineNo, reason: "expected '=' after a label name") }
            i += 1
            while i < end && b[i] == 0x20 { i += 1 }
            guard i < end, b[i] == UInt8(ascii: "\"") else { throw PrometheusParseError(line: lineNo, reason: "label value must be quoted") }
            i += 1
            let vs = i
            var escaped = false
            var closed = false
            while i < end {
                let c = b[i]
                if c == UInt8(ascii: "\"") { closed = true; break }
                if c == 0x5C {
                    guard i + 1 < end else { break }
                    let e = b[i + 1]
                    guard e == 0x5C || e == UInt8(ascii: "\"") || e == UInt8(ascii: "n") else {
                        throw PrometheusParseError(line: lineNo, reason: "invalid escape in a label value")
                    }
                    escaped = true
                    i += 2
                    continue
                }
                i += 1
            }
            guard closed else { throw PrometheusParseError(line: lineNo, reason: "unterminated label value") }
            if i - vs > limits.maxLabelValueBytes {
                throw PrometheusParseError(line: lineNo, reason: "label value longer than \(limits.maxLabelValueBytes) bytes")
            }
            out.append(.init(name: nameRange, value: vs..<i, escaped: escaped))
            if out.count > limits.maxLabelsPerSample {
                throw PrometheusParseError(line: lineNo, reason: "more than \(limits.maxLabelsPerSample) labels")
            }
            i += 1
            while i < end && b[i] == 0x20 { i += 1 }
            guard i < end else { throw PrometheusParseError(line: lineNo, reason: "unterminated label set") }
            if b[i] == UInt8(ascii: ",") { i += 1; continue }
            if b[i] == UInt8(ascii: "}") { return i + 1 }
            throw PrometheusParseError(line: lineNo, reason: "expected ',' or '}' in label set")
        }
    }
}
