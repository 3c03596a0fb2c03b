import KVProtocol

/// Where KV blocks live among the L2 cache servers: a consistent-hash ring
/// with virtual nodes. Each member owns `virtualNodes` points on a 64-bit
/// ring (derived from its id, so every agent builds the same ring from the
/// same member list); a block belongs to the first member clockwise from its
/// key, and its replicas to the next distinct members. Adding or removing a
/// member moves only the keys between its points and their predecessors
/// (≈ 1/N of them). Immutable: a membership change builds a new ring.
public struct HashRing: Sendable, Equatable {
    public let virtualNodes: Int
    /// Member ids, sorted (the ring does not depend on the order given).
    public let members: [String]
    /// Ring points, ascending, and the member index owning each.
    private let points: [UInt64]
    private let owners: [Int32]

    public static let defaultVirtualNodes = 512

    public init(members: [String], virtualNodes: Int = HashRing.defaultVirtualNodes) {
        let ids = Array(Set(members)).sorted()
        self.members = ids
        self.virtualNodes = max(1, virtualNodes)
        var pts: [(UInt64, Int32)] = []
        pts.reserveCapacity(ids.count * self.virtualNodes)
        for (m, id) in ids.enumerated() {
            let base = Self.fnv1a(id)
            for v in 0..<self.virtualNodes {
                pts.append((Self.mix(base &+ UInt64(v) &* 0x9E37_79B9_7F4A_7C15), Int32(m)))
            }
        }
        // Ties (astronomically rare) break by member, so every builder agrees.
        pts.sort { $0.0 != $1.0 ? $0.0 < $1.0 : $0.1 < $1.1 }
        points = pts.map(\.0)
        owners = pts.map(\.1)
    }

    public var isEmpty: Bool { members.isEmpty }

    /// The ring position of a block (its key is already a uniform digest).
    @inline(__always) public static func position(_ key: BlockKey) -> UInt64 { key.high }

    /// The member a position belongs to; nil on an empty ring.
    public func owner(of position: UInt64) -> String? {
        guard !points.isEmpty else { return nil }
        return members[Int(owners[successor(position)])]
    }

    public func owner(of key: BlockKey) -> String? { owner(of: Self.position(key)) }

    /// The first `count` distinct members clockwise from the key: the
    /// primary, then its replicas (fewer when the ring has fewer members).
    public func replicas(of key: BlockKey, count: Int) -> [String] {
        guard !points.isEmpty, count > 0 else { return [] }
        let want = min(count, members.count)
        var out: [String] = []
        out.reserveCapacity(want)
        var seen = Set<Int32>()
        var i = successor(Self.position(key))
        while out.count < want {
            let m = owners[i]
            if seen.insert(m).inserted { out.append(members[Int(m)]) }
            i = i + 1 == points.count ? 0 : i + 1
        }
        return out
    }

    /// The same ring with `id` added (or removed).
    public func adding(_ id: String) -> HashRing { HashRing(members: members + [id], virtualNodes: virtualNodes) }
    public func removing(_ id: String) -> HashRing { HashRing(members: members.filter { $0 != id }, virtualNodes: virtualNodes) }

    /// Index of the first point at or after `p`, wrapping to 0.
    private func successor(_ p: UInt64) -> Int {
        var lo = 0, hi = points.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if points[mid] < p { lo = mid + 1 } else { hi = mid }
        }
        return lo == points.count ? 0 : lo
    }

    static func fnv1a(_ s: String) -> UInt64 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for b in s.utf8 {
            h ^= UInt64(b)
            h = h &* 0x100_0000_01B3
        }
        return h
    }

    /// SplitMix64's finalizer: spreads neighbouring inputs over the ring.
    static func mix(_ x: UInt64) -> UInt64 {
        var z = x &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
