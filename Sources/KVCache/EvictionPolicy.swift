import KVProtocol

/// Decides which cached block goes when the cache is full. Implementations
/// track keys only (the cache owns the data). Not thread-safe on their own:
/// the cache calls them under its lock.
public protocol EvictionPolicy {
    /// A new key was stored.
    mutating func inserted(_ key: BlockKey)
    /// A stored key was read.
    mutating func accessed(_ key: BlockKey)
    /// A stored key was deleted by the owner (not evicted).
    mutating func removed(_ key: BlockKey)
    /// Picks and forgets the next victim; nil when empty.
    mutating func evict() -> BlockKey?
    var count: Int { get }
}

/// Which policy, by name (command-line and config spelling).
public enum EvictionPolicyKind: String, Sendable, CaseIterable {
    case lru, fifo, s3fifo
}

/// A doubly linked list of keys over arrays (O(1) push, remove, pop; no
/// allocation per operation once warm). Head = newest.
struct KeyList {
    private var keys: [BlockKey] = []
    private var prev: [Int32] = []
    private var next: [Int32] = []
    private var free: [Int32] = []
    private var head: Int32 = -1
    private var tail: Int32 = -1
    private(set) var count = 0

    /// Inserts at the head; returns the node id.
    mutating func pushHead(_ k: BlockKey) -> Int32 {
        let id: Int32
        if let f = free.popLast() {
            id = f
            keys[Int(id)] = k
        } else {
            id = Int32(keys.count)
            keys.append(k)
            prev.append(-1)
            next.append(-1)
        }
        prev[Int(id)] = -1
        next[Int(id)] = head
        if head >= 0 { prev[Int(head)] = id }
        head = id
        if tail < 0 { tail = id }
        count += 1
        return id
    }

    mutating func remove(_ id: Int32) {
        let p = prev[Int(id)], n = next[Int(id)]
        if p >= 0 { next[Int(p)] = n } else { head = n }
        if n >= 0 { prev[Int(n)] = p } else { tail = p }
        free.append(id)
        count -= 1
    }

    var tailNode: Int32? { tail >= 0 ? tail : nil }
    func key(_ id: Int32) -> BlockKey { keys[Int(id)] }
}

/// One queue of keys, newest at the head, the tail evicted: LRU when reads
/// move a key to the head, FIFO when they do not.
public struct QueuePolicy: EvictionPolicy {
    public let promotesOnAccess: Bool
    private var list = KeyList()
    private var nodes: [BlockKey: Int32] = [:]

    public init(promotesOnAccess: Bool) {
        self.promotesOnAccess = promotesOnAccess
    }

    public var count: Int { list.count }

    public mutating func inserted(_ key: BlockKey) {
        if let n = nodes[key] {
            guard promotesOnAccess else { return }
            list.remove(n)
        }
        nodes[key] = list.pushHead(key)
    }

    public mutating func accessed(_ key: BlockKey) {
        guard promotesOnAccess, let n = nodes[key] else { return }
        list.remove(n)
        nodes[key] = list.pushHead(key)
    }

    public mutating func removed(_ key: BlockKey) {
        if let n = nodes.removeValue(forKey: key) { list.remove(n) }
    }

    public mutating func evict() -> BlockKey? {
        guard let t = list.tailNode else { return nil }
        let k = list.key(t)
        list.remove(t)
        nodes[k] = nil
        return k
    }
}

extension QueuePolicy {
    /// Least recently used.
    public static var lru: QueuePolicy { QueuePolicy(promotesOnAccess: true) }
    /// First in, first out: insertion order only; reads change nothing.
    public static var fifo: QueuePolicy { QueuePolicy(promotesOnAccess: false) }
}

