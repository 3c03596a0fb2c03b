import EventLoop
import Foundation
import Synchronization
import HostMemory
import KVPlacement
import KVProtocol
import Metrics

/// Settings of an agent's L2 tier.
public struct L2Configuration: Sendable {
    /// Cache servers, `host:port` (an IPv4 literal, or a name resolved off the loop).
    public var members: [String] = []
    /// Copies of each block (the primary and the next distinct members on the ring).
    public var replicas = 2
    public var virtualNodes = HashRing.defaultVirtualNodes
    /// The longest a read (EXISTS or GET, failover included) may take; the
    /// caller's own deadline wins when it is sooner.
    public var readTimeoutMillis: UInt64 = 100
    public var writeTimeoutMillis: UInt64 = 2_000
    /// Health probe period; a member that fails a probe, or its connection,
    /// leaves the ring and is probed until it answers again.
    public var healthIntervalMillis: UInt64 = 500
    /// How often member host names are resolved again (pods change IPs).
    public var resolveIntervalMillis: UInt64 = 5_000
    /// Members also come from discovery (`setDiscovered`); `members` may then be empty.
    public var dynamicMembers = false
    /// Consecutive call timeouts that take a member out of the ring.
    public var failureThreshold = 3
    /// Blocks waiting to be written; beyond this, new writes are dropped (counted).
    public var writeQueueBlocks = 4_096
    /// Blocks per PUT.
    public var writeBatch = 8
    /// PUTs outstanding per member.
    public var writesInFlightPerMember = 2
    public init() {}
}

/// The agent's counters for its L2 tier.
public struct L2Stats: Sendable, Equatable {
    public var hits = 0          // blocks fetched from L2 (GET, PREFETCH); EXISTS answers are not counted
    public var misses = 0        // lookups that stopped short of the keys asked
    public var failovers = 0     // calls re-sent to the next replica
    public var timeouts = 0
    public var errors = 0
    public var corrupt = 0       // blocks whose bytes did not match their checksum (treated as misses)
    public var writesQueued = 0
    public var writesDropped = 0 // queue full
    public var blocksWritten = 0 // block copies acknowledged (replicas count once each)
    public var writeFailures = 0
    public var membersUp = 0
    public var members = 0
    public var ringChanges = 0
    public init() {}
}

/// The agent's side of the L2 tier, on the agent's loop: the members, the
/// ring over the healthy ones, reads with a deadline and failover to
/// replicas, the write-behind queue and the health probes. Every failure —
/// timeout, refused call, dead member, corrupt block — is a miss for the
/// caller, which then recomputes; nothing waits past its deadline.
/// Loop-confined (the invariant behind `@unchecked Sendable`).
public final class L2Tier: @unchecked Sendable {
    public let configuration: L2Configuration
    let loop: EventLoop
    private var members: [String: L2Member]
    /// Host names (member id, host) the resolver thread looks up.
    private let names = Mutex<[(String, String)]>([])
    public private(set) var ring: HashRing
    public private(set) var stats = L2Stats()
    /// Reads the blocks to write (the agent's pool): keys no longer stored are left out.
    private let source: ([BlockKey]) -> [(BlockKey, CacheProtocol.Block)]
    private var writeQueue: [BlockKey] = []
    private var writeHead = 0
    private var healthTimer: TimerID?
    /// Called on the loop when a member joins or leaves the ring.
    public var onRingChange: ((_ member: String, _ up: Bool, _ why: String) -> Void)?
    /// Called on the loop when counters or members changed outside a caller's
    /// request (write completions, probes): the agent republishes its stats.
    public var onStatsChange: (() -> Void)?

    private let resolving = Atomic<Bool>(false)

    public struct BadMember: Error, CustomStringConvertible {
        public let description: String
    }

    public init(configuration: L2Configuration, loop: EventLoop,
                source: @escaping ([BlockKey]) -> [(BlockKey, CacheProtocol.Block)]) throws(BadMember) {
        var ms: [String: L2Member] = [:]
        for m in configuration.members {
            ms[m] = try Self.member(m, loop: loop)
        }
        guard !ms.isEmpty || configuration.dynamicMembers else { throw BadMember(description: "no L2 members") }
        self.configuration = configuration
        self.loop = loop
        self.members = ms
        self.source = source
        ring = HashRing(members: [], virtualNodes: configuration.virtualNodes)
        stats.members = ms.count
        for m in ms.values {
            m.onFailure = { [unowned self] m, why in self.markDown(m, why) }
        }
    }

