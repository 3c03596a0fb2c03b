import PodSnapshot
import Synchronization

/// Which pods hold which prefix blocks, as the gateway believes from its own
/// routing: every routed prompt's block keys are recorded for the pod it
/// went to. Bounded three ways, each mirroring how an engine forgets:
///
/// - **per pod**: at most `podCapacity(pod)` blocks per pod, least recently
///   used evicted first (the engine's free-block queue is LRU). A request's
///   blocks are touched last-first, so block 0 is the most recent and a
///   pod's tail blocks go before its prefixes, as in vLLM, which frees a
///   finished request's blocks in reverse order;
/// - **globally**: at most `maxEntries` block-pod entries (LRU across pods);
/// - **by age**: an entry not touched for `ttlSeconds` no longer matches and
///   is dropped.
///
/// One entry is 40 bytes in a slab plus its share of a key table
/// (`bytesPerEntry` reports the measured total). Lookups and updates take
/// one lock; a decision's lookup walks the prompt's keys once and allocates
/// only its result.
public final class PrefixIndex: Sendable {
    public struct Limits: Sendable, Equatable {
        public var maxEntries: Int
        public var ttlSeconds: Int
        /// Blocks one pod holds at most when the caller names no capacity.
        public var podCapacity: Int?
        public init(maxEntries: Int = 2_000_000, ttlSeconds: Int = 1200, podCapacity: Int? = nil) {
            self.maxEntries = max(1, maxEntries)
            self.ttlSeconds = max(1, ttlSeconds)
            self.podCapacity = podCapacity
        }
    }

    public let limits: Limits
    private let state: Mutex<Table>
    private let clock = ContinuousClock()
    private let origin: ContinuousClock.Instant

    public init(limits: Limits = Limits()) {
        self.limits = limits
        origin = clock.now
        state = Mutex(Table())
    }

    /// Seconds since the index was made (entries' timestamps).
    private var now: UInt32 { UInt32(clamping: (clock.now - origin).components.seconds) }

    /// For each of `pods`, how many of `keys` it holds from the first on
    /// (a chained key implies its predecessors, so the walk stops at the
    /// first block no candidate holds). `at` overrides the clock (tests).
    public func longestMatches(_ keys: [UInt64], pods: [PodEndpoint], at: UInt32? = nil) -> [Int] {
        let t = at ?? now
        let ttl = UInt32(clamping: limits.ttlSeconds)
        return state.withLock { $0.match(keys, pods: pods, now: t, ttl: ttl) }
    }

    /// Records that `pod` now holds `keys` (the prompt it was just sent),
    /// then evicts: the pod's least recent blocks beyond `capacity` (or the
    /// default), the globally least recent beyond `maxEntries`, and entries
    /// older than the TTL.
    public func record(_ keys: [UInt64], pod: PodEndpoint, capacity: Int? = nil, at: UInt32? = nil) {
        let t = at ?? now
        let cap = capacity ?? limits.podCapacity
        state.withLock { tab in
            tab.touch(keys, pod: pod.id, now: t)
            if let cap { tab.trim(pod: pod.id, to: max(0, cap)) }
            tab.trimGlobal(to: limits.maxEntries, now: t, ttl: UInt32(clamping: limits.ttlSeconds))
        }
    }

    /// Drops entries older than the TTL (also done by every `record`).
    public func expire(at: UInt32? = nil) {
        let t = at ?? now
        state.withLock { $0.trimGlobal(to: limits.maxEntries, now: t, ttl: UInt32(clamping: limits.ttlSeconds)) }
    }

    /// What recording `incoming` new blocks at `pod` would push out of its
    /// `capacity`: how many of its least recent blocks, and how often those
    /// were reused by routed requests since they were recorded (their hits).
    public func evictionCost(pod: PodEndpoint, incoming: Int, capacity: Int) -> (blocks: Int, hits: Int) {
        state.withLock { t in
            guard Int(pod.id) < t.pods.count else { return (0, 0) }
            var need = t.pods[Int(pod.id)].count + incoming - capacity
            guard need > 0 else { return (0, 0) }
            var e = t.pods[Int(pod.id)].tail
            var blocks = 0, hits = 0
            while need > 0 && e >= 0 {
                hits += Int(t.entries[Int(e)].hits)
                blocks += 1
                need -= 1
                e = t.entries[Int(e)].prev
            }
            return (blocks, hits)
        }
    }

