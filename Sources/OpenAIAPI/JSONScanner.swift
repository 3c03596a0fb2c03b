/// A validating, allocation-light JSON reader that extracts a few top-level
/// members of an object without building a tree. It checks the whole
/// document's syntax (RFC 8259), bounds nesting depth, and decodes only the
/// string values it is asked for.
public struct JSONScanner {
    /// A top-level member value as the scanner saw it.
    public enum Value: Sendable, Equatable {
        case string(String)
        case bool(Bool)
        /// Where the number's text lies in the scanned bytes (`integer(_:in:)` reads it).
        case number(Range<Int>)
        case null
        /// Where the object lies, braces included (`members(of:in:keys:)` reads into it).
        case object(Range<Int>)
        /// Where the array lies, brackets included (`elements(of:in:)` lists its values).
        case array(Range<Int>)
        /// A string not decoded (not requested): where its text lies, quotes included.
        case skippedString(Range<Int>)
    }

    /// Where and why the document is not valid JSON.
    public struct SyntaxError: Error, Sendable, Equatable, CustomStringConvertible {
        public let offset: Int
        public let reason: String
        public var description: String { "\(reason) at byte \(offset)" }
    }

    private let b: [UInt8]
    private var i = 0
    /// One past the last byte scanned (the document's end, or a nested value's).
    private let end: Int
    private let maxDepth: Int

    public init(_ bytes: [UInt8], maxDepth: Int = 64) {
        self.b = bytes
        self.end = bytes.count
        self.maxDepth = maxDepth
    }

    private init(_ bytes: [UInt8], range: Range<Int>, maxDepth: Int) {
        self.b = bytes
        self.i = range.lowerBound
        self.end = min(range.upperBound, bytes.count)
        self.maxDepth = maxDepth
    }

    /// Parses the document, which must be an object, and returns the values
    /// of the requested top-level keys (strings decoded only for these keys).
    public static func topLevelMembers(of bytes: [UInt8], keys: [String], maxDepth: Int = 64) throws(SyntaxError) -> [String: Value] {
        try members(of: bytes, in: 0..<bytes.count, keys: keys, maxDepth: maxDepth)
    }

    /// The requested members of the object at `range` of `bytes` (a whole
    /// document, or an `.object` range an earlier scan returned).
    /// With `decode` false, requested strings come back as `.skippedString`
    /// ranges too (no allocation; callers that only test for emptiness).
    public static func members(of bytes: [UInt8], in range: Range<Int>, keys: [String], decode: Bool = true,
                               maxDepth: Int = 64) throws(SyntaxError) -> [String: Value] {
        var s = JSONScanner(bytes, range: range, maxDepth: maxDepth)
        var none: [[String: Value]?] = []
        let out = try s.document(keys: keys, decode: decode, expand: nil, elementKeys: [], elements: &none)
        return out
    }

    /// One pass over the document: the requested top-level members (strings
    /// undecoded), and for the member `expand`, when it is an array, each
    /// element's `elementKeys` members (nil for an element that is not an
    /// object). For `messages`: one scan however large the prompt is.
    public static func membersExpanding(of bytes: [UInt8], keys: [String], expand: String, elementKeys: [String],
                                        maxDepth: Int = 64) throws(SyntaxError) -> (members: [String: Value], elements: [[String: Value]?]) {
        var s = JSONScanner(bytes, maxDepth: maxDepth)
        var elements: [[String: Value]?] = []
        let out = try s.document(keys: keys, decode: false, expand: expand, elementKeys: elementKeys, elements: &elements)
        return (out, elements)
    }

    private mutating func document(keys: [String], decode: Bool, expand: String?, elementKeys: [String],
                                   elements: inout [[String: Value]?]) throws(SyntaxError) -> [String: Value] {
        let begin = i
        skipWS()
        guard i < end else { throw SyntaxError(offset: begin, reason: "empty body") }
        guard b[i] == UInt8(ascii: "{") else { throw SyntaxError(offset: i, reason: "expected a JSON object") }
        let out = try objectMembers(keys: keys, decode: decode, depth: 1, expand: expand, elementKeys: elementKeys,
                                    elements: &elements)
        skipWS()
        if i != end { throw err("trailing data after the JSON object") }
        return out
    }