    private static func member(_ m: String, loop: EventLoop) throws(BadMember) -> L2Member {
        guard case .tcp(let host, let port)? = try? SocketAddress(parsing: m), port > 0, !host.contains(":") else {
            throw BadMember(description: "L2 member '\(m)' is not host:port")
        }
        return L2Member(id: m, host: host, port: port, loop: loop)
    }

    /// Members found by discovery (Redis): with the configured ones, the
    /// member set from now on. New members are probed at once and join the
    /// ring when they answer; members gone leave it. Call on the loop.
    public func setDiscovered(_ ids: [String]) {
        let want = Set(configuration.members).union(ids)
        var changed = false
        for (id, m) in members where !want.contains(id) {
            members[id] = nil
            m.disconnect("no longer a member")
            if m.up {
                m.up = false
                changed = true
                onRingChange?(id, false, "no longer registered")
            }
        }
        for id in want where members[id] == nil {
            guard let m = try? Self.member(id, loop: loop) else {
                onRingChange?(id, false, "ignored: not host:port")
                continue
            }
            m.onFailure = { [unowned self] m, why in self.markDown(m, why) }
            members[id] = m
            probe(m)
        }
        stats.members = members.count
        if changed { rebuildRing() }
        updateNames()
        onStatsChange?()
    }

    private func updateNames() {
        let list = members.values.filter { !Resolver.isIPv4Literal($0.host) }.map { ($0.id, $0.host) }
        names.withLock { $0 = list }
        if !list.isEmpty { startResolver() }
    }

    /// Probes every member now and then every `healthIntervalMillis`; host
    /// names are resolved on a thread of their own every
    /// `resolveIntervalMillis` (never on the loop). Call on the loop.
    public func start() {
        probeAll()
        updateNames()
    }

    private func startResolver() {
        guard !resolving.exchange(true, ordering: .relaxed) else { return }
        let loop = self.loop, interval = configuration.resolveIntervalMillis
        let thread = Thread { [weak self] in
            while let tier = self, tier.resolving.load(ordering: .relaxed) {
                for (id, host) in tier.names.withLock({ $0 }) {
                    let r = Resolver.ipv4(host)
                    loop.execute { [weak tier] in tier?.members[id]?.resolved(r) }
                }
                Thread.sleep(forTimeInterval: Double(interval) / 1000)
            }
        }
        thread.name = "l2-resolver"
        thread.start()
    }

    public func stop() {
        resolving.store(false, ordering: .relaxed)
        if let t = healthTimer { loop.cancel(t) }
        healthTimer = nil
        for m in members.values { m.disconnect("agent stopping") }
    }

    /// Members and whether each is in the ring (for stats pages).
    public var memberStates: [(id: String, up: Bool, lastError: String)] {
        members.values.sorted { $0.id < $1.id }.map { ($0.id, $0.up, $0.lastError) }
    }

    // MARK: - health

    private func probeAll() {
        for m in members.values { probe(m) }
        healthTimer = loop.schedule(afterNanos: configuration.healthIntervalMillis * 1_000_000) { [weak self] in self?.probeAll() }
    }

    private func probe(_ m: L2Member) {
        m.call(.stats, body: [], timeoutMs: max(50, configuration.healthIntervalMillis)) { [unowned self] r in
            guard members[m.id] === m else { return }   // removed meanwhile
            switch r {
            case .success: markUp(m)
            case .failure(let e):
                if case .connection = e {} else { m.disconnect("health probe failed") }
                markDown(m, "health probe: \(e)")
            }
        }
    }

    private func markUp(_ m: L2Member) {
        m.consecutiveFailures = 0
        guard !m.up else { return }
        m.up = true
        m.lastError = ""
        rebuildRing()
        onRingChange?(m.id, true, "answered a health probe")
    }

