import HostMemory
import KVProtocol
import Testing
@testable import KVServer

func key(_ i: Int) -> BlockKey { BlockKey(high: UInt64(i) &* 0x9E37_79B9_7F4A_7C15, low: UInt64(i)) }

func block(_ i: Int, bytes: Int = 256) -> CacheProtocol.Block {
    var b = [UInt8](repeating: 0, count: bytes)
    for j in 0..<bytes { b[j] = UInt8(truncatingIfNeeded: i &* 31 &+ j) }
    return CacheProtocol.Block(checksum: CacheStore.checksum(b), bytes: b)
}

@Suite struct CacheStoreTests {
    @Test func getReturnsTheLongestStoredPrefixVerified() throws {
        let s = try CacheStore(capacityBytes: 64 * 256, slotBytes: 256)
        #expect(s.put([(key(1), block(1)), (key(2), block(2)), (key(4), block(4))]) == 3)
        let got = try CacheProtocol.decodeGetResponse(s.getResponse([key(1), key(2), key(3), key(4)]))
        #expect(got == [block(1), block(2)])
        #expect(s.exists([key(1), key(2), key(3)]) == 2)
        #expect(s.stats.hits == 2 && s.stats.misses == 1 && s.stats.blocks == 3)
        #expect(s.delete([key(2), key(9)]) == 1)
        #expect(s.exists([key(1), key(2)]) == 1)
    }

    @Test func putRefusesABlockWhoseBytesDoNotMatchItsChecksum() throws {
        let s = try CacheStore(capacityBytes: 64 * 256, slotBytes: 256)
        var bad = block(1)
        bad.bytes[10] ^= 1
        #expect(s.put([(key(1), bad), (key(2), block(2))]) == 1)
        #expect(s.stats.rejected == 1)
        #expect(s.exists([key(1)]) == 0)
        // Larger than a slot: refused too.
        #expect(s.put([(key(3), block(3, bytes: 257))]) == 0)
        #expect(s.stats.rejected == 2)
    }

    @Test func aBlockDamagedInMemoryIsDroppedAndAnsweredAsAMiss() throws {
        let s = try CacheStore(capacityBytes: 64 * 256, slotBytes: 256)
        #expect(s.put([(key(1), block(1)), (key(2), block(2))]) == 2)
        #expect(s.corrupt(key(2), offset: 100))
        let got = try CacheProtocol.decodeGetResponse(s.getResponse([key(1), key(2)]))
        #expect(got == [block(1)])
        #expect(s.stats.corrupt == 1)
        #expect(s.exists([key(1), key(2)]) == 1, "the corrupt block is gone, not kept to fail again")
        #expect(!s.corrupt(key(99)))
    }

    @Test func evictionRunsFromTheHighWatermarkDownToTheLowOne() throws {
        // 20 slots, evict at > 16 used down to 10.
        let s = try CacheStore(capacityBytes: 20 * 256, slotBytes: 256, policy: .fifo, highWatermark: 0.8, lowWatermark: 0.5)
        #expect(s.highSlots == 16 && s.lowSlots == 10)
        for i in 0..<16 { #expect(s.put([(key(i), block(i))]) == 1) }
        #expect(s.stats.evictions == 0 && s.stats.blocks == 16)
        #expect(s.put([(key(16), block(16))]) == 1)
        // One batch of evictions (the oldest first), then the new block.
        #expect(s.stats.evictions == 6)
        #expect(s.stats.blocks == 11)
        #expect(s.exists([key(0)]) == 0 && s.exists([key(5)]) == 0 && s.exists([key(6)]) == 1 && s.exists([key(16)]) == 1)
        #expect(s.stats.bytesUsed == 11 * 256)
        // Storing a key again does not duplicate it.
        #expect(s.put([(key(16), block(16))]) == 1)
        #expect(s.stats.blocks == 11)
    }

    @Test func fillingPastCapacityKeepsEvictingAndNeverFails() throws {
        let s = try CacheStore(capacityBytes: 8 * 64, slotBytes: 64, policy: .lru, highWatermark: 1, lowWatermark: 1)
        for i in 0..<100 { #expect(s.put([(key(i), block(i, bytes: 64))]) == 1) }
        #expect(s.stats.blocks <= 8)
        #expect(s.exists([key(99)]) == 1)
    }

    @Test func badSettingsAreRefusedWithTheReason() {
        #expect(throws: CacheStore.Failure.self) { try CacheStore(capacityBytes: 10, slotBytes: 256) }
        #expect(throws: CacheStore.Failure.self) { try CacheStore(capacityBytes: 4096, slotBytes: 256, highWatermark: 0.5, lowWatermark: 0.9) }
    }
}
