import PodSnapshot
import Testing

@testable import PrefixIndex

@Suite struct XXH64Tests {
    @Test func knownVectors() {
        #expect(XXH64.hash([]) == 0xEF46_DB37_51D8_E999)
        #expect(XXH64.hash(Array("a".utf8)) == 0xD24E_C4F1_A98C_6E5B)
        #expect(XXH64.hash(Array("abc".utf8)) == 0x44BC_2CF5_AD77_0999)
    }

    @Test func prefixedHashEqualsTheHashOfTheConcatenation() {
        let bytes = (0..<300).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }
        for n in [0, 1, 3, 4, 7, 8, 23, 24, 25, 31, 32, 33, 64, 100, 299] {
            for prefix: UInt64 in [0, 0x0123_4567_89AB_CDEF, .max] {
                var joined: [UInt8] = []
                for k in 0..<8 { joined.append(UInt8(truncatingIfNeeded: prefix >> (8 * UInt64(k)))) }
                joined += bytes[1..<(1 + n)]
                #expect(XXH64.hash(prefix: prefix, bytes, 1..<(1 + n), seed: 42) == XXH64.hash(joined, seed: 42), "n=\(n)")
            }
        }
    }
}

@Suite struct PrefixBlockKeyTests {
    let text = Array(String(repeating: "The quick brown fox jumps over the lazy dog. ", count: 20).utf8)

    @Test func aChangedEarlyBlockChangesEveryLaterKey() {
        let h = BlockHasher(blockSize: 16, seed: 7)
        let base = h.keys(bytes: text, model: "m")
        #expect(base.count == text.count / 16)
        var changed = text
        changed[3 * 16 + 2] ^= 0x20  // inside block 3
        let other = h.keys(bytes: changed, model: "m")
        #expect(Array(base[0..<3]) == Array(other[0..<3]))
        for i in 3..<base.count { #expect(base[i] != other[i], "block \(i)") }
        // Repeated text: equal blocks at different positions get different keys.
        #expect(Set(base).count == base.count)
    }

    @Test func replicasWithTheSameSeedAgreeAndModelsNeverShareKeys() {
        let a = BlockHasher(blockSize: 16, seed: 99), b = BlockHasher(blockSize: 16, seed: 99)
        #expect(a.keys(bytes: text, model: "m") == b.keys(bytes: text, model: "m"))
        #expect(a.keys(bytes: text, model: "m") != BlockHasher(blockSize: 16, seed: 98).keys(bytes: text, model: "m"))
        #expect(Set(a.keys(bytes: text, model: "m")).isDisjoint(with: a.keys(bytes: text, model: "n")))
    }

    @Test func onlyFullBlocksAreKeyedAndTokensKeyByBlock() {
        let h = BlockHasher(blockSize: 4)
        #expect(h.keys(bytes: Array("abcdefg".utf8), model: "m").count == 1)
        #expect(h.keys(bytes: [], model: "m").isEmpty)
        let t: [UInt32] = [1, 2, 3, 4, 5, 6, 7, 8, 9]
        let k = h.keys(tokens: t, model: "m")
        #expect(k.count == 2)
        #expect(h.keys(tokens: [1, 2, 3, 4, 5, 6, 7, 99], model: "m")[0] == k[0])
        #expect(h.keys(tokens: [1, 2, 3, 4, 5, 6, 7, 99], model: "m")[1] != k[1])
    }
}

@Suite struct PrefixIndexTests {
    let pods = (0..<4).map { PodEndpoint(host: "10.9.0.\($0)", port: 8000) }
    func keys(_ name: String, _ n: Int) -> [UInt64] {
        BlockHasher(blockSize: 8).keys(bytes: Array(String(repeating: name + "-payload", count: n).utf8), model: "m")
    }

    @Test func longestMatchPerPod() {
        let idx = PrefixIndex()
        let k = keys("doc", 40)
        idx.record(Array(k.prefix(10)), pod: pods[0])
        idx.record(Array(k.prefix(25)), pod: pods[1])
        #expect(idx.longestMatches(k, pods: pods) == [10, 25, 0, 0])
        #expect(idx.longestMatches(keys("other", 40), pods: pods) == [0, 0, 0, 0])
        // Only candidates are reported, in their order.
        #expect(idx.longestMatches(k, pods: [pods[1], pods[3]]) == [25, 0])
        #expect(idx.count == 35)
    }

