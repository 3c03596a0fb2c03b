import KVProtocol

/// Where keys live: blocks of `blockSize` tokens for one model and KV
/// layout in one namespace. Two spaces that differ in any field never
/// produce the same key (the fields key the hash).
public struct BlockKeySpace: Sendable, Equatable {
    public let namespace: String
    public let model: String
    /// KV layout tag (e.g. `vllm-cpu-fp32-nhd`): blocks of different layouts are not interchangeable.
    public let layout: String
    public let blockSize: Int
    private let k0: UInt64
    private let k1: UInt64

    public init(namespace: String, model: String, layout: String, blockSize: Int) {
        precondition(blockSize > 0, "block size must be positive")
        self.namespace = namespace
        self.model = model
        self.layout = layout
        self.blockSize = blockSize
        // The SipHash key comes from the space's fields (length-prefixed, so
        // ("ab","c") and ("a","bc") differ).
        var material: [UInt8] = []
        for part in [namespace, model, layout, String(blockSize)] {
            let u = Array(part.utf8)
            material += withUnsafeBytes(of: UInt32(u.count).littleEndian, Array.init) + u
        }
        let d = SipHash128.hash(key: (0x7377_6974_6368_626F, 0x6172_642D_6B76_6361), material[...])
        k0 = d.high
        k1 = d.low
    }

    /// The keys of the full blocks of `tokens`, in order (a trailing partial block has none).
    public func keys(for tokens: [UInt32]) -> [BlockKey] {
        let n = tokens.count / blockSize
        var out: [BlockKey] = []
        out.reserveCapacity(n)
        var parent = BlockKey(high: 0, low: 0)
        var message = [UInt8](repeating: 0, count: 16 + 4 * blockSize)
        for b in 0..<n {
            withUnsafeBytes(of: parent.high.littleEndian) { for i in 0..<8 { message[i] = $0[i] } }
            withUnsafeBytes(of: parent.low.littleEndian) { for i in 0..<8 { message[8 + i] = $0[i] } }
            for t in 0..<blockSize {
                let v = tokens[b * blockSize + t]
                let at = 16 + 4 * t
                message[at] = UInt8(truncatingIfNeeded: v)
                message[at + 1] = UInt8(truncatingIfNeeded: v >> 8)
                message[at + 2] = UInt8(truncatingIfNeeded: v >> 16)
                message[at + 3] = UInt8(truncatingIfNeeded: v >> 24)
            }
            let d = SipHash128.hash(key: (k0, k1), message[...])
            parent = BlockKey(high: d.high, low: d.low)
            out.append(parent)
        }
        return out
    }
}

/// SipHash-2-4 with 128-bit output (Aumasson & Bernstein), little-endian
/// message words, as in the reference implementation.
enum SipHash128 {
    static func hash(key: (UInt64, UInt64), _ m: ArraySlice<UInt8>) -> (high: UInt64, low: UInt64) {
        var v0: UInt64 = 0x736f_6d65_7073_6575 ^ key.0
        var v1: UInt64 = 0x646f_7261_6e64_6f6d ^ key.1
        var v2: UInt64 = 0x6c79_6765_6e65_7261 ^ key.0
        var v3: UInt64 = 0x7465_6462_7974_6573 ^ key.1
        v1 ^= 0xee
        @inline(__always) func round() {
            v0 = v0 &+ v1; v1 = (v1 << 13) | (v1 >> 51); v1 ^= v0; v0 = (v0 << 32) | (v0 >> 32)
            v2 = v2 &+ v3; v3 = (v3 << 16) | (v3 >> 48); v3 ^= v2
            v0 = v0 &+ v3; v3 = (v3 << 21) | (v3 >> 43); v3 ^= v0
            v2 = v2 &+ v1; v1 = (v1 << 17) | (v1 >> 47); v1 ^= v2; v2 = (v2 << 32) | (v2 >> 32)
        }
        let count = m.count
        var i = m.startIndex
        let end = m.startIndex + (count / 8) * 8
        while i < end {
            var w: UInt64 = 0
            for k in 0..<8 { w |= UInt64(m[i + k]) << (8 * UInt64(k)) }
            v3 ^= w
            round(); round()
            v0 ^= w
            i += 8
        }
        var last = UInt64(truncatingIfNeeded: count) << 56
        var k: UInt64 = 0
        while i < m.endIndex {
            last |= UInt64(m[i]) << (8 * k)
            k += 1
            i += 1
        }
        v3 ^= last
        round(); round()
        v0 ^= last
        v2 ^= 0xee
        round(); round(); round(); round()
        let low = v0 ^ v1 ^ v2 ^ v3
        v1 ^= 0xdd
        round(); round(); round(); round()
        let high = v0 ^ v1 ^ v2 ^ v3
        return (high, low)
    }
}
