import HostMemory
import Synchronization

/// Counters of an L1 cache, readable from any thread.
public struct L1CacheStats: Sendable, Equatable {
    public var hits = 0
    public var misses = 0
    public var puts = 0
    public var evictions = 0
    public var bytesIn = 0
    public var bytesOut = 0
    public var pagesUsed = 0
    public var pagesAllocated = 0
}

/// The L1 tier: host memory cut into fixed-size pages (one KV block each),
/// allocated lazily in slabs up to a capacity, with a pluggable eviction
/// policy. Safe to share between threads (engines' requests are served
/// concurrently; each call holds the lock for its copies only).
///
/// Pages live in `HostMemory.PageSlab`s; the engine data plane (shared
/// memory, pinned pages for CUDA) will replace the slab allocation behind
/// the same page interface in the next step of the KV-cache issue.
public final class L1Cache: Sendable {
    public let pageSize: Int
    public let capacityPages: Int
    public let pagesPerSlab: Int
    private let state: Mutex<State>

    struct State {
        var slabs: [PageSlab] = []
        var free: [Int] = []            // page numbers
        var index: [BlockKey: Int] = [:]
        var policy: any EvictionPolicy
        var stats = L1CacheStats()
    }

    /// `capacityBytes` is rounded down to whole pages; slabs hold
    /// `slabBytes` each (rounded down to whole pages, at least one).
    public init(pageSize: Int, capacityBytes: Int, slabBytes: Int = 64 << 20, policy: EvictionPolicyKind = .s3fifo) {
        precondition(pageSize > 0 && capacityBytes >= pageSize, "capacity must hold at least one page")
        self.pageSize = pageSize
        self.capacityPages = capacityBytes / pageSize
        self.pagesPerSlab = max(1, min(slabBytes / pageSize, capacityBytes / pageSize))
        state = Mutex(State(policy: makeEvictionPolicy(policy, capacity: capacityBytes / pageSize)))
    }

    public var stats: L1CacheStats { state.withLock { $0.stats } }

    /// Stores blocks (key, exactly `pageSize` bytes each), evicting as
    /// needed. Keys already present are left as they are. Returns how many
    /// were stored.
    @discardableResult
    public func put(_ blocks: [(key: BlockKey, bytes: [UInt8])]) throws(KVCacheError) -> Int {
        for b in blocks where b.bytes.count != pageSize {
            throw .badSize(expected: pageSize, got: b.bytes.count)
        }
        return state.withLock { s in
            var stored = 0
            for b in blocks where s.index[b.key] == nil {
                guard let page = Self.takePage(&s, pageSize: pageSize, capacity: capacityPages, perSlab: pagesPerSlab) else { break }
                s.slabs[page / pagesPerSlab].write(page: page % pagesPerSlab, from: b.bytes)
                s.index[b.key] = page
                s.policy.inserted(b.key)
                s.stats.puts += 1
                s.stats.bytesIn += pageSize
                s.stats.pagesUsed += 1
                stored += 1
            }
            return stored
        }
    }

    /// The longest run of present blocks from the start of `keys`, copied out.
    public func get(_ keys: [BlockKey]) -> [[UInt8]] {
        state.withLock { s in
            var out: [[UInt8]] = []
            for k in keys {
                guard let page = s.index[k] else {
                    s.stats.misses += 1
                    break
                }
                out.append(s.slabs[page / pagesPerSlab].read(page: page % pagesPerSlab))
                s.policy.accessed(k)
                s.stats.hits += 1
                s.stats.bytesOut += pageSize
            }
            return out
        }
    }

    /// How many blocks from the start of `keys` are present (no copy, no recency change).
    public func exists(_ keys: [BlockKey]) -> Int {
        state.withLock { s in
            var n = 0
            while n < keys.count && s.index[keys[n]] != nil { n += 1 }
            return n
        }
    }

    /// Drops blocks; returns how many were present.
    @discardableResult
    public func delete(_ keys: [BlockKey]) -> Int {
        state.withLock { s in
            var n = 0
            for k in keys {
                guard let page = s.index.removeValue(forKey: k) else { continue }
                s.policy.removed(k)
                s.free.append(page)
                s.stats.pagesUsed -= 1
                n += 1
            }
            return n
        }
    }

    /// A free page: a freed one, a new one (a new slab when the last is full), or an evicted one.
    private static func takePage(_ s: inout State, pageSize: Int, capacity: Int, perSlab: Int) -> Int? {
        if let p = s.free.popLast() { return p }
        if s.stats.pagesAllocated < capacity {
            let page = s.stats.pagesAllocated
            if page / perSlab >= s.slabs.count {
                let pages = min(perSlab, capacity - page)
                s.slabs.append(PageSlab(pageSize: pageSize, pages: pages))
            }
            s.stats.pagesAllocated += 1
            return page
        }
        guard let victim = s.policy.evict(), let page = s.index.removeValue(forKey: victim) else { return nil }
        s.stats.evictions += 1
        s.stats.pagesUsed -= 1
        return page
    }
}

/// Why a KV-cache call was refused.
public enum KVCacheError: Error, Sendable, Equatable, CustomStringConvertible {
    case badSize(expected: Int, got: Int)

    public var description: String {
        switch self {
        case .badSize(let e, let g): return "block of \(g) bytes; this cache's blocks are \(e) bytes"
        }
    }
}
