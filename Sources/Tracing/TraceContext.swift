/// A W3C Trace Context (`traceparent: 00-<trace id>-<parent id>-<flags>`):
/// the trace a request belongs to and the span that sent it.
public struct TraceContext: Sendable, Equatable {
    public var traceID: [UInt8]    // 16 bytes, not all zero
    public var spanID: [UInt8]     // 8 bytes, not all zero
    public var sampled: Bool

    public init(traceID: [UInt8], spanID: [UInt8], sampled: Bool) {
        self.traceID = traceID
        self.spanID = spanID
        self.sampled = sampled
    }

    /// Parses a `traceparent` value; nil when it is not a valid version-00
    /// (or later, read as 00) header, as the spec says to then start a new trace.
    public init?(traceparent: String) {
        let parts = traceparent.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count >= 4, parts[0].count == 2, parts[0] != "ff",
              let version = UInt8(parts[0], radix: 16),
              version != 0 || parts.count == 4,
              let t = Self.hex(parts[1], bytes: 16), let s = Self.hex(parts[2], bytes: 8),
              parts[3].count == 2, let flags = UInt8(parts[3], radix: 16),
              t.contains(where: { $0 != 0 }), s.contains(where: { $0 != 0 }) else { return nil }
        traceID = t
        spanID = s
        sampled = flags & 1 == 1
    }

    /// The header value naming `spanID` as the parent of what follows.
    public var traceparent: String {
        "00-\(Self.hexString(traceID))-\(Self.hexString(spanID))-\(sampled ? "01" : "00")"
    }

    static func hex(_ s: Substring, bytes: Int) -> [UInt8]? {
        guard s.utf8.count == bytes * 2 else { return nil }
        var out = [UInt8](repeating: 0, count: bytes)
        var i = 0
        var hi: UInt8 = 0
        for c in s.utf8 {
            let v: UInt8
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): v = c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): v = c - UInt8(ascii: "a") + 10
            default: return nil  // upper case is invalid in traceparent
            }
            if i % 2 == 0 { hi = v } else { out[i / 2] = hi << 4 | v }
            i += 1
        }
        return out
    }

    public static func hexString(_ b: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(b.count * 2)
        for x in b {
            out.append(digits[Int(x >> 4)])
            out.append(digits[Int(x & 15)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}
