import HostMemory
import KVCache
import KVProtocol
import Synchronization

/// Counters of one cache server's store.
public struct CacheStoreStats: Sendable, Equatable {
    public var hits = 0
    public var misses = 0
    public var puts = 0
    /// Blocks refused on PUT: checksum mismatch or longer than a slot.
    public var rejected = 0
    /// Stored blocks whose bytes no longer matched their checksum when read (dropped, answered as a miss).
    public var corrupt = 0
    public var evictions = 0
    public var deletes = 0
    public var bytesIn = 0
    public var bytesOut = 0
    public var blocks = 0
    public var bytesUsed = 0
    public init() {}
}

/// A cache server's blocks: a preallocated, lazily committed pool of
/// fixed-size slots (a sparse memfd: a slot costs RAM once written, and the
/// same memory is what an RDMA path would register), an index from block key
/// to slot, and eviction by usage watermarks: when more than `highWatermark`
/// of the slots are used, the eviction policy frees slots until at most
/// `lowWatermark` are, so puts rarely evict one block at a time.
///
/// Every block keeps the checksum its writer computed (CRC-32C, low 32 bits
/// of the u64); a PUT whose bytes do not match is refused, and a GET verifies
/// again before answering, so a block damaged in memory is dropped and
/// answered as a miss, never returned.
///
/// Thread-safe (one lock; the server calls it from its loop, the admin
/// endpoint from another thread).
public final class CacheStore: Sendable {
    public let slotBytes: Int
    public let slots: Int
    public let highSlots: Int
    public let lowSlots: Int
    let pool: SharedPages

    private struct State: ~Copyable {
        var index: [BlockKey: Int32] = [:]
        var keyOf: [BlockKey]
        var length: [UInt32]
        var checksum: [UInt64]
        var free: [Int32] = []
        var fresh: Int32 = 0
        var policy: any EvictionPolicy
        var stats = CacheStoreStats()
    }
    private let state: Mutex<State>

    public struct Failure: Error, CustomStringConvertible, Sendable {
        public let description: String
    }

    public init(capacityBytes: Int, slotBytes: Int, policy: EvictionPolicyKind = .s3fifo,
                highWatermark: Double = 0.95, lowWatermark: Double = 0.90) throws(Failure) {
        guard slotBytes > 0, capacityBytes >= slotBytes else {
            throw Failure(description: "capacity \(capacityBytes) bytes holds no \(slotBytes)-byte slot")
        }
        guard lowWatermark > 0, lowWatermark <= highWatermark, highWatermark <= 1 else {
            throw Failure(description: "watermarks must satisfy 0 < low (\(lowWatermark)) <= high (\(highWatermark)) <= 1")
        }
        let n = capacityBytes / slotBytes
        guard n < Int(Int32.max) else { throw Failure(description: "\(n) slots is more than this store indexes") }
        do { pool = try SharedPages(name: "switchboard-kv-l2", pageSize: slotBytes, pages: n) } catch {
            throw Failure(description: error.description)
        }
        self.slotBytes = slotBytes
        slots = n
        highSlots = max(1, min(n, Int((Double(n) * highWatermark).rounded(.down))))
        lowSlots = max(0, min(highSlots - 1, Int((Double(n) * lowWatermark).rounded(.down))))
        state = Mutex(State(keyOf: Array(repeating: BlockKey(high: 0, low: 0), count: n),
                            length: Array(repeating: 0, count: n), checksum: Array(repeating: 0, count: n),
                            policy: makeEvictionPolicy(policy, capacity: n)))
    }

    /// The checksum blocks carry: CRC-32C in the low 32 bits.
    public static func checksum(_ bytes: [UInt8]) -> UInt64 { UInt64(BlockChecksum.crc32c(bytes)) }

    public var stats: CacheStoreStats { state.withLock { $0.stats } }

    /// Stores blocks whose bytes match their checksum; returns how many are
    /// stored afterwards (a key already stored counts, and is not rewritten:
    /// keys name content).
    public func put(_ blocks: [(BlockKey, CacheProtocol.Block)]) -> Int {
        put(blocks.map { (key: $0.0, checksum: $0.1.checksum, bytes: $0.1.bytes[...]) })
    }

