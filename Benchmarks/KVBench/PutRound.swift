import Foundation
import KVProtocol

/// One timed round of puts for `kv-throughput`: the blocks go to `put` in
/// batches, and only the blocks `put` reports as stored count as copied
/// bytes. A key already in the cache is skipped by every tier (the agent
/// hands back "no write needed"), so counting offered bytes would credit
/// copies that never happened.
public struct PutRound {
    public let keys: [BlockKey]
    public let batch: Int

    public init(keys: [BlockKey], batch: Int) {
        precondition(batch > 0)
        self.keys = keys
        self.batch = batch
    }

    /// Keys no earlier tier or round has used: `tier` and `round` go into
    /// the high word, the block index into the low word.
    public static func freshKeys(tier: Int, round: Int, count: Int) -> [BlockKey] {
        let high = UInt64(truncatingIfNeeded: tier) << 32 | UInt64(truncatingIfNeeded: round)
        return (0..<count).map { BlockKey(high: high, low: UInt64($0)) }
    }

    public struct Result: Sendable, Equatable {
        public var seconds: Double
        public var blocksOffered: Int
        public var blocksCopied: Int
        public var bytesCopied: Int
    }

    /// Runs the round; `put` returns how many of the blocks it stored.
    public func run(blocks: [[UInt8]], put: ([(key: BlockKey, bytes: [UInt8])]) throws -> Int) rethrows -> Result {
        precondition(blocks.count >= keys.count)
        var copied = 0
        let t0 = DispatchTime.now().uptimeNanoseconds
        for start in stride(from: 0, to: keys.count, by: batch) {
            let end = min(keys.count, start + batch)
            copied += try put((start..<end).map { (keys[$0], blocks[$0]) })
        }
        let t = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        let bytes = keys.isEmpty ? 0 : copied * blocks[0].count
        return Result(seconds: t, blocksOffered: keys.count, blocksCopied: copied, bytesCopied: bytes)
    }
}