    /// The blocks `pod` holds, most recent first, at most `limit`, skipping
    /// entries past the TTL: what a replica republishes when a peer missed
    /// its insertions (recording the list elsewhere rebuilds the same
    /// recency order, since `record` touches its keys last-first).
    public func keys(of pod: PodEndpoint, limit: Int, at: UInt32? = nil) -> [UInt64] {
        let t = at ?? now
        let ttl = UInt32(clamping: limits.ttlSeconds)
        return state.withLock { tab in
            guard Int(pod.id) < tab.pods.count else { return [] }
            var out: [UInt64] = []
            out.reserveCapacity(min(limit, tab.pods[Int(pod.id)].count))
            var e = tab.pods[Int(pod.id)].head
            while e >= 0 && out.count < limit {
                let x = tab.entries[Int(e)]
                if t &- x.stamp < ttl { out.append(x.key) }
                e = x.next
            }
            return out
        }
    }

    /// Block-pod entries held.
    public var count: Int { state.withLock { $0.count } }

    /// Blocks held for one pod.
    public func count(of pod: PodEndpoint) -> Int {
        state.withLock { Int(pod.id) < $0.pods.count ? $0.pods[Int(pod.id)].count : 0 }
    }

    /// Memory the index holds per entry, measured from its tables'
    /// capacities (slab, free slots included, and key table); 0 when empty.
    public var bytesPerEntry: Double {
        state.withLock { t in
            guard t.count > 0 else { return 0 }
            let slab = t.entries.capacity * MemoryLayout<Entry>.stride
            let keys = t.heads.capacity * (MemoryLayout<UInt64>.stride + MemoryLayout<Int32>.stride) + t.heads.capacity / 8
            let pods = t.pods.capacity * MemoryLayout<PodList>.stride + t.mark.capacity * 8
            return Double(slab + keys + pods) / Double(t.count)
        }
    }
}

/// One block held by one pod.
struct Entry {
    var key: UInt64
    var pod: Int32
    var stamp: UInt32
    /// Routed requests that found this block already here (fills the
    /// stride's padding: the entry stays 40 bytes).
    var hits: UInt32
    /// The pod's LRU list (prev: more recent).
    var prev: Int32
    var next: Int32
    /// The global LRU list.
    var gprev: Int32
    var gnext: Int32
    /// The next entry with the same key (another pod holding the block).
    var sibling: Int32
}

struct PodList {
    var head: Int32 = -1
    var tail: Int32 = -1
    var count = 0
}

struct Table {
    var heads: [UInt64: Int32] = [:]
    var entries: [Entry] = []
    var free: Int32 = -1
    var pods: [PodList] = []
    var gHead: Int32 = -1
    var gTail: Int32 = -1
    var count = 0
    /// Matching scratch, indexed by pod id: the generation that marked the
    /// pod a candidate, and its matched blocks.
    var mark: [UInt32] = []
    var matched: [Int32] = []
    var generation: UInt32 = 0

    mutating func ensurePod(_ id: Int32) {
        let n = Int(id) + 1
        if pods.count < n {
            pods.append(contentsOf: repeatElement(PodList(), count: n - pods.count))
            mark.append(contentsOf: repeatElement(0, count: n - mark.count))
            matched.append(contentsOf: repeatElement(0, count: n - matched.count))
        }
    }

    mutating func match(_ keys: [UInt64], pods candidates: [PodEndpoint], now: UInt32, ttl: UInt32) -> [Int] {
        generation &+= 1
        if generation == 0 {
            for i in mark.indices { mark[i] = 0 }
            generation = 1
        }
        let g = generation
        for p in candidates {
            ensurePod(p.id)
            mark[Int(p.id)] = g
            matched[Int(p.id)] = 0
        }
        for (i, k) in keys.enumerated() {
            guard var e = heads[k] else { break }
            var advanced = false
            while e >= 0 {
                let x = entries[Int(e)]
                let p = Int(x.pod)
                if mark[p] == g && matched[p] == Int32(i) && now &- x.stamp < ttl {
                    matched[p] = Int32(i + 1)
                    advanced = true
                }
                e = x.sibling
            }
            if !advanced { break }
        }
        return candidates.map { Int(matched[Int($0.id)]) }
    }