    /// Reads the object at `i` (at its `{`), returning the requested members.
    private mutating func objectMembers(keys: [String], decode: Bool, depth: Int, expand: String?, elementKeys: [String],
                                        elements: inout [[String: Value]?]) throws(SyntaxError) -> [String: Value] {
        guard depth <= maxDepth else { throw err("nesting deeper than \(maxDepth) levels") }
        var out: [String: Value] = [:]
        i += 1
        skipWS()
        if peek() == UInt8(ascii: "}") {
            i += 1
            return out
        }
        while true {
            skipWS()
            guard peek() == UInt8(ascii: "\"") else { throw err("expected a member name") }
            let key = try readString(decode: true) ?? ""
            skipWS()
            guard peek() == UInt8(ascii: ":") else { throw err("expected ':'") }
            i += 1
            skipWS()
            let wanted = keys.contains(key)
            let keyAt = i
            let v: Value
            if wanted, let e = expand, key == e, peek() == UInt8(ascii: "[") {
                v = try arrayOfObjects(depth: depth + 1, keys: elementKeys, into: &elements)
            } else {
                v = try readValue(depth: depth, decodeString: wanted && decode)
            }
            if wanted {
                // A repeated key is ambiguous (parsers keep the first or the
                // last): routing on one value while the engine reads the other
                // must be impossible, so it is an error.
                if out[key] != nil { throw SyntaxError(offset: keyAt, reason: "duplicate member '\(key)'") }
                out[key] = v
            }
            skipWS()
            guard let c = peek() else { throw err("unterminated object") }
            i += 1
            if c == UInt8(ascii: ",") { continue }
            if c == UInt8(ascii: "}") { return out }
            throw SyntaxError(offset: i - 1, reason: "expected ',' or '}'")
        }
    }

    /// Reads the array at `i`; each object element's `keys` members are
    /// appended to `into` (nil for other elements). Returns the array's range.
    private mutating func arrayOfObjects(depth: Int, keys: [String], into: inout [[String: Value]?]) throws(SyntaxError) -> Value {
        guard depth <= maxDepth else { throw err("nesting deeper than \(maxDepth) levels") }
        let start = i
        i += 1
        skipWS()
        if peek() == UInt8(ascii: "]") {
            i += 1
            return .array(start..<i)
        }
        var none: [[String: Value]?] = []
        while true {
            skipWS()
            if peek() == UInt8(ascii: "{") {
                into.append(try objectMembers(keys: keys, decode: false, depth: depth + 1, expand: nil, elementKeys: [],
                                              elements: &none))
            } else {
                _ = try readValue(depth: depth, decodeString: false)
                into.append(nil)
            }
            skipWS()
            guard let c = peek() else { throw err("unterminated array") }
            i += 1
            if c == UInt8(ascii: ",") { continue }
            if c == UInt8(ascii: "]") { return .array(start..<i) }
            throw SyntaxError(offset: i - 1, reason: "expected ',' or ']'")
        }
    }

    /// The values of the array at `range` (an `.array` range from a scan),
    /// strings not decoded.
    public static func elements(of bytes: [UInt8], in range: Range<Int>, maxDepth: Int = 64) throws(SyntaxError) -> [Value] {
        var s = JSONScanner(bytes, range: range, maxDepth: maxDepth)
        s.skipWS()
        guard s.peek() == UInt8(ascii: "[") else { throw s.err("expected an array") }
        s.i += 1
        s.skipWS()
        var out: [Value] = []
        if s.peek() == UInt8(ascii: "]") { return out }
        while true {
            s.skipWS()
            out.append(try s.readValue(depth: 1, decodeString: false))
            s.skipWS()
            guard let c = s.peek() else { throw s.err("unterminated array") }
            s.i += 1
            if c == UInt8(ascii: ",") { continue }
            if c == UInt8(ascii: "]") { return out }
            throw SyntaxError(offset: s.i - 1, reason: "expected ',' or ']'")
        }
    }

    /// A non-negative integer written plainly (no fraction, no exponent) at
    /// `range`; nil otherwise or when it does not fit an Int.
    public static func integer(_ bytes: [UInt8], in range: Range<Int>) -> Int? {
        guard !range.isEmpty, range.upperBound <= bytes.count else { return nil }
        var v = 0
        for k in range {
            let c = bytes[k]
            guard c >= 0x30 && c <= 0x39 else { return nil }
            let (m, o1) = v.multipliedReportingOverflow(by: 10)
            let (a, o2) = m.addingReportingOverflow(Int(c - 0x30))
            if o1 || o2 { return nil }
            v = a
        }
        return v
    }

    /// Decodes the JSON string literal at `range` (quotes included), as a
    /// `.skippedString` range gives it; nil when it is not one.
    public static func decodeString(_ bytes: [UInt8], in range: Range<Int>) -> String? {
        guard range.count >= 2, range.upperBound <= bytes.count, bytes[range.lowerBound] == UInt8(ascii: "\"") else { return nil }
        var s = JSONScanner(bytes, range: range, maxDepth: 1)
        return try? s.readString(decode: true)
    }

    /// True when `v` is a string with at least one character.
    public static func isNonEmptyString(_ v: Value?) -> Bool {
        switch v {
        case .string(let s)?: return !s.isEmpty
        case .skippedString(let r)?: return r.count > 2
        default: return false
        }
    }