    /// The same from views of a request body (`CacheProtocol.decodePutView`):
    /// each block is copied once, from the body into its slot.
    public func put(_ blocks: [(key: BlockKey, checksum: UInt64, bytes: ArraySlice<UInt8>)]) -> Int {
        state.withLock { s in
            var stored = 0
            for (k, sum, bytes) in blocks {
                let b = (bytes: bytes, checksum: sum)
                guard b.bytes.count <= slotBytes, UInt64(BlockChecksum.crc32c(b.bytes)) == b.checksum else {
                    s.stats.rejected += 1
                    continue
                }
                if s.index[k] != nil {
                    s.policy.accessed(k)
                    stored += 1
                    continue
                }
                if s.index.count >= highSlots { evictToLow(&s) }
                guard let slot = takeSlot(&s) else { s.stats.rejected += 1; continue }
                pool.store(page: Int(slot), b.bytes)
                s.keyOf[Int(slot)] = k
                s.length[Int(slot)] = UInt32(b.bytes.count)
                s.checksum[Int(slot)] = b.checksum
                s.index[k] = slot
                s.policy.inserted(k)
                s.stats.puts += 1
                s.stats.bytesIn += b.bytes.count
                s.stats.bytesUsed += b.bytes.count
                stored += 1
            }
            s.stats.blocks = s.index.count
            return stored
        }
    }

    /// The GET response body for `keys`: the longest stored prefix, each
    /// block verified against its checksum first (copied once, from the
    /// pool into the body).
    public func getResponse(_ keys: [BlockKey]) -> [UInt8] {
        var out: [UInt8] = []
        appendGetResponse(keys, to: &out)
        return out
    }

    /// Appends the GET response body for `keys` to `out` (a reply being
    /// built after its header).
    public func appendGetResponse(_ keys: [BlockKey], to out: inout [UInt8]) {
        state.withLock { s in
            var found: [Int32] = []
            var total = 4
            for k in keys {
                guard let slot = s.index[k] else { s.stats.misses += 1; break }
                let len = Int(s.length[Int(slot)])
                guard UInt64(pool.crc32c(page: Int(slot), count: len)) == s.checksum[Int(slot)] else {
                    s.stats.corrupt += 1
                    s.stats.misses += 1
                    remove(&s, k, slot)
                    s.policy.removed(k)
                    break
                }
                s.policy.accessed(k)
                found.append(slot)
                total += 12 + len
            }
            var w = AgentProtocol.Writer(capacity: 0)
            swap(&w.bytes, &out)
            w.bytes.reserveCapacity(w.bytes.count + total)
            w.u32(UInt32(found.count))
            for slot in found {
                let len = Int(s.length[Int(slot)])
                w.u64(s.checksum[Int(slot)])
                w.u32(UInt32(len))
                pool.append(page: Int(slot), count: len, to: &w.bytes)
                s.stats.bytesOut += len
            }
            swap(&w.bytes, &out)
            s.stats.hits += found.count
            s.stats.blocks = s.index.count
        }
    }

    /// How many keys from the start are stored.
    public func exists(_ keys: [BlockKey]) -> Int {
        state.withLock { s in
            var n = 0
            while n < keys.count, s.index[keys[n]] != nil { n += 1 }
            return n
        }
    }

    /// Removes keys; returns how many were stored.
    public func delete(_ keys: [BlockKey]) -> Int {
        state.withLock { s in
            var n = 0
            for k in keys {
                guard let slot = s.index[k] else { continue }
                remove(&s, k, slot)
                s.policy.removed(k)
                s.stats.deletes += 1
                n += 1
            }
            s.stats.blocks = s.index.count
            return n
        }
    }

    /// Flips one byte of a stored block in memory (fault injection for the
    /// integrity checks; the admin endpoint exposes it only when asked to).
    /// False when the key is not stored.
    public func corrupt(_ key: BlockKey, offset: Int = 0) -> Bool {
        state.withLock { s in
            guard let slot = s.index[key] else { return false }
            let len = Int(s.length[Int(slot)])
            guard len > 0 else { return false }
            pool.flipByte(page: Int(slot), offset: min(max(0, offset), len - 1))
            return true
        }
    }

    /// Every stored key (tests and the admin listing).
    public var keys: [BlockKey] { state.withLock { Array($0.index.keys) } }

    private func takeSlot(_ s: inout State) -> Int32? {
        if let f = s.free.popLast() { return f }
        if Int(s.fresh) < slots {
            s.fresh += 1
            return s.fresh - 1
        }
        return evictOne(&s) ? s.free.popLast() : nil
    }

    private func evictToLow(_ s: inout State) {
        while s.index.count > lowSlots, evictOne(&s) {}
    }

    private func evictOne(_ s: inout State) -> Bool {
        while let victim = s.policy.evict() {
            guard let slot = s.index[victim] else { continue }
            remove(&s, victim, slot)
            s.stats.evictions += 1
            return true
        }
        return false
    }

    private func remove(_ s: inout State, _ k: BlockKey, _ slot: Int32) {
        s.index[k] = nil
        s.stats.bytesUsed -= Int(s.length[Int(slot)])
        s.length[Int(slot)] = 0
        s.free.append(slot)
        s.stats.blocks = s.index.count
    }
}