/// S3-FIFO (Yang et al., SOSP 2023): a small FIFO for new keys, a main FIFO
/// with CLOCK-style second chances, and a ghost FIFO of recently evicted
/// keys. A key read `promotionThreshold` times while in the small queue moves
/// to main when it reaches the small queue's tail; a key re-inserted while
/// still a ghost goes straight to main. Frequencies cap at 3. The ghost queue
/// is bounded (at most as many keys as the main queue's capacity), unlike the
/// reference framework's.
public struct S3FIFOPolicy: EvictionPolicy {
    public let capacity: Int
    public let smallCapacity: Int
    public let promotionThreshold: Int
    private var small = KeyList()
    private var main = KeyList()
    private var ghost = KeyList()
    private var where_: [BlockKey: (inSmall: Bool, node: Int32)] = [:]
    private var freq: [BlockKey: UInt8] = [:]
    private var ghosts: [BlockKey: Int32] = [:]

    /// `capacity` in blocks; `smallRatio` of it for the small queue (0.1 in the paper).
    public init(capacity: Int, smallRatio: Double = 0.1, promotionThreshold: Int = 1) {
        precondition(capacity > 0 && smallRatio > 0 && smallRatio < 1 && (1...3).contains(promotionThreshold))
        self.capacity = capacity
        self.smallCapacity = max(1, Int((Double(capacity) * smallRatio).rounded()))
        self.promotionThreshold = promotionThreshold
    }

    public var count: Int { small.count + main.count }
    public var ghostCount: Int { ghost.count }
    var ghostCapacity: Int { max(1, capacity - smallCapacity) }

    public mutating func inserted(_ key: BlockKey) {
        guard where_[key] == nil else { return }
        if let g = ghosts.removeValue(forKey: key) {
            ghost.remove(g)
            where_[key] = (false, main.pushHead(key))
        } else {
            where_[key] = (true, small.pushHead(key))
        }
        freq[key] = 0
    }

    public mutating func accessed(_ key: BlockKey) {
        guard let f = freq[key] else { return }
        freq[key] = min(f + 1, 3)
    }

    public mutating func removed(_ key: BlockKey) {
        guard let w = where_.removeValue(forKey: key) else { return }
        if w.inSmall { small.remove(w.node) } else { main.remove(w.node) }
        freq[key] = nil
    }

    public mutating func evict() -> BlockKey? {
        while count > 0 {
            if small.count >= smallCapacity || main.count == 0 {
                if let k = evictSmall() { return k }
            } else if let k = evictMain() {
                return k
            }
        }
        return nil
    }

    /// Small tail: promote a key read often enough, else evict it into the ghost queue.
    private mutating func evictSmall() -> BlockKey? {
        while let t = small.tailNode {
            let k = small.key(t)
            small.remove(t)
            if Int(freq[k] ?? 0) >= promotionThreshold {
                freq[k] = 0
                where_[k] = (false, main.pushHead(k))
                continue
            }
            where_[k] = nil
            freq[k] = nil
            ghosts[k] = ghost.pushHead(k)
            while ghost.count > ghostCapacity, let g = ghost.tailNode {
                ghosts[ghost.key(g)] = nil
                ghost.remove(g)
            }
            return k
        }
        return nil
    }

    /// Main tail: a key with credit is reinserted with one less; else evicted.
    private mutating func evictMain() -> BlockKey? {
        while let t = main.tailNode {
            let k = main.key(t)
            main.remove(t)
            let f = freq[k] ?? 0
            if f > 0 {
                freq[k] = f - 1
                where_[k] = (false, main.pushHead(k))
                continue
            }
            where_[k] = nil
            freq[k] = nil
            return k
        }
        return nil
    }
}

/// A policy chosen at run time.
public func makeEvictionPolicy(_ kind: EvictionPolicyKind, capacity: Int) -> any EvictionPolicy {
    switch kind {
    case .lru: return QueuePolicy.lru
    case .fifo: return QueuePolicy.fifo
    case .s3fifo: return S3FIFOPolicy(capacity: capacity)
    }
}