    /// Convenience: the integer value of `v` when it is a plain integer.
    public static func integer(_ bytes: [UInt8], _ v: Value?) -> Int? {
        if case .number(let r)? = v { return integer(bytes, in: r) }
        return nil
    }

    private func peek() -> UInt8? { i < end ? b[i] : nil }
    private func err(_ r: String) -> SyntaxError { SyntaxError(offset: i, reason: r) }

    private mutating func skipWS() {
        while i < end {
            switch b[i] {
            case 0x20, 0x09, 0x0A, 0x0D: i += 1
            default: return
            }
        }
    }

    private mutating func readValue(depth: Int, decodeString: Bool) throws(SyntaxError) -> Value {
        guard let c = peek() else { throw err("unexpected end of input") }
        switch c {
        case UInt8(ascii: "\""):
            let start = i
            if let s = try readString(decode: decodeString) { return .string(s) }
            return .skippedString(start..<i)
        case UInt8(ascii: "{"):
            let start = i
            try skipContainer(close: UInt8(ascii: "}"), depth: depth + 1, object: true)
            return .object(start..<i)
        case UInt8(ascii: "["):
            let start = i
            try skipContainer(close: UInt8(ascii: "]"), depth: depth + 1, object: false)
            return .array(start..<i)
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            let start = i
            try number()
            return .number(start..<i)
        default:
            throw err("unexpected character")
        }
    }

    private mutating func literal(_ word: StaticString) throws(SyntaxError) {
        let n = word.utf8CodeUnitCount
        guard i + n <= end else { throw err("invalid literal") }
        let p = word.utf8Start
        for k in 0..<n where b[i + k] != p[k] { throw err("invalid literal") }
        i += n
    }

    private mutating func number() throws(SyntaxError) {
        if peek() == UInt8(ascii: "-") { i += 1 }
        guard let d = peek(), d >= 0x30 && d <= 0x39 else { throw err("invalid number") }
        if d == 0x30 { i += 1 } else { while let x = peek(), x >= 0x30 && x <= 0x39 { i += 1 } }
        if peek() == UInt8(ascii: ".") {
            i += 1
            guard let x = peek(), x >= 0x30 && x <= 0x39 else { throw err("invalid number") }
            while let x = peek(), x >= 0x30 && x <= 0x39 { i += 1 }
        }
        if let e = peek(), e == UInt8(ascii: "e") || e == UInt8(ascii: "E") {
            i += 1
            if let s = peek(), s == UInt8(ascii: "+") || s == UInt8(ascii: "-") { i += 1 }
            guard let x = peek(), x >= 0x30 && x <= 0x39 else { throw err("invalid number") }
            while let x = peek(), x >= 0x30 && x <= 0x39 { i += 1 }
        }
    }

    private mutating func skipContainer(close: UInt8, depth: Int, object: Bool) throws(SyntaxError) {
        guard depth <= maxDepth else { throw err("nesting deeper than \(maxDepth) levels") }
        i += 1
        skipWS()
        if peek() == close { i += 1; return }
        while true {
            skipWS()
            if object {
                guard peek() == UInt8(ascii: "\"") else { throw err("expected a member name") }
                _ = try readString(decode: false)
                skipWS()
                guard peek() == UInt8(ascii: ":") else { throw err("expected ':'") }
                i += 1
                skipWS()
            }
            _ = try readValue(depth: depth, decodeString: false)
            skipWS()
            guard let c = peek() else { throw err("unterminated \(object ? "object" : "array")") }
            i += 1
            if c == UInt8(ascii: ",") { continue }
            if c == close { return }
            throw SyntaxError(offset: i - 1, reason: "expected ',' or '\(Character(Unicode.Scalar(close)))'")
        }
    }

