import KVBench
import KVCache
import KVProtocol
import Testing

/// kv-throughput counts only bytes it really copied.
@Suite struct PutRoundTests {
    @Test func aPutOfAnExistingKeyIsNotCounted() throws {
        let page = 64
        let cache = try L1Cache(pageSize: page, capacityBytes: page * 16, policy: .lru)
        let keys = PutRound.freshKeys(tier: 9, round: 1, count: 8)
        let blocks = (0..<8).map { [UInt8](repeating: UInt8($0), count: page) }
        #expect(try cache.put([(keys[0], blocks[0]), (keys[1], blocks[1]), (keys[5], blocks[5])]) == 3)
        let r = try PutRound(keys: keys, batch: 4).run(blocks: blocks) { try cache.put($0) }
        #expect(r.blocksOffered == 8)
        #expect(r.blocksCopied == 5)
        #expect(r.bytesCopied == 5 * page)
        // The same round again copies nothing, and says so.
        let again = try PutRound(keys: keys, batch: 4).run(blocks: blocks) { try cache.put($0) }
        #expect(again.blocksCopied == 0 && again.bytesCopied == 0)
    }

    @Test func everyTierAndRoundGetsFreshKeys() {
        var seen = Set<BlockKey>()
        for tier in 0..<4 {
            for round in 0..<4 {
                for k in PutRound.freshKeys(tier: tier, round: round, count: 128) {
                    #expect(seen.insert(k).inserted, "key \(k) reused at tier \(tier) round \(round)")
                }
            }
        }
    }
}
