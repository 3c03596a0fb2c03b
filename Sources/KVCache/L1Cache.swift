import HostMemory
import KVProtocol
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
    /// Pages ever handed out (the memory actually committed; the pool is sparse).
    public var pagesAllocated = 0
}

/// The L1 tier for in-process use: a `BlockStore` over a shared-memory page
/// pool (a sparse memfd, so memory is committed only as pages are first
/// written), with copies in and out. Safe to share between threads: the
/// store's bookkeeping is under a lock, and the copies run outside it on
/// pages that a reservation or a lease keeps to the caller.
///
/// The node agent uses the same store and pool, but lets engines copy the
/// pages themselves through the shared mapping.
public final class L1Cache: Sendable {
    public let pageSize: Int
    public let capacityPages: Int
    public let memory: SharedPages
    private let store: Mutex<BlockStore>

    /// `capacityBytes` is rounded down to whole pages.
    public init(pageSize: Int, capacityBytes: Int, policy: EvictionPolicyKind = .s3fifo) throws(SharedPages.Failure) {
        precondition(pageSize > 0 && capacityBytes >= pageSize, "capacity must hold at least one page")
        self.pageSize = pageSize
        self.capacityPages = capacityBytes / pageSize
        memory = try SharedPages(name: "switchboard-l1", pageSize: pageSize, pages: capacityPages)
        store = Mutex(BlockStore(pages: capacityPages, policy: policy))
    }

    public var stats: L1CacheStats {
        let s = store.withLock { $0.stats }
        return L1CacheStats(hits: s.hits, misses: s.misses, puts: s.puts, evictions: s.evictions,
                            bytesIn: s.puts * pageSize, bytesOut: s.hits * pageSize, pagesUsed: s.pagesUsed,
                            pagesAllocated: s.pagesTouched)
    }

    /// Stores blocks (key, exactly `pageSize` bytes each), evicting as
    /// needed. Keys already present are left as they are. Returns how many
    /// were stored.
    @discardableResult
    public func put(_ blocks: [(key: BlockKey, bytes: [UInt8])]) throws(KVCacheError) -> Int {
        for b in blocks where b.bytes.count != pageSize {
            throw .badSize(expected: pageSize, got: b.bytes.count)
        }
        let r = store.withLock { $0.reserve(blocks.map(\.key), owner: 0, expires: .max) }
        guard r.id != 0 else { return 0 }
        for (b, page) in zip(blocks, r.pages) where page >= 0 {
            memory.write(page: Int(page), from: b.bytes)
        }
        return store.withLock { s in (try? s.commit(r.id, owner: 0)) ?? 0 }
    }

    /// The longest run of present blocks from the start of `keys`, copied out.
    public func get(_ keys: [BlockKey]) -> [[UInt8]] {
        withLease(keys) { pages in pages.map { memory.read(page: Int($0)) } } ?? []
    }

    /// The longest run of present blocks, copied into `buffers` (one
    /// page-sized buffer per key, reused). Returns how many were filled.
    public func get(_ keys: [BlockKey], into buffers: inout [[UInt8]]) -> Int {
        precondition(buffers.count >= keys.count && buffers.allSatisfy { $0.count == pageSize }, "one page-sized buffer per key")
        return withLease(keys) { pages in
            for (i, p) in pages.enumerated() { memory.read(page: Int(p), into: &buffers[i]) }
            return pages.count
        } ?? 0
    }

    /// Pins the longest present prefix of `keys` while `body` copies its pages; nil on a miss.
    private func withLease<R>(_ keys: [BlockKey], _ body: ([Int32]) -> R) -> R? {
        let l = store.withLock { $0.lease(keys, owner: 0, expires: .max) }
        guard l.id != 0 else { return nil }
        defer { store.withLock { s in try? s.release(l.id, owner: 0) } }
        return body(l.pages)
    }

    /// How many blocks from the start of `keys` are present (no copy, no recency change).
    public func exists(_ keys: [BlockKey]) -> Int {
        store.withLock { $0.exists(keys) }
    }

    /// Drops blocks; returns how many were present.
    @discardableResult
    public func delete(_ keys: [BlockKey]) -> Int {
        store.withLock { $0.delete(keys) }
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