    private func markDown(_ m: L2Member, _ why: String) {
        m.lastError = why
        guard m.up else { return }
        m.up = false
        rebuildRing()
        onRingChange?(m.id, false, why)
    }

    private func rebuildRing() {
        ring = HashRing(members: members.values.filter(\.up).map(\.id), virtualNodes: configuration.virtualNodes)
        stats.membersUp = ring.members.count
        stats.ringChanges += 1
        onStatsChange?()
    }

    private func noteFailure(_ m: L2Member, _ e: L2CallError) {
        switch e {
        case .timeout:
            stats.timeouts += 1
            m.consecutiveFailures += 1
            if m.consecutiveFailures >= configuration.failureThreshold {
                m.disconnect("\(m.consecutiveFailures) calls timed out")
                markDown(m, "\(m.consecutiveFailures) consecutive calls timed out")
            }
        case .connection(let why):
            stats.errors += 1
            markDown(m, why)
        case .refused, .malformed:
            stats.errors += 1
        }
    }

    // MARK: - reads

    /// How many of `keys`, from the start, L2 holds (no data moves).
    public func exists(_ keys: [BlockKey], deadline: UInt64, _ done: @escaping (Int) -> Void) {
        lookup(keys, fetch: false, deadline: deadline) { found in done(found.count) }
    }

    /// The blocks of the longest prefix of `keys` that L2 holds and whose
    /// checksums verify.
    public func get(_ keys: [BlockKey], deadline: UInt64, _ done: @escaping ([CacheProtocol.Block]) -> Void) {
        lookup(keys, fetch: true, deadline: deadline) { found in done(found.map { $0! }) }
    }

    /// One lookup: keys grouped by their replica for the round, one call per
    /// member; keys a member did not answer for (miss, error, timeout,
    /// corrupt) go to their next replica in the next round, while time is left.
    private func lookup(_ keys: [BlockKey], fetch: Bool, deadline: UInt64,
                        _ done: @escaping ([CacheProtocol.Block?]) -> Void) {
        guard !keys.isEmpty, !ring.isEmpty else {
            if !keys.isEmpty { stats.misses += 1 }
            return done([])
        }
        let replicas = keys.map { ring.replicas(of: $0, count: configuration.replicas) }
        var found = [Bool](repeating: false, count: keys.count)
        var blocks = [CacheProtocol.Block?](repeating: nil, count: keys.count)
        var finished = false

        func finish() {
            guard !finished else { return }
            finished = true
            var n = 0
            while n < keys.count, found[n] { n += 1 }
            if fetch { stats.hits += n }
            if n < keys.count { stats.misses += 1 }
            done(fetch ? Array(blocks[0..<n]) : [CacheProtocol.Block?](repeating: nil, count: n))
        }

        func round(_ r: Int, _ wanted: [Int]) {
            // Only keys before the first one no replica can supply matter.
            let now = monotonicNanos()
            guard !wanted.isEmpty, r < configuration.replicas, now < deadline else { return finish() }
            var groups: [String: [Int]] = [:]
            var unreachable = Int.max
            for i in wanted {
                if r < replicas[i].count { groups[replicas[i][r], default: []].append(i) } else { unreachable = min(unreachable, i) }
            }
            if r > 0 { stats.failovers += groups.count }
            var outstanding = groups.count
            var retry: [Int] = []
            guard outstanding > 0 else { return finish() }
            let timeoutMs = max(1, (deadline - now) / 1_000_000)
            for (memberID, idx) in groups {
                let ks = idx.map { keys[$0] }
                let body = (fetch ? CacheProtocol.Request.get(ks) : CacheProtocol.Request.exists(ks)).body()
                // A member removed since the ring was read (discovery) answers nothing: its keys go on.
                let m = members[memberID]
                let call: (@escaping (Result<[UInt8], L2CallError>) -> Void) -> Void
                if let m {
                    call = { m.call(fetch ? .get : .exists, body: body, timeoutMs: timeoutMs, $0) }
                } else {
                    call = { [loop] done in loop.schedule(afterNanos: 0) { done(.failure(.connection("\(memberID) is no longer a member"))) } }
                }
                call { [unowned self] result in
                    var got = 0
                    switch result {
                    case .success(let reply):
                        m?.consecutiveFailures = 0
                        if fetch {
                            if let bs = try? CacheProtocol.decodeGetResponse(reply), bs.count <= idx.count {
                                for (j, b) in bs.enumerated() {
                                    guard UInt64(BlockChecksum.crc32c(b.bytes)) == b.checksum else {
                                        stats.corrupt += 1
                                        break
                                    }
                                    blocks[idx[j]] = b
                                    found[idx[j]] = true
                                    got = j + 1
                                }
                            } else {
                                stats.errors += 1
                            }
                        } else {
                            var rd = AgentProtocol.Reader(reply)
                            if let n = try? rd.u32(), Int(n) <= idx.count {
                                got = Int(n)
                                for j in 0..<got { found[idx[j]] = true }
                            } else {
                                stats.errors += 1
                            }
                        }
                    case .failure(let e):
                        if let m { noteFailure(m, e) } else { stats.errors += 1 }
                    }
                    retry += idx[got...].filter { $0 < unreachable }
                    outstanding -= 1
                    if outstanding == 0 && !finished {
                        var prefix = 0
                        while prefix < keys.count, found[prefix] { prefix += 1 }
                        let next = retry.filter { $0 >= prefix }.sorted()
                        // Done when every key up to the first unreachable one is found.
                        if next.isEmpty || next[0] > prefix { return finish() }
                        round(r + 1, next)
                    }
                }
            }
        }
        round(0, Array(keys.indices))
    }