    @Test func aPodsCapacityEvictsItsLeastRecentBlocksTailFirst() {
        let idx = PrefixIndex(limits: .init(podCapacity: 30))
        let a = keys("a", 40), b = keys("b", 40)
        idx.record(Array(a.prefix(20)), pod: pods[0])
        idx.record(Array(b.prefix(20)), pod: pods[0])  // 40 > 30: a's last 10 blocks go
        #expect(idx.count(of: pods[0]) == 30)
        #expect(idx.longestMatches(a, pods: [pods[0]]) == [10])
        #expect(idx.longestMatches(b, pods: [pods[0]]) == [20])
        // Touching a again makes it the most recent: b's tail goes next.
        idx.record(Array(a.prefix(10)), pod: pods[0])
        idx.record(Array(keys("c", 40).prefix(5)), pod: pods[0])
        #expect(idx.longestMatches(a, pods: [pods[0]]) == [10])
        #expect(idx.longestMatches(b, pods: [pods[0]]) == [15])
        #expect(idx.count(of: pods[0]) == 30)
    }

    @Test func entriesOlderThanTheTTLNeitherMatchNorStay() {
        let idx = PrefixIndex(limits: .init(ttlSeconds: 60))
        let a = keys("a", 30), b = keys("b", 30)
        idx.record(a, pod: pods[0], at: 100)
        idx.record(b, pod: pods[1], at: 150)
        #expect(idx.longestMatches(a, pods: pods, at: 159) == [a.count, 0, 0, 0])
        #expect(idx.longestMatches(a, pods: pods, at: 160) == [0, 0, 0, 0])  // expired, not yet swept
        idx.expire(at: 170)
        #expect(idx.count == b.count)
        #expect(idx.longestMatches(b, pods: pods, at: 170) == [0, b.count, 0, 0])
        idx.expire(at: 210)
        #expect(idx.count == 0)
    }

    @Test func boundedMemoryUnderAMillionBlocks() {
        let idx = PrefixIndex(limits: .init(maxEntries: 1_000_000))
        var next: UInt64 = 1
        for batch in 0..<1200 {
            var ks: [UInt64] = []
            ks.reserveCapacity(1000)
            for _ in 0..<1000 { ks.append(next &* 0x9E37_79B9_7F4A_7C15); next += 1 }
            idx.record(ks, pod: pods[batch % pods.count])
        }
        #expect(idx.count == 1_000_000)
        let perEntry = idx.bytesPerEntry
        #expect(perEntry > 0 && perEntry <= 100, "\(perEntry) bytes per block-pod entry")
        // The oldest blocks went first.
        #expect(idx.longestMatches([1 &* 0x9E37_79B9_7F4A_7C15], pods: pods) == [0, 0, 0, 0])
        let newest = (next - 1) &* 0x9E37_79B9_7F4A_7C15
        #expect(idx.longestMatches([newest], pods: pods).reduce(0, +) == 1)
    }

    @Test func aBlockHeldByTwoPodsSurvivesOneEviction() {
        let idx = PrefixIndex(limits: .init(podCapacity: 5))
        let k = keys("shared", 10)
        idx.record(Array(k.prefix(5)), pod: pods[0])
        idx.record(Array(k.prefix(5)), pod: pods[1])
        idx.record(Array(keys("x", 10).prefix(5)), pod: pods[0])  // pod 0 forgets k
        #expect(idx.longestMatches(k, pods: pods) == [0, 5, 0, 0])
        #expect(idx.count == 10)
    }
}

@Suite struct PrefixIndexEntryTests {
    @Test func anEntryIsFortyBytes() {
        #expect(MemoryLayout<Entry>.stride == 40)
    }

    @Test func evictionCostCountsTheLeastRecentBlocksAndTheirReuse() {
        let pod = PodEndpoint(host: "10.9.1.1", port: 8000)
        let idx = PrefixIndex()
        let a: [UInt64] = (1...10).map { $0 }, b: [UInt64] = (101...110).map { $0 }
        idx.record(a, pod: pod)
        idx.record(a, pod: pod)  // a reused once: each of its blocks has 1 hit
        idx.record(b, pod: pod)  // b is now the most recent
        #expect(idx.evictionCost(pod: pod, incoming: 5, capacity: 30) == (0, 0))
        // 20 held + 15 incoming - 30 = 5 go: a's last 5 blocks (a's tail is least recent), 1 hit each.
        let c = idx.evictionCost(pod: pod, incoming: 15, capacity: 30)
        #expect(c.blocks == 5 && c.hits == 5)
    }
}
