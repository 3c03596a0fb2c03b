import KVBench
import Foundation
@testable import KVCache
import KVProtocol
import Testing

@Suite struct BlockKeyTests {
    let space = BlockKeySpace(namespace: "prod", model: "llama-3-8b", layout: "nhd-bf16", blockSize: 4)

    @Test func sipHash128ReferenceVector() {
        // SipHash-2-4-128, key 00..0f, empty message (reference vectors_sip128[0]).
        let d = SipHash128.hash(key: (0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908), [][...])
        #expect(d.low == 0xe6a8_25ba_047f_81a3)
        #expect(d.high == 0x9302_55c7_1472_f66d)
    }

    @Test func equalPrefixesGiveEqualKeysOnlyFullBlocksCount() {
        let a = space.keys(for: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
        let b = space.keys(for: [1, 2, 3, 4, 5, 6, 7, 8, 99])
        #expect(a.count == 2 && b.count == 2)
        #expect(a == b)  // the partial third block is never keyed
        let c = space.keys(for: [1, 2, 3, 4, 5, 6, 7, 0])
        #expect(c[0] == a[0] && c[1] != a[1])
        // Chained: the same block after a different prefix is a different key.
        let d = space.keys(for: [0, 2, 3, 4, 5, 6, 7, 8])
        #expect(d[1] != a[1])
        // Stable across runs and processes (no random seed): a fixed value.
        #expect(space.keys(for: [1, 2, 3, 4])[0] == space.keys(for: [1, 2, 3, 4, 9])[0])
    }

    @Test func spacesDoNotCollide() {
        let t: [UInt32] = [1, 2, 3, 4]
        let others = [BlockKeySpace(namespace: "dev", model: "llama-3-8b", layout: "nhd-bf16", blockSize: 4),
                      BlockKeySpace(namespace: "prod", model: "llama-3-70b", layout: "nhd-bf16", blockSize: 4),
                      BlockKeySpace(namespace: "prod", model: "llama-3-8b", layout: "hnd-bf16", blockSize: 4),
                      BlockKeySpace(namespace: "pro", model: "dllama-3-8b", layout: "nhd-bf16", blockSize: 4)]
        let mine = space.keys(for: t)[0]
        for o in others { #expect(o.keys(for: t)[0] != mine) }
        #expect(mine.description.count == 32)
    }
}

@Suite struct EvictionPolicyTests {
    func k(_ i: Int) -> BlockKey { BlockKey(high: 0, low: UInt64(i)) }

    @Test func lruEvictsLeastRecentlyUsed() {
        var p = QueuePolicy.lru
        for i in 0..<3 { p.inserted(k(i)) }
        p.accessed(k(0))
        #expect(p.evict() == k(1))
        p.removed(k(2))
        #expect(p.evict() == k(0))
        #expect(p.evict() == nil)
    }

    @Test func fifoIgnoresReads() {
        var p = QueuePolicy.fifo
        for i in 0..<3 { p.inserted(k(i)) }
        p.accessed(k(0))
        #expect(p.evict() == k(0))
        #expect(p.count == 2)
    }

    @Test func s3fifoMatchesTheReferenceSimulationExactly() throws {
        let trace = try String(contentsOf: try #require(Bundle.module.url(forResource: "Inputs/s3fifo.trace", withExtension: "txt")), encoding: .utf8)
            .split(separator: "\n").map { k(Int($0)!) }
        for cap in [20, 100, 300] {
            let expected = try String(contentsOf: try #require(Bundle.module.url(forResource: "Inputs/s3fifo.expected-\(cap)", withExtension: "txt")),
                                      encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
            var sim = CacheSimulator(policy: S3FIFOPolicy(capacity: cap), capacity: cap)
            let got = String(trace.map { sim.access($0) ? "H" : "M" })
            #expect(got == expected, "capacity \(cap): first difference at \(Array(zip(got, expected)).firstIndex { $0 != $1 } ?? -1)")
        }
    }

    @Test func s3fifoGhostQueueIsBounded() {
        // A scan: every key new, each evicted key becomes a ghost.
        var p = S3FIFOPolicy(capacity: 50)
        for i in 0..<100_000 { p.inserted(k(i)); if p.count > 50 { _ = p.evict() } }
        #expect(p.ghostCount <= 45)
        #expect(p.count <= 50)
    }

    @Test func s3fifoKeepsAHotSetThroughAScanBetterThanLRU() {
        // A hot set of 40 keys read again and again, interleaved with a one-time scan.
        var trace: [BlockKey] = []
        for i in 0..<20_000 { trace.append(i % 2 == 0 ? k(i % 80 / 2) : k(1_000_000 + i)) }
        var lru = CacheSimulator(policy: QueuePolicy.lru, capacity: 60)
        var s3 = CacheSimulator(policy: S3FIFOPolicy(capacity: 60), capacity: 60)
        for key in trace { lru.access(key); s3.access(key) }
        #expect(s3.hitRatio > lru.hitRatio + 0.2)
    }

    @Test func prefixSemanticsStopAtTheFirstMiss() {
        var sim = CacheSimulator(policy: QueuePolicy.lru, capacity: 10)
        #expect(sim.request([k(1), k(2), k(3)]) == 0)
        #expect(sim.request([k(1), k(2), k(4)]) == 2)
        #expect(sim.request([k(9), k(1), k(2)]) == 0)  // present later blocks do not count after a miss
        #expect(sim.lookups == 9 && sim.hits == 2)
    }
}

@Suite struct L1CacheTests {
    func k(_ i: Int) -> BlockKey { BlockKey(high: 1, low: UInt64(i)) }
    func page(_ i: Int, _ size: Int) -> [UInt8] { (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ i &* 7) } }

    @Test func putGetLongestPrefixAndSizes() throws {
        let c = try L1Cache(pageSize: 64, capacityBytes: 64 * 10, policy: .lru)
        #expect(try c.put([(k(1), page(1, 64)), (k(2), page(2, 64)), (k(4), page(4, 64))]) == 3)
        let got = c.get([k(1), k(2), k(3), k(4)])
        #expect(got == [page(1, 64), page(2, 64)])
        #expect(c.exists([k(1), k(2), k(3)]) == 2)
        #expect(throws: KVCacheError.badSize(expected: 64, got: 63)) { try c.put([(k(9), page(9, 63))]) }
        #expect(try c.put([(k(1), page(99, 64))]) == 0)  // present: left as is
        #expect(c.get([k(1)]) == [page(1, 64)])
        #expect(c.delete([k(2), k(7)]) == 1)
        #expect(c.exists([k(1), k(2)]) == 1)
        let s = c.stats
        #expect(s.hits == 3 && s.misses == 1 && s.pagesUsed == 2 && s.pagesAllocated == 3 && s.bytesIn == 3 * 64)
    }

    @Test func capacityEvictsAndReusesPages() throws {
        let c = try L1Cache(pageSize: 16, capacityBytes: 16 * 8, policy: .fifo)
        for i in 0..<20 { try c.put([(k(i), page(i, 16))]) }
        let s = c.stats
        #expect(s.pagesAllocated == 8 && s.pagesUsed == 8 && s.evictions == 12)
        #expect(c.exists([k(12)]) == 1 && c.exists([k(11)]) == 0)
        for i in 12..<20 { #expect(c.get([k(i)]) == [page(i, 16)], "page \(i) corrupted") }
    }

    @Test func concurrentEnginesNeverSeeCorruptPages() async throws {
        let c = try L1Cache(pageSize: 256, capacityBytes: 256 * 64, policy: .s3fifo)
        try await withThrowingTaskGroup(of: Int.self) { group in
            for engine in 0..<4 {
                group.addTask {
                    var bad = 0
                    for round in 0..<400 {
                        let i = (engine * 7 + round) % 150
                        try c.put([(self.k(i), self.page(i, 256))])
                        for p in c.get([self.k((i + 3) % 150)]) where p != self.page((i + 3) % 150, 256) { bad += 1 }
                    }
                    return bad
                }
            }
            var corrupt = 0
            for try await b in group { corrupt += b }
            #expect(corrupt == 0)
        }
        #expect(c.stats.pagesUsed <= 64)
    }
}

@Suite struct BlockStoreTests {
    func k(_ i: Int) -> BlockKey { BlockKey(high: 2, low: UInt64(i)) }

    @Test func reservedPagesAreInvisibleUntilCommitted() throws {
        let s = BlockStore(pages: 4, policy: .lru)
        let r = s.reserve([k(1), k(2), k(1)], owner: 7, expires: 100)
        #expect(r.id != 0 && r.pages[0] >= 0 && r.pages[1] >= 0 && r.pages[2] == -1)
        #expect(s.exists([k(1)]) == 0 && s.lease([k(1)], owner: 7, expires: 100).id == 0)
        #expect(s.reserve([k(1), k(3)], owner: 8, expires: 100).pages[0] == -1)  // being written elsewhere
        #expect(throws: BlockStoreError.unknownID(r.id)) { try s.commit(r.id, owner: 8) }  // not its owner
        #expect(try s.commit(r.id, owner: 7) == 2)
        #expect(throws: BlockStoreError.unknownID(r.id)) { try s.commit(r.id, owner: 7) }  // once only
        #expect(s.exists([k(1), k(2), k(3)]) == 2)
    }

    @Test func pinnedPagesAreNeitherEvictedNorReused() throws {
        let s = BlockStore(pages: 2, policy: .lru)
        let r = s.reserve([k(1), k(2)], owner: 1, expires: 100)
        _ = try s.commit(r.id, owner: 1)
        let l = s.lease([k(1), k(2), k(3)], owner: 2, expires: 100)
        #expect(l.pages.count == 2)
        // Everything is pinned: nothing can be evicted for a new key.
        #expect(s.reserve([k(3)], owner: 1, expires: 100).pages == [-2])
        // Deleting a pinned key hides it at once and frees the page at release.
        #expect(s.delete([k(2)]) == 1 && s.exists([k(1), k(2)]) == 1)
        try s.release(l.id, owner: 2)
        let r2 = s.reserve([k(3), k(4)], owner: 1, expires: 100)
        #expect(r2.pages.allSatisfy { $0 >= 0 })  // the freed page, then k(1) evicted
        _ = try s.commit(r2.id, owner: 1)
        #expect(s.stats.evictions == 1 && s.exists([k(1)]) == 0 && s.isQuiescent)
    }

    @Test func droppedOwnersAndExpiredTicketsLeakNothing() throws {
        let s = BlockStore(pages: 8, policy: .s3fifo)
        let w = s.reserve([k(1), k(2)], owner: 1, expires: 1_000)
        _ = try s.commit(w.id, owner: 1)
        _ = s.reserve([k(3), k(4)], owner: 2, expires: 1_000)   // owner 2 dies mid-put
        _ = s.lease([k(1)], owner: 2, expires: 1_000)           // and mid-get
        s.dropOwner(2)
        #expect(s.isQuiescent && s.exists([k(3)]) == 0)
        let late = s.reserve([k(5)], owner: 3, expires: 50)
        let slow = s.lease([k(1), k(2)], owner: 3, expires: 60)
        #expect(s.nextExpiry == 50)
        #expect(s.expire(now: 55) == 1)
        #expect(throws: BlockStoreError.unknownID(late.id)) { try s.commit(late.id, owner: 3) }
        #expect(s.expire(now: 60) == 1)
        #expect(throws: BlockStoreError.unknownID(slow.id)) { try s.release(slow.id, owner: 3) }
        #expect(s.isQuiescent && s.stats.expired == 2 && s.exists([k(1), k(2)]) == 2)
    }
}

@Suite struct BlockKeyGoldenTests {
    /// The same vector is checked against the C client (Tests/integration/test_kv_agent.py),
    /// so engines using either library compute the same keys.
    @Test func keysMatchTheGoldenVector() {
        let space = BlockKeySpace(namespace: "ns", model: "m", layout: "l", blockSize: 4)
        #expect(space.keys(for: Array(1...9)).map(\.description) == [
            "8d8a4fb3179d3ae7ef4695a9e06acee3", "562c8ffbe31dc587cb6e823a6639ad08",
        ])
    }
}