    // MARK: - writes

    /// Queues blocks for writing behind (never on the engine's path);
    /// returns how many were dropped because the queue was full.
    @discardableResult
    public func enqueueWrites(_ keys: [BlockKey]) -> Int {
        guard !ring.isEmpty else {
            stats.writesDropped += keys.count
            return keys.count
        }
        let room = max(0, configuration.writeQueueBlocks - (writeQueue.count - writeHead))
        let take = min(room, keys.count)
        writeQueue.append(contentsOf: keys[0..<take])
        stats.writesQueued += take
        stats.writesDropped += keys.count - take
        pumpWrites()
        return keys.count - take
    }

    /// Blocks waiting to be written.
    public var queuedWrites: Int { writeQueue.count - writeHead }

    private func pumpWrites() {
        while writeHead < writeQueue.count {
            // The batch goes to every replica; wait while the primary's pipe is full.
            let first = writeQueue[writeHead]
            guard let primary = ring.owner(of: first).flatMap({ members[$0] }) else { break }
            guard primary.writesInFlight < configuration.writesInFlightPerMember else { break }
            let end = min(writeQueue.count, writeHead + configuration.writeBatch)
            let batch = Array(writeQueue[writeHead..<end])
            writeHead = end
            if writeHead == writeQueue.count {
                writeQueue.removeAll(keepingCapacity: true)
                writeHead = 0
            } else if writeHead > 4096 {
                writeQueue.removeFirst(writeHead)
                writeHead = 0
            }
            let blocks = source(batch)
            guard !blocks.isEmpty else { continue }
            var byMember: [String: [(BlockKey, CacheProtocol.Block)]] = [:]
            for kb in blocks {
                for id in ring.replicas(of: kb.0, count: configuration.replicas) { byMember[id, default: []].append(kb) }
            }
            for (id, kbs) in byMember {
                guard let m = members[id] else { continue }
                m.writesInFlight += 1
                m.call(.put, body: CacheProtocol.Request.put(kbs).body(), timeoutMs: configuration.writeTimeoutMillis) { [unowned self] r in
                    m.writesInFlight -= 1
                    switch r {
                    case .success(let reply):
                        var rd = AgentProtocol.Reader(reply)
                        let n = Int((try? rd.u32()) ?? 0)
                        stats.blocksWritten += n
                        stats.writeFailures += max(0, kbs.count - n)
                    case .failure(let e):
                        stats.writeFailures += kbs.count
                        noteFailure(m, e)
                    }
                    pumpWrites()
                    onStatsChange?()
                }
            }
        }
    }
}