    /// Reads a string starting at the opening quote. Returns the decoded
    /// string when `decode`, else nil (after validating it). The common case
    /// (plain bytes) runs in a tight loop over a Span: this is where a 4 KB
    /// chat body spends its parsing time.
    private mutating func readString(decode: Bool) throws(SyntaxError) -> String? {
        let start = i + 1
        var k = start
        var simple = true
        let bytes = b  // a local reference, so the span does not borrow self
        let span = bytes.span
        let raw = span.bytes
        let n = end
        var high: UInt64 = 0  // any byte >= 0x80 seen: validate the UTF-8 at the end
        while k < n {
            // Skip 8 plain bytes at a time: no quote, no backslash, no
            // control byte in the word (bit tricks on an unaligned,
            // bounds-checked load). About 4x faster than byte by byte.
            while k + 8 <= n {
                let w = raw.unsafeLoadUnaligned(fromByteOffset: k, as: UInt64.self)
                let quote = w ^ 0x2222_2222_2222_2222, slash = w ^ 0x5C5C_5C5C_5C5C_5C5C
                let special = ((quote &- 0x0101_0101_0101_0101) & ~quote)
                    | ((slash &- 0x0101_0101_0101_0101) & ~slash)
                    | ((w &- 0x2020_2020_2020_2020) & ~w)
                if special & 0x8080_8080_8080_8080 != 0 { break }
                high |= w
                k += 8
            }
            guard k < n else { break }
            let c = span[k]
            if c >= 0x20 && c != 0x22 && c != 0x5C {
                high |= UInt64(c)
                k += 1
                continue
            }
            if c == 0x22 {
                if high & 0x8080_8080_8080_8080 != 0, let bad = Self.invalidUTF8(span, start, k) {
                    i = bad
                    throw err("invalid UTF-8 in string")
                }
                i = k + 1
                guard decode else { return nil }
                if simple { return String(decoding: b[start..<k], as: UTF8.self) }
                return try unescape(start, k)
            }
            if c == 0x5C {
                simple = false
                k += 1
                guard k < n else { break }
                switch span[k] {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"),
                     UInt8(ascii: "f"), UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                    k += 1
                case UInt8(ascii: "u"):
                    guard k + 4 < n, Self.hex(span[k + 1]) != nil, Self.hex(span[k + 2]) != nil,
                          Self.hex(span[k + 3]) != nil, Self.hex(span[k + 4]) != nil else {
                        i = k
                        throw err("invalid \\u escape")
                    }
                    k += 5
                default:
                    i = k
                    throw err("invalid escape")
                }
                continue
            }
            i = k
            throw err("control character in string")
        }
        throw SyntaxError(offset: start - 1, reason: "unterminated string")
    }

    /// The offset of the first byte that breaks UTF-8 (RFC 3629: no
    /// overlongs, no surrogates, nothing above U+10FFFF) in [from, to), or nil.
    private static func invalidUTF8(_ s: Span<UInt8>, _ from: Int, _ to: Int) -> Int? {
        var k = from
        while k < to {
            let c = s[k]
            if c < 0x80 { k += 1; continue }
            let n: Int
            var lo: UInt8 = 0x80, hi: UInt8 = 0xBF
            switch c {
            case 0xC2...0xDF: n = 1
            case 0xE0: n = 2; lo = 0xA0
            case 0xE1...0xEC, 0xEE...0xEF: n = 2
            case 0xED: n = 2; hi = 0x9F
            case 0xF0: n = 3; lo = 0x90
            case 0xF1...0xF3: n = 3
            case 0xF4: n = 3; hi = 0x8F
            default: return k
            }
            guard k + n < to else { return k }
            let b1 = s[k + 1]
            guard b1 >= lo && b1 <= hi else { return k }
            for j in 2...max(2, n) where j <= n {
                guard s[k + j] & 0xC0 == 0x80 else { return k }
            }
            k += n + 1
        }
        return nil
    }

    private static func hex(_ c: UInt8) -> UInt32? {
        switch c {
        case 0x30...0x39: return UInt32(c - 0x30)
        case 0x41...0x46: return UInt32(c - 0x41 + 10)
        case 0x61...0x66: return UInt32(c - 0x61 + 10)
        default: return nil
        }
    }

    private func unescape(_ from: Int, _ to: Int) throws(SyntaxError) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(to - from)
        var k = from
        func hex4(_ at: Int) -> UInt32 {
            (Self.hex(b[at])! << 12) | (Self.hex(b[at + 1])! << 8) | (Self.hex(b[at + 2])! << 4) | Self.hex(b[at + 3])!
        }
        while k < to {
            let c = b[k]
            if c != UInt8(ascii: "\\") { out.append(c); k += 1; continue }
            let e = b[k + 1]
            k += 2
            switch e {
            case UInt8(ascii: "b"): out.append(8)
            case UInt8(ascii: "f"): out.append(12)
            case UInt8(ascii: "n"): out.append(10)
            case UInt8(ascii: "r"): out.append(13)
            case UInt8(ascii: "t"): out.append(9)
            case UInt8(ascii: "u"):
                var scalar = hex4(k)
                k += 4
                if (0xD800...0xDBFF).contains(scalar), k + 5 < to + 1, b[k] == UInt8(ascii: "\\"), b[k + 1] == UInt8(ascii: "u") {
                    let low = hex4(k + 2)
                    if (0xDC00...0xDFFF).contains(low) {
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                        k += 6
                    }
                }
                let u = Unicode.Scalar(scalar) ?? "\u{FFFD}"
                out.append(contentsOf: Array(String(Character(u)).utf8))
            default: out.append(e)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
