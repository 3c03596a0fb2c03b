import KVCache
import KVProtocol

/// Keys-only cache model for policy studies and tests: which blocks would be
/// hits with a given policy and capacity. No data is stored.
public struct CacheSimulator {
    public let capacity: Int
    private var policy: any EvictionPolicy
    private var present: Set<BlockKey> = []
    public private(set) var hits = 0
    public private(set) var lookups = 0

    public init(policy: any EvictionPolicy, capacity: Int) {
        self.policy = policy
        self.capacity = capacity
    }

    public var hitRatio: Double { lookups == 0 ? 0 : Double(hits) / Double(lookups) }

    /// One block access: a hit is read, a miss is stored (evicting first when full).
    @discardableResult
    public mutating func access(_ key: BlockKey) -> Bool {
        lookups += 1
        if present.contains(key) {
            hits += 1
            policy.accessed(key)
            return true
        }
        store(key)
        return false
    }

    /// One request's blocks with prefix semantics, as an engine sees them:
    /// the hit is the longest run of present blocks from the start; the rest
    /// is recomputed and stored. Returns the number of blocks hit.
    @discardableResult
    public mutating func request(_ keys: [BlockKey]) -> Int {
        var run = 0
        while run < keys.count && present.contains(keys[run]) {
            policy.accessed(keys[run])
            run += 1
        }
        for k in keys[run...] {
            if present.contains(k) { policy.accessed(k) } else { store(k) }
        }
        hits += run
        lookups += keys.count
        return run
    }

    private mutating func store(_ key: BlockKey) {
        while present.count >= capacity, let victim = policy.evict() { present.remove(victim) }
        present.insert(key)
        policy.inserted(key)
    }
}
