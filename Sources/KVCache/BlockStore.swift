import KVProtocol

/// Counters of a block store.
public struct BlockStoreStats: Sendable, Equatable {
    public var hits = 0
    public var misses = 0
    public var puts = 0
    public var evictions = 0
    public var expired = 0
    public var pagesUsed = 0
    public var pagesTouched = 0
    public var reservations = 0
    public var leases = 0
}

/// Why the store refused a call.
public enum BlockStoreError: Error, Sendable, Equatable, CustomStringConvertible {
    /// No reservation or lease with this id for this owner (never made, already
    /// finished, or expired and reclaimed).
    case unknownID(UInt64)

    public var description: String {
        switch self {
        case .unknownID(let id): return "no reservation or lease \(id) (finished, expired or never made)"
        }
    }
}

/// The index and page bookkeeping of the L1 tier, separate from the memory
/// itself so that writers and readers can copy pages directly (shared memory,
/// DMA) while the store only hands out page numbers:
///
/// - `reserve` gives free pages for keys not yet stored; the writer fills
///   them, then `commit` publishes them (until then nobody can read them).
/// - `lease` pins the pages of the longest stored prefix of keys; the reader
///   copies them out, then `release`s. A pinned page is never evicted or
///   reused; a key deleted while pinned frees its page at the last release.
/// - Reservations and leases belong to an owner (a connection) and carry an
///   expiry: `dropOwner` (the connection went away) and `expire` (time ran
///   out) reclaim them, so a client killed mid-transfer leaks nothing and
///   never publishes a half-written block.
///
/// Eviction: committed, unpinned keys are in the eviction policy; a page is
/// taken from it only when no free page is left. Pinning takes a key out of
/// the policy and the last release puts it back as just accessed.
///
/// Not thread-safe: the agent drives it from one event loop (and `L1Cache`
/// under a lock).
public final class BlockStore {
    public let pages: Int
    public private(set) var stats = BlockStoreStats()

    private enum PageState: UInt8 { case free, reserved, stored, deleted }

    private var state: [PageState]
    private var keyOf: [BlockKey]
    private var pins: [Int32]
    private var freePages: [Int32] = []
    private var fresh: Int32 = 0               // pages below this have been handed out at least once
    private var index: [BlockKey: Int32] = [:]
    private var writing: Set<BlockKey> = []    // keys reserved and not yet committed
    private var policy: any EvictionPolicy

    private struct Ticket {
        var owner: Int
        var expires: UInt64
        var keys: [BlockKey]
        var pages: [Int32]
    }
    private var reservations: [UInt64: Ticket] = [:]
    private var leases: [UInt64: Ticket] = [:]
    private var nextID: UInt64 = 1

    public init(pages: Int, policy: EvictionPolicyKind) {
        precondition(pages > 0)
        self.pages = pages
        state = Array(repeating: .free, count: pages)
        keyOf = Array(repeating: BlockKey(high: 0, low: 0), count: pages)
        pins = Array(repeating: 0, count: pages)
        self.policy = makeEvictionPolicy(policy, capacity: pages)
    }

    /// Pages for the keys not stored or being written: -1 for a key that
    /// needs no write, -2 when no page could be freed (everything else is
    /// reserved or pinned). The id is 0 when nothing was reserved.
    public func reserve(_ keys: [BlockKey], owner: Int, expires: UInt64) -> (id: UInt64, pages: [Int32]) {
        var out: [Int32] = []
        out.reserveCapacity(keys.count)
        var ticket = Ticket(owner: owner, expires: expires, keys: [], pages: [])
        for k in keys {
            if index[k] != nil || writing.contains(k) || ticket.keys.contains(k) {
                out.append(-1)
                continue
            }
            guard let p = takePage() else {
                out.append(-2)
                continue
            }
            state[Int(p)] = .reserved
            keyOf[Int(p)] = k
            writing.insert(k)
            ticket.keys.append(k)
            ticket.pages.append(p)
            out.append(p)
        }
        if ticket.pages.isEmpty { return (0, out) }
        let id = nextID
        nextID &+= 1
        reservations[id] = ticket
        stats.reservations = reservations.count
        return (id, out)
    }

    /// Publishes a reservation's pages; returns how many keys were stored.
    public func commit(_ id: UInt64, owner: Int) throws(BlockStoreError) -> Int {
        guard let t = reservations[id], t.owner == owner else { throw .unknownID(id) }
        reservations[id] = nil
        stats.reservations = reservations.count
        for (k, p) in zip(t.keys, t.pages) {
            writing.remove(k)
            state[Int(p)] = .stored
            index[k] = p
            policy.inserted(k)
            stats.puts += 1
            stats.pagesUsed += 1
        }
        return t.keys.count
    }

    /// Drops a reservation; its pages go back to the free list unpublished.
    public func abort(_ id: UInt64, owner: Int) throws(BlockStoreError) {
        guard let t = reservations[id], t.owner == owner else { throw .unknownID(id) }
        dropReservation(id, t)
    }

