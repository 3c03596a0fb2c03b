/// XXH64 (Yann Collet's xxHash, 64-bit), in safe Swift. Used for prefix
/// block keys: fast, well distributed, and a published algorithm, so any
/// implementation (another gateway replica, a Python tool) computes the
/// same keys from the same seed.
public enum XXH64 {
    static let p1: UInt64 = 0x9E37_79B1_85EB_CA87
    static let p2: UInt64 = 0xC2B2_AE3D_27D4_EB4F
    static let p3: UInt64 = 0x1656_67B1_9E37_79F9
    static let p4: UInt64 = 0x85EB_CA77_C2B2_AE63
    static let p5: UInt64 = 0x27D4_EB2F_1656_67C5

    /// The hash of `bytes[range]`.
    public static func hash(_ bytes: [UInt8], _ range: Range<Int>? = nil, seed: UInt64 = 0) -> UInt64 {
        digest(Input(bytes: bytes, start: (range ?? bytes.indices).lowerBound, prefix: nil,
                     count: (range ?? bytes.indices).count), seed: seed)
    }

    /// The hash of the 8 little-endian bytes of `prefix` followed by
    /// `bytes[range]`, without copying them together: a chained block key.
    public static func hash(prefix: UInt64, _ bytes: [UInt8], _ range: Range<Int>, seed: UInt64) -> UInt64 {
        digest(Input(bytes: bytes, start: range.lowerBound, prefix: prefix, count: range.count + 8), seed: seed)
    }

    /// A virtual input: an optional 8-byte prefix, then a range of an array.
    struct Input {
        let bytes: [UInt8]
        let start: Int
        let prefix: UInt64?
        let count: Int

        @inline(__always)
        func byte(_ at: Int) -> UInt64 {
            if let prefix {
                return at < 8 ? (prefix >> (8 * UInt64(at))) & 0xFF : UInt64(bytes[start + at - 8])
            }
            return UInt64(bytes[start + at])
        }

        /// 8 little-endian bytes at `at` (the prefix is only ever read whole, at 0).
        @inline(__always)
        func u64(_ at: Int) -> UInt64 {
            if let prefix {
                if at == 0 { return prefix }
                return Self.load64(bytes, start + at - 8)
            }
            return Self.load64(bytes, start + at)
        }

        @inline(__always)
        func u32(_ at: Int) -> UInt64 {
            let b = prefix == nil ? start + at : start + at - 8
            return UInt64(bytes[b]) | UInt64(bytes[b + 1]) << 8 | UInt64(bytes[b + 2]) << 16 | UInt64(bytes[b + 3]) << 24
        }

        @inline(__always)
        static func load64(_ a: [UInt8], _ i: Int) -> UInt64 {
            var v: UInt64 = 0
            for k in 0..<8 { v |= UInt64(a[i + k]) << (8 * UInt64(k)) }
            return v
        }
    }

    @inline(__always) static func rotl(_ x: UInt64, _ r: UInt64) -> UInt64 { (x << r) | (x >> (64 - r)) }

    @inline(__always) static func round(_ acc: UInt64, _ input: UInt64) -> UInt64 {
        rotl(acc &+ input &* p2, 31) &* p1
    }

    @inline(__always) static func merge(_ acc: UInt64, _ v: UInt64) -> UInt64 {
        (acc ^ round(0, v)) &* p1 &+ p4
    }

    static func digest(_ input: Input, seed: UInt64) -> UInt64 {
        let n = input.count
        var at = 0
        var h: UInt64
        if n >= 32 {
            var v1 = seed &+ p1 &+ p2, v2 = seed &+ p2, v3 = seed, v4 = seed &- p1
            while at + 32 <= n {
                v1 = round(v1, input.u64(at))
                v2 = round(v2, input.u64(at + 8))
                v3 = round(v3, input.u64(at + 16))
                v4 = round(v4, input.u64(at + 24))
                at += 32
            }
            h = rotl(v1, 1) &+ rotl(v2, 7) &+ rotl(v3, 12) &+ rotl(v4, 18)
            h = merge(h, v1)
            h = merge(h, v2)
            h = merge(h, v3)
            h = merge(h, v4)
        } else {
            h = seed &+ p5
        }
        h = h &+ UInt64(n)
        while at + 8 <= n {
            h ^= round(0, input.u64(at))
            h = rotl(h, 27) &* p1 &+ p4
            at += 8
        }
        if at + 4 <= n {
            h ^= input.u32(at) &* p1
            h = rotl(h, 23) &* p2 &+ p3
            at += 4
        }
        while at < n {
            h ^= input.byte(at) &* p5
            h = rotl(h, 11) &* p1
            at += 1
        }
        h ^= h >> 33
        h = h &* p2
        h ^= h >> 29
        h = h &* p3
        h ^= h >> 32
        return h
    }
}