    mutating func touch(_ keys: [UInt64], pod: Int32, now: UInt32) {
        ensurePod(pod)
        for k in keys.reversed() {
            var e = heads[k] ?? -1
            while e >= 0 && entries[Int(e)].pod != pod { e = entries[Int(e)].sibling }
            if e >= 0 {
                entries[Int(e)].stamp = now
                entries[Int(e)].hits &+= 1
                unlinkPod(e)
                unlinkGlobal(e)
            } else {
                e = allocate(Entry(key: k, pod: pod, stamp: now, hits: 0, prev: -1, next: -1, gprev: -1, gnext: -1,
                                   sibling: heads[k] ?? -1))
                heads[k] = e
                pods[Int(pod)].count += 1
                count += 1
            }
            pushPod(e)
            pushGlobal(e)
        }
    }

    mutating func trim(pod: Int32, to capacity: Int) {
        while pods[Int(pod)].count > capacity, pods[Int(pod)].tail >= 0 { evict(pods[Int(pod)].tail) }
    }

    mutating func trimGlobal(to maxEntries: Int, now: UInt32, ttl: UInt32) {
        while gTail >= 0 && (count > maxEntries || now &- entries[Int(gTail)].stamp >= ttl) { evict(gTail) }
    }

    private mutating func allocate(_ x: Entry) -> Int32 {
        if free >= 0 {
            let e = free
            free = entries[Int(e)].next
            entries[Int(e)] = x
            return e
        }
        entries.append(x)
        return Int32(entries.count - 1)
    }

    private mutating func evict(_ e: Int32) {
        let x = entries[Int(e)]
        unlinkPod(e)
        unlinkGlobal(e)
        // Out of the key's sibling chain (a few pods at most).
        if heads[x.key] == e {
            if x.sibling >= 0 { heads[x.key] = x.sibling } else { heads.removeValue(forKey: x.key) }
        } else if var p = heads[x.key] {
            while entries[Int(p)].sibling >= 0 && entries[Int(p)].sibling != e { p = entries[Int(p)].sibling }
            if entries[Int(p)].sibling == e { entries[Int(p)].sibling = x.sibling }
        }
        pods[Int(x.pod)].count -= 1
        count -= 1
        entries[Int(e)].next = free
        entries[Int(e)].sibling = -1
        free = e
    }

    private mutating func pushPod(_ e: Int32) {
        let p = Int(entries[Int(e)].pod)
        entries[Int(e)].prev = -1
        entries[Int(e)].next = pods[p].head
        if pods[p].head >= 0 { entries[Int(pods[p].head)].prev = e }
        pods[p].head = e
        if pods[p].tail < 0 { pods[p].tail = e }
    }

    private mutating func unlinkPod(_ e: Int32) {
        let x = entries[Int(e)]
        let p = Int(x.pod)
        if x.prev >= 0 { entries[Int(x.prev)].next = x.next } else if pods[p].head == e { pods[p].head = x.next }
        if x.next >= 0 { entries[Int(x.next)].prev = x.prev } else if pods[p].tail == e { pods[p].tail = x.prev }
        entries[Int(e)].prev = -1
        entries[Int(e)].next = -1
    }

    private mutating func pushGlobal(_ e: Int32) {
        entries[Int(e)].gprev = -1
        entries[Int(e)].gnext = gHead
        if gHead >= 0 { entries[Int(gHead)].gprev = e }
        gHead = e
        if gTail < 0 { gTail = e }
    }

    private mutating func unlinkGlobal(_ e: Int32) {
        let x = entries[Int(e)]
        if x.gprev >= 0 { entries[Int(x.gprev)].gnext = x.gnext } else if gHead == e { gHead = x.gnext }
        if x.gnext >= 0 { entries[Int(x.gnext)].gprev = x.gprev } else if gTail == e { gTail = x.gprev }
        entries[Int(e)].gprev = -1
        entries[Int(e)].gnext = -1
    }
}