    /// Pins the longest stored prefix of `keys`; returns its pages (empty: a miss, id 0).
    public func lease(_ keys: [BlockKey], owner: Int, expires: UInt64) -> (id: UInt64, pages: [Int32]) {
        var ticket = Ticket(owner: owner, expires: expires, keys: [], pages: [])
        for k in keys {
            guard let p = index[k] else {
                stats.misses += 1
                break
            }
            if pins[Int(p)] == 0 { policy.removed(k) }
            pins[Int(p)] += 1
            ticket.keys.append(k)
            ticket.pages.append(p)
            stats.hits += 1
        }
        if ticket.pages.isEmpty { return (0, []) }
        let id = nextID
        nextID &+= 1
        leases[id] = ticket
        stats.leases = leases.count
        return (id, ticket.pages)
    }

    /// Unpins a lease's pages.
    public func release(_ id: UInt64, owner: Int) throws(BlockStoreError) {
        guard let t = leases[id], t.owner == owner else { throw .unknownID(id) }
        dropLease(id, t)
    }

    /// The page holding `key`'s committed block, if stored (no pin, no
    /// recency change). The bytes stay put until the key is evicted or
    /// deleted, which happens only on the caller's thread.
    public func page(of key: BlockKey) -> Int32? { index[key] }

    /// The keys a reservation will publish (nil for an unknown id or another owner's).
    public func reservedKeys(_ id: UInt64, owner: Int) -> [BlockKey]? {
        guard let t = reservations[id], t.owner == owner else { return nil }
        return t.keys
    }

    /// How many keys from the start are stored (no pin, no recency change).
    public func exists(_ keys: [BlockKey]) -> Int {
        var n = 0
        while n < keys.count, index[keys[n]] != nil { n += 1 }
        return n
    }

    /// Marks the stored keys among `keys` as just used, as a read would;
    /// returns how many from the start are stored.
    public func touch(_ keys: [BlockKey]) -> Int {
        var n = 0
        var prefix = true
        for k in keys {
            guard let p = index[k] else { prefix = false; continue }
            if pins[Int(p)] == 0 { policy.accessed(k) }
            if prefix { n += 1 }
        }
        return n
    }

    /// Removes keys; a pinned page is freed at its last release. Returns how many were stored.
    public func delete(_ keys: [BlockKey]) -> Int {
        var n = 0
        for k in keys {
            guard let p = index.removeValue(forKey: k) else { continue }
            n += 1
            stats.pagesUsed -= 1
            if pins[Int(p)] > 0 {
                state[Int(p)] = .deleted
            } else {
                policy.removed(k)
                freePage(p)
            }
        }
        return n
    }

    /// Reclaims everything an owner holds (its connection closed).
    public func dropOwner(_ owner: Int) {
        for (id, t) in reservations where t.owner == owner { dropReservation(id, t) }
        for (id, t) in leases where t.owner == owner { dropLease(id, t) }
    }

    /// Reclaims reservations and leases whose expiry is at or before `now`;
    /// returns how many.
    @discardableResult
    public func expire(now: UInt64) -> Int {
        var n = 0
        for (id, t) in reservations where t.expires <= now { dropReservation(id, t); n += 1 }
        for (id, t) in leases where t.expires <= now { dropLease(id, t); n += 1 }
        stats.expired += n
        return n
    }

    /// The earliest expiry of anything outstanding.
    public var nextExpiry: UInt64? {
        var best: UInt64?
        for t in reservations.values where best.map({ t.expires < $0 }) ?? true { best = t.expires }
        for t in leases.values where best.map({ t.expires < $0 }) ?? true { best = t.expires }
        return best
    }

    /// True when every page is free or stored and nothing is pinned or reserved
    /// (the invariant after all clients are gone). For tests and the agent's stats.
    public var isQuiescent: Bool {
        reservations.isEmpty && leases.isEmpty && writing.isEmpty && pins.allSatisfy { $0 == 0 }
            && state.allSatisfy { $0 == .free || $0 == .stored }
            && stats.pagesUsed == index.count
            && freePages.count + index.count == Int(fresh)
    }

    // MARK: - pages

    private func takePage() -> Int32? {
        if let p = freePages.popLast() { return p }
        if Int(fresh) < pages {
            fresh += 1
            stats.pagesTouched = Int(fresh)
            return fresh - 1
        }
        guard let victim = policy.evict(), let p = index.removeValue(forKey: victim) else { return nil }
        stats.evictions += 1
        stats.pagesUsed -= 1
        return p
    }

    private func freePage(_ p: Int32) {
        state[Int(p)] = .free
        freePages.append(p)
    }

    private func dropReservation(_ id: UInt64, _ t: Ticket) {
        reservations[id] = nil
        stats.reservations = reservations.count
        for (k, p) in zip(t.keys, t.pages) {
            writing.remove(k)
            freePage(p)
        }
    }

    private func dropLease(_ id: UInt64, _ t: Ticket) {
        leases[id] = nil
        stats.leases = leases.count
        for (k, p) in zip(t.keys, t.pages) {
            pins[Int(p)] -= 1
            guard pins[Int(p)] == 0 else { continue }
            if state[Int(p)] == .deleted {
                freePage(p)
            } else if index[k] == p {
                policy.inserted(k)
                policy.accessed(k)
            }
        }
    }
}
