import EventLoop
import Foundation
import HostMemory
import KVCache
import KVL2Client
import KVMembership
import KVProtocol
import Metrics
import Synchronization

/// The agent's state, confined to its loop (the invariant behind
/// `@unchecked Sendable`): the block store, the connections, the expiry timer.
final class AgentCore: @unchecked Sendable {
    let configuration: KVAgentConfiguration
    let pool: SharedPages
    let loop: EventLoop
    let store: BlockStore
    private var connections: [Int: AgentConnection] = [:]
    private var nextOwner = 1
    private var expiryTimer: (TimerID, UInt64)?
    var requests = 0
    var errors = 0
    /// The agent's time per request, by op (decode, store work, reply).
    let opDurations: [AgentProtocol.Op: Histogram]
    /// The same, by op name in protocol order (the stats copy holds the references; read when rendered).
    let opDurationList: [(String, Histogram)]
    /// The latest counters, for readers off the loop (copied after every
    /// batch of requests; rendered as text only when someone asks).
    let statsSnapshot: Mutex<AgentStats>
    /// The remote tier, when configured (on this loop).
    var l2: L2Tier?
    /// Where L2 members come from when they register in Redis (kept alive here).
    var discovery: RedisDiscovery?

    init(configuration: KVAgentConfiguration, pool: SharedPages, loop: EventLoop) {
        self.configuration = configuration
        self.pool = pool
        self.loop = loop
        store = BlockStore(pages: pool.pages, policy: configuration.policy)
        var byOp: [AgentProtocol.Op: Histogram] = [:], list: [(String, Histogram)] = []
        for op in AgentProtocol.Op.allCases {
            let h = Histogram(bounds: [0.000_001, 0.000_002, 0.000_005, 0.000_01, 0.000_02, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.01])
            byOp[op] = h
            list.append(("\(op)", h))
        }
        opDurations = byOp
        opDurationList = list
        statsSnapshot = Mutex(AgentStats(store: store.stats, pages: pool.pages, pageSize: pool.pageSize,
                                         policy: configuration.policy.rawValue))
    }

    func accept(_ sock: StreamSocket) {
        let owner = nextOwner
        nextOwner += 1
        let c = AgentConnection(core: self, socket: sock, owner: owner)
        connections[owner] = c
        sock.delegate = c
        publishStats()
    }

    func closed(_ owner: Int) {
        connections[owner] = nil
        store.dropOwner(owner)
        publishStats()
    }

    /// Lease expiry for a call: its own (capped) or the default.
    func expiry(leaseMillis: UInt32) -> UInt64 {
        let ms = leaseMillis == 0 ? configuration.defaultLeaseMillis : min(leaseMillis, configuration.maxLeaseMillis)
        return monotonicNanos() &+ UInt64(ms) * 1_000_000
    }

    /// Keeps one timer armed for the earliest outstanding expiry. A call that
    /// just handed out a ticket passes its expiry (no scan of the others);
    /// the timer itself rescans once when it fires.
    func armExpiry(_ candidate: UInt64? = nil) {
        guard let due = candidate ?? store.nextExpiry else { return }
        if let (t, at) = expiryTimer {
            if at <= due { return }
            loop.cancel(t)
        }
        let now = monotonicNanos()
        let id = loop.schedule(afterNanos: due > now ? due - now : 0) { [self] in
            expiryTimer = nil
            let n = store.expire(now: monotonicNanos())
            if n > 0 {
                FileHandle.standardError.write(Data("kv-agent: reclaimed \(n) expired reservation(s)/lease(s)\n".utf8))
            }
            publishStats()
            armExpiry()
        }
        expiryTimer = (id, due)
    }

    /// When an L2 read for a request must be answered: the request's own
    /// deadline (absolute, monotonic) or the tier's read timeout, whichever is sooner.
    func l2Deadline(_ requestDeadline: UInt64) -> UInt64 {
        let own = monotonicNanos() &+ (l2?.configuration.readTimeoutMillis ?? 0) * 1_000_000
        return requestDeadline == 0 ? own : min(own, requestDeadline)
    }

    /// Stores blocks read from L2 (`blocks[i]` is `keys[i]`'s) in L1 under
    /// the agent's own short reservation; returns how many from the start
    /// are in L1 afterwards. Blocks of another size are not stored.
    @discardableResult
    func fill(_ keys: [BlockKey], _ blocks: [CacheProtocol.Block]) -> Int {
        var m = 0
        while m < blocks.count, blocks[m].bytes.count == pool.pageSize { m += 1 }
        guard m > 0 else { return 0 }
        let ks = Array(keys[0..<m])
        let t = store.reserve(ks, owner: 0, expires: monotonicNanos() &+ 1_000_000_000)
        for (i, p) in t.pages.enumerated() where p >= 0 { pool.write(page: Int(p), from: blocks[i].bytes) }
        if t.id != 0 { _ = try? store.commit(t.id, owner: 0) }
        return store.exists(ks)
    }

    func publishStats() {
        var s = AgentStats(store: store.stats, pages: pool.pages, pageSize: pool.pageSize, policy: configuration.policy.rawValue,
                           connections: connections.count, requests: requests, errors: errors)
        s.durations = opDurationList
        if let l2 {
            s.l2 = l2.stats
            s.l2Members = l2.memberStates.map { ($0.id, $0.up) }
            s.l2Queued = l2.queuedWrites
        }
        statsSnapshot.withLock { $0 = s }
    }
}
