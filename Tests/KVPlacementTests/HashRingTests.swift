import KVPlacement
import KVProtocol
import Testing

@Suite struct HashRingTests {
    /// 1M keys spread as block digests are (uniform 64-bit), from a fixed seed.
    static let keys: [BlockKey] = {
        var s: UInt64 = 42
        return (0..<1_000_000).map { _ in
            s = s &* 6364136223846793005 &+ 1442695040888963407
            var z = s
            z = (z ^ (z >> 33)) &* 0xff51afd7ed558ccd
            z ^= z >> 33
            return BlockKey(high: z, low: s)
        }
    }()

    func loads(_ ring: HashRing) -> [String: Int] {
        var out: [String: Int] = [:]
        for k in Self.keys { out[ring.owner(of: k)!, default: 0] += 1 }
        return out
    }

    @Test(arguments: [3, 5, 8, 16])
    func loadIsBalancedWithTheDefaultVirtualNodes(_ n: Int) {
        let ring = HashRing(members: (0..<n).map { "10.0.0.\($0):7000" })
        let l = loads(ring)
        let mean = Double(Self.keys.count) / Double(n)
        let ratio = Double(l.values.max()!) / mean
        print("ring of \(n), \(HashRing.defaultVirtualNodes) virtual nodes each: max/mean load over 1M keys = \(ratio)")
        #expect(l.count == n)
        #expect(ratio <= 1.1, "max/mean \(ratio)")
    }

    @Test(arguments: [4, 8])
    func addingOrRemovingAMemberMovesAboutOneNth(_ n: Int) {
        let ring = HashRing(members: (0..<n).map { "cache-\($0)" })
        let grown = ring.adding("cache-new")
        let shrunk = ring.removing("cache-0")
        var movedOnAdd = 0, movedOnRemove = 0, wrongMove = 0
        for k in Self.keys {
            let before = ring.owner(of: k)!
            let after = grown.owner(of: k)!
            if before != after {
                movedOnAdd += 1
                if after != "cache-new" { wrongMove += 1 }  // only moves onto the new member
            }
            let s = shrunk.owner(of: k)!
            if s != before {
                movedOnRemove += 1
                if before != "cache-0" { wrongMove += 1 }    // only the removed member's keys move
            }
        }
        let add = Double(movedOnAdd) / Double(Self.keys.count), remove = Double(movedOnRemove) / Double(Self.keys.count)
        print("ring of \(n): adding one moved \(add) of keys (1/(N+1) = \(1.0 / Double(n + 1))); removing one moved \(remove) (1/N = \(1.0 / Double(n)))")
        #expect(wrongMove == 0)
        #expect(abs(add - 1.0 / Double(n + 1)) < 0.03 && abs(remove - 1.0 / Double(n)) < 0.03)
    }

    @Test func replicasAreDistinctAndStartAtTheOwner() {
        let ring = HashRing(members: ["a:1", "b:1", "c:1"])
        for k in Self.keys.prefix(10_000) {
            let r = ring.replicas(of: k, count: 2)
            #expect(r.count == 2 && r[0] == ring.owner(of: k) && r[0] != r[1])
        }
        #expect(ring.replicas(of: Self.keys[0], count: 5).count == 3)  // no more than there are members
        #expect(HashRing(members: []).owner(of: Self.keys[0]) == nil)
        // The same members in another order (and duplicated) build the same ring.
        #expect(HashRing(members: ["c:1", "a:1", "b:1", "a:1"]) == ring)
    }
}
