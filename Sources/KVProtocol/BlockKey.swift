/// The identity of one cached KV block: a 128-bit digest that chains every
/// token of the prefix up to the block's end, so equal prefixes give equal
/// keys on every node and in every process (no per-process hash seed).
public struct BlockKey: Hashable, Sendable, CustomStringConvertible {
    public let high: UInt64
    public let low: UInt64

    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// 32 lowercase hex digits.
    public var description: String {
        let h = String(high, radix: 16), l = String(low, radix: 16)
        return String(repeating: "0", count: 16 - h.count) + h + String(repeating: "0", count: 16 - l.count) + l
    }
}

extension BlockKey {
    /// Parses the 32-hex-digit spelling (`description`); nil otherwise.
    public init?(hex: String) {
        guard hex.utf8.count == 32, let h = UInt64(hex.prefix(16), radix: 16), let l = UInt64(hex.suffix(16), radix: 16) else { return nil }
        self.init(high: h, low: l)
    }
}
