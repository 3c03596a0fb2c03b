import EventLoop
import Logging
import Metrics
import PodSnapshot
import Redis
import Routing
import Synchronization

/// How gateway replicas share routing state through Redis.
public struct SharedStateConfiguration: Sendable {
    public var redis: RedisConfiguration
    /// This replica's name among its peers (unique: the pod name in
    /// Kubernetes; host and pid by default).
    public var replicaID: String
    /// Prefix of the keys used: `<prefix>:events` (a stream of batches) and
    /// `<prefix>:inflight` (a hash: each replica's in-flight report).
    public var keyPrefix = "switchboard:state"
    /// How often a replica publishes its batch, reads its peers' and
    /// exchanges in-flight counts.
    public var intervalNanos: UInt64 = 20_000_000
    /// Batches the stream keeps (approximately; older ones are trimmed).
    public var streamLength = 10_000
    /// A peer whose in-flight report has not changed for this long is
    /// taken to be gone: its counts no longer count.
    public var peerStaleNanos: UInt64 = 2_000_000_000
    /// Bytes of events waiting for the next publish at most; beyond it new
    /// events are dropped (counted) until Redis takes the batch.
    public var maxPendingBytes = 4 << 20
    /// Blocks per pod, and in all, a replica republishes when a peer asks
    /// for a resync (the most recent ones); published as stream entries of
    /// `resyncChunkBlocks` keys, `resyncEntriesPerTick` per tick, apart from
    /// the batch budget above (a resync never overflows the batch and so
    /// never looks like a new gap).
    public var resyncBlocksPerPod = 100_000
    public var resyncMaxBlocks = 1_000_000
    public var resyncChunkBlocks = 16_384
    public var resyncEntriesPerTick = 8

    public init(redis: RedisConfiguration, replicaID: String) {
        self.redis = redis
        self.replicaID = replicaID
    }
}

/// Routing state shared by gateway replicas, so two replicas behind one
/// Envoy route as one would:
///
/// - **prefix-index insertions** and **fairness charges** are events: each
///   replica appends the ones it makes to a batch (on the routing path,
///   under a lock, no I/O), and every `interval` its control loop publishes
///   the batch as one entry of a Redis stream (`XADD … MAXLEN ~`) and reads
///   the entries its peers added since the last read (`XREAD`), applying
///   them to its own index and counters;
/// - **per-pod in-flight counts** are levels: each tick a replica writes its
///   own counts into one hash field and reads its peers' (`HSET` +
///   `HGETALL`); routers weigh this replica's exact counts plus the peers'
///   last report. A peer that stops reporting is dropped after
///   `peerStaleNanos`.
/// - **missed messages** (a batch that could not be published while Redis
///   was down, entries trimmed before a slow reader got them, a Redis
///   restart) show as a gap in a peer's batch sequence numbers: the reader
///   then asks that peer for a resync, and the peer republishes its whole
///   index (most recent blocks per pod). A replica that starts reads the
///   retained stream and asks every peer for a resync, so it starts warm.
/// - **usage seen by the wrong replica**: Envoy's usage observer opens its
///   own ext_proc stream, which may reach another replica than the one
///   that routed the request; that replica forwards the usage to the owner
///   as an event.
///
/// Redis slow or down never blocks routing: events wait in the batch
/// (bounded) or are dropped and counted, peers' in-flight reports go stale,
/// and each replica routes on its own state until Redis is back.
public final class SharedRoutingState: RoutingStateSink, Sendable {
    public let configuration: SharedStateConfiguration
    public let counters = Counters()
    let logger: Logger
    private let outbox = Mutex<Outbox>(Outbox())

    struct Outbox {
        var bytes: [UInt8] = []
        var events = 0
        /// Events were dropped since the last batch (it was full).
        var dropped = false
    }

    public final class Counters: Sendable {
        /// Batches published, and batches lost because Redis refused or timed out.
        public let batchesPublished = Counter()
        public let batchesLost = Counter()
        /// Events published, and events dropped because the batch was full.
        public let eventsPublished = Counter()
        public let eventsDropped = Counter()
        /// Peers' events applied here, by kind.
        public let prefixApplied = Counter()
        public let chargesApplied = Counter()
        public let usageApplied = Counter()
        /// Usage forwarded to the replica that routed the request.
        public let usageForwarded = Counter()
        /// Gaps seen in a peer's batches (each asks it for a resync), and
        /// resyncs this replica served.
        public let gaps = Counter()
        public let resyncsServed = Counter()
        /// Entries that could not be decoded, events naming a pod this
        /// replica does not know (yet).
        public let malformed = Counter()
        public let unknownPods = Counter()
        /// Exchanges that failed (Redis down, slow, or an error reply).
        public let errors = Counter()
        /// Peers whose in-flight report is fresh.
        public let peers = Atomic<Int>(0)
        public let connected = Atomic<Bool>(false)
    }

    /// Called on the exchange's loop after each exchange (or skipped one
    /// while Redis is unreachable): what tests wait on instead of the clock.
    let onExchange: (@Sendable () -> Void)?

    public init(configuration: SharedStateConfiguration, logger: Logger, onExchange: (@Sendable () -> Void)? = nil) {
        self.configuration = configuration
        self.logger = logger
        self.onExchange = onExchange
    }

    public var replicaID: String { configuration.replicaID }

    // MARK: events from the routing path

    public func recorded(keys: [UInt64], pod: PodEndpoint, capacity: Int?) {
        enqueue(.prefix(pod: pod.address, capacity: capacity, keys: keys))
    }

    public func charged(user: String, tokens: Double) {
        enqueue(.charge(user: user, tokens: tokens))
    }

    /// The usage of a response another replica routed (ticket from its
    /// `x-switchboard-ticket`).
    public func forwardUsage(to replica: String, ticket: UInt64, promptTokens: Int?, completionTokens: Int, estimated: Bool) {
        counters.usageForwarded.add()
        enqueue(.usage(replica: replica, ticket: ticket, promptTokens: promptTokens, completionTokens: completionTokens,
                       estimated: estimated))
    }

    func enqueue(_ e: StateEvent) {
        let limit = configuration.maxPendingBytes
        let ok = outbox.withLock { o -> Bool in
            guard o.bytes.count < limit else {
                o.dropped = true
                return false
            }
            StateBatch.append(e, to: &o.bytes)
            o.events += 1
            return true
        }
        if !ok { counters.eventsDropped.add() }
    }

    /// The batch to publish (emptied), nil when nothing is waiting; `gap`:
    /// events were dropped before it (its number then skips one, so peers
    /// see the gap and ask for a resync).
    func takeBatch() -> (bytes: [UInt8], events: Int, gap: Bool)? {
        outbox.withLock { o in
            guard o.events > 0 else { return nil }
            defer { o = Outbox() }
            return (o.bytes, o.events, o.dropped)
        }
    }

    // MARK: the exchange

    /// What peers' events are applied to.
    public struct Targets: Sendable {
        public var registry: PodRegistry
        public var prefix: PrefixCache?
        public var fairness: VTCBasicRouter?
        /// A peer read the usage of a request this replica routed:
        /// (ticket, prompt tokens, completion tokens, estimated).
        public var usage: (@Sendable (UInt64, Int?, Int, Bool) -> Void)?
        public init(registry: PodRegistry, prefix: PrefixCache?, fairness: VTCBasicRouter?,
                    usage: (@Sendable (UInt64, Int?, Int, Bool) -> Void)? = nil) {
            self.registry = registry
            self.prefix = prefix
            self.fairness = fairness
            self.usage = usage
        }
    }

    /// Starts exchanging on `loop` (the control loop); call once, on any thread.
    public func start(on loop: EventLoop, targets: Targets) {
        loop.execute { [self] in
            let x = Exchange(state: self, loop: loop, targets: targets)
            loop.loopLocal["shared-state.exchange"] = x
            x.start()
        }
    }
}

/// The control loop's side: one Redis connection, the read position, each
/// peer's last batch number and in-flight report. Loop-confined (every
/// method runs on `loop`), hence `@unchecked Sendable`.
final class Exchange: @unchecked Sendable {
    let state: SharedRoutingState
    let loop: EventLoop
    let targets: SharedRoutingState.Targets
    let connection: RedisConnection
    let streamKey: [UInt8]
    let inflightKey: [UInt8]
    let me: [UInt8]
    /// The last stream entry read.
    var lastID = "0-0"
    /// Each producer's last batch number applied.
    var producers: [String: UInt64] = [:]
    var sequence: UInt64 = 0
    var reportSequence: UInt64 = 0
    /// Each peer's last in-flight report's sequence text, and when it changed.
    var peers: [String: (sequence: Substring, changed: UInt64)] = [:]
    var outstanding = 0
    var again = false
    /// A resync still has entries to publish: tick again at once.
    var againResync = false
    var failed = false
    var endpoints: (version: UInt64, byAddress: [String: PodEndpoint]) = (UInt64.max, [:])
    var lastResyncServed: UInt64?
    /// A peer asked for a resync; served at the next tick at least a second after the last.
    var resyncWanted = false
    /// When the peers' in-flight reports were last read.
    var lastReports: UInt64?
    var askedAtStart = false
    var up = false
    /// Entries per read: normal batches are kilobytes, resync entries at most
    /// `resyncChunkBlocks` × 8 bytes, so one reply stays a few megabytes.
    static let readCount = 64
    /// A resync being published: encoded entries, and the next to send.
    var resyncQueue: [[UInt8]] = []
    var resyncNext = 0
    var config: SharedStateConfiguration { state.configuration }

    init(state: SharedRoutingState, loop: EventLoop, targets: SharedRoutingState.Targets) {
        self.state = state
        self.loop = loop
        self.targets = targets
        connection = RedisConnection(configuration: state.configuration.redis, loop: loop)
        streamKey = Array((state.configuration.keyPrefix + ":events").utf8)
        inflightKey = Array((state.configuration.keyPrefix + ":inflight").utf8)
        me = Array(state.configuration.replicaID.utf8)
    }

    func start() {
        let logger = state.logger, cfg = config.redis, counters = state.counters
        connection.onStateChange = { up, why in
            counters.connected.store(up, ordering: .relaxed)
            if up {
                logger.notice("shared_state.redis.connected", metadata: ["redis.address": "\(cfg.host):\(cfg.port)"])
            } else {
                logger.warning("shared_state.redis.lost", metadata: [
                    "redis.address": "\(cfg.host):\(cfg.port)", "error": "\(why)",
                    "effect": "routing on this replica's own state until Redis is back; peers' in-flight counts age out",
                ])
            }
        }
        connection.start()
        schedule(after: config.intervalNanos)
    }

    func schedule(after nanos: UInt64) {
        _ = loop.schedule(afterNanos: nanos) { [self] in tick() }
    }

    /// One exchange: publish, report in-flight, read peers' reports and events.
    func tick() {
        guard connection.isConnected else {
            // Cut off from the peers: their last reports stop counting once stale.
            if let t = lastReports, monotonicNanos() &- t > config.peerStaleNanos {
                lastReports = nil
                for load in targets.registry.snapshot.loads.values { load.setPeers(requests: 0, tokens: 0) }
                state.counters.peers.store(0, ordering: .relaxed)
            }
            schedule(after: config.intervalNanos)
            state.onExchange?()
            return
        }
        if !askedAtStart {
            // Warm start: every peer republishes its index.
            askedAtStart = true
            state.enqueue(.resync(replica: ""))
        }
        if resyncWanted && resyncQueue.isEmpty && (lastResyncServed.map { monotonicNanos() &- $0 > 1_000_000_000 } ?? true) {
            resyncWanted = false
            serveResync()
        }
        outstanding = 0
        again = false
        againResync = false
        failed = false
        var resyncSent = 0
        while resyncNext < resyncQueue.count && resyncSent < config.resyncEntriesPerTick {
            let entry = resyncQueue[resyncNext]
            resyncNext += 1
            resyncSent += 1
            sequence += 1
            issue([t("XADD"), streamKey, t("MAXLEN"), t("~"), bytes(config.streamLength), t("*"), t("r"), me, t("s"), bytes(sequence),
                   t("b"), entry]) { [self] r in
                if case .success(.string) = r { state.counters.batchesPublished.add() } else { state.counters.batchesLost.add() }
            }
        }
        if resyncNext == resyncQueue.count {
            resyncQueue = []
            resyncNext = 0
        } else {
            againResync = true
        }
        if let batch = state.takeBatch() {
            sequence += batch.gap ? 2 : 1
            let events = batch.events
            issue([t("XADD"), streamKey, t("MAXLEN"), t("~"), bytes(config.streamLength), t("*"), t("r"), me, t("s"), bytes(sequence),
                   t("b"), batch.bytes]) { [self] r in
                if case .success(.string) = r {
                    state.counters.batchesPublished.add()
                    state.counters.eventsPublished.add(UInt64(events))
                } else {
                    // Lost: peers see the gap in the sequence and ask for a resync.
                    state.counters.batchesLost.add()
                    state.counters.eventsDropped.add(UInt64(events))
                }
            }
        }
        reportSequence += 1
        issue([t("HSET"), inflightKey, me, t(report())]) { _ in }
        issue([t("HGETALL"), inflightKey]) { [self] r in
            if case .success(.array(let a)) = r { applyReports(a) }
        }
        issue([t("XREAD"), t("COUNT"), bytes(Self.readCount), t("STREAMS"), streamKey, t(lastID)]) { [self] r in
            if case .success(let v) = r { read(v) }
        }
    }

    private func bytes(_ n: some BinaryInteger) -> [UInt8] { Array(String(n).utf8) }
    private func t(_ s: String) -> [UInt8] { Array(s.utf8) }

    private func issue(_ parts: [[UInt8]], _ done: @escaping (Result<RedisValue, RedisError>) -> Void) {
        outstanding += 1
        connection.send(parts) { [self] r in
            switch r {
            case .failure: failed = true
            case .success(.error): failed = true
            case .success: break
            }
            done(r)
            outstanding -= 1
            if outstanding == 0 { finished() }
        }
    }

    private func finished() {
        if failed { state.counters.errors.add() }
        schedule(after: (again || againResync) && !failed ? 0 : config.intervalNanos)
        state.onExchange?()
    }

    // MARK: in-flight levels

    /// "<sequence> <address> <requests> <tokens> …" for pods this replica has requests on.
    private func report() -> String {
        var s = String(reportSequence)
        for (address, load) in targets.registry.snapshot.loads {
            let r = load.localRequests, t = load.localTokens
            if r != 0 || t != 0 { s += " \(address) \(r) \(t)" }
        }
        return s
    }

    private func applyReports(_ a: [RedisValue]) {
        let now = monotonicNanos()
        lastReports = now
        var sums: [Substring: (Int, Int)] = [:]
        var fresh = 0
        var stale: [String] = []
        var i = 0
        while i + 1 < a.count {
            defer { i += 2 }
            guard let field = a[i].text, let value = a[i + 1].text, field != config.replicaID else { continue }
            let parts = value.split(separator: " ")
            guard let seq = parts.first else { continue }
            if let p = peers[field], p.sequence == seq {
                if now &- p.changed > config.peerStaleNanos {
                    // Gone (or stuck): its counts stop counting; long gone: its field is removed.
                    if now &- p.changed > 10 * config.peerStaleNanos { stale.append(field) }
                    continue
                }
            } else {
                peers[field] = (seq, now)
            }
            fresh += 1
            var j = 1
            while j + 2 < parts.count {
                if let r = Int(parts[j + 1]), let t = Int(parts[j + 2]) {
                    let prev = sums[parts[j]] ?? (0, 0)
                    sums[parts[j]] = (prev.0 + r, prev.1 + t)
                }
                j += 3
            }
        }
        state.counters.peers.store(fresh, ordering: .relaxed)
        for (address, load) in targets.registry.snapshot.loads {
            let v = sums[Substring(address)] ?? (0, 0)
            load.setPeers(requests: v.0, tokens: v.1)
        }
        for f in stale {
            peers[f] = nil
            connection.send([t("HDEL"), inflightKey, t(f)]) { _ in }
        }
    }

    // MARK: events

    private func read(_ v: RedisValue) {
        // [[key, [[id, [field, value, …]], …]]] or nil when nothing is new.
        guard case .array(let streams) = v, case .array(let s)? = streams.first, s.count == 2,
              case .array(let entries) = s[1] else { return }
        again = entries.count >= Self.readCount
        let newest = entries.last.flatMap { entryMillis($0) } ?? 0
        for e in entries {
            guard case .array(let pair) = e, pair.count == 2, let id = pair[0].text, case .array(let fields) = pair[1] else {
                state.counters.malformed.add()
                continue
            }
            lastID = id
            var producer: String?, seq: UInt64?, body: [UInt8]?
            var k = 0
            while k + 1 < fields.count {
                switch fields[k].text {
                case "r": producer = fields[k + 1].text
                case "s": seq = fields[k + 1].text.flatMap { UInt64($0) }
                case "b": if case .string(let b) = fields[k + 1] { body = b }
                default: break
                }
                k += 2
            }
            guard let producer, let seq, let body else {
                state.counters.malformed.add()
                continue
            }
            if producer == config.replicaID { continue }
            if let last = producers[producer], seq > last + 1 {
                state.counters.gaps.add()
                state.logger.warning("shared_state.gap", metadata: [
                    "peer": "\(producer)", "missed_batches": "\(seq - last - 1)", "action": "asking the peer to republish its index",
                ])
                state.enqueue(.resync(replica: producer))
            }
            producers[producer] = seq
            let events: [StateEvent]
            do { events = try StateBatch.decode(body) } catch {
                state.counters.malformed.add()
                state.logger.warning("shared_state.malformed", metadata: ["peer": "\(producer)", "entry": "\(id)", "error": "\(error)"])
                continue
            }
            let ageSeconds = Int((newest &- (entryMillis(e) ?? newest)) / 1000)
            for ev in events { apply(ev, ageSeconds: ageSeconds) }
        }
    }

    /// The Redis clock's milliseconds in an entry's id ("<ms>-<n>").
    private func entryMillis(_ e: RedisValue) -> UInt64? {
        guard case .array(let pair) = e, let id = pair.first?.text, let dash = id.firstIndex(of: "-") else { return nil }
        return UInt64(id[..<dash])
    }

    private func apply(_ e: StateEvent, ageSeconds: Int) {
        switch e {
        case .prefix(let address, let capacity, let keys):
            guard let cache = targets.prefix, ageSeconds < cache.options.ttlSeconds else { return }
            guard let pod = endpoint(address) else {
                state.counters.unknownPods.add()
                return
            }
            cache.recordPeer(keys, pod: pod, capacity: capacity)
            state.counters.prefixApplied.add()
        case .charge(let user, let tokens):
            guard let f = targets.fairness, ageSeconds < f.windowSeconds else { return }
            f.chargePeer(user, tokens)
            state.counters.chargesApplied.add()
        case .usage(let replica, let ticket, let prompt, let completion, let estimated):
            guard replica == config.replicaID, let u = targets.usage else { return }
            u(ticket, prompt, completion, estimated)
            state.counters.usageApplied.add()
        case .resync(let replica):
            guard replica.isEmpty || replica == config.replicaID else { return }
            resyncWanted = true
        }
    }

    /// Republishes this replica's index, each pod's blocks in chunks from
    /// least to most recent (so the receiver ends with the same order). At
    /// most once a second, one at a time, however many peers ask (requests
    /// in between are served together at the next chance).
    private func serveResync() {
        guard let cache = targets.prefix else { return }
        lastResyncServed = monotonicNanos()
        state.counters.resyncsServed.add()
        var blocks = 0
        for pod in targets.registry.snapshot.loads.keys.compactMap({ endpoint($0) }) where blocks < config.resyncMaxBlocks {
            let keys = cache.index.keys(of: pod, limit: min(config.resyncBlocksPerPod, config.resyncMaxBlocks - blocks))
            blocks += keys.count
            var end = keys.count
            while end > 0 {
                let start = max(0, end - config.resyncChunkBlocks)
                resyncQueue.append(StateBatch.encode([.prefix(pod: pod.address, capacity: nil, keys: Array(keys[start..<end]))]))
                end = start
            }
        }
        state.logger.info("shared_state.resync.served", metadata: ["blocks": "\(blocks)", "entries": "\(resyncQueue.count)"])
    }

    /// The endpoint this replica knows by `address` (map rebuilt when discovery changes).
    private func endpoint(_ address: String) -> PodEndpoint? {
        let v = targets.registry.version
        if v != endpoints.version {
            var m: [String: PodEndpoint] = [:]
            for eps in targets.registry.snapshot.models.values { for e in eps { m[e.address] = e } }
            endpoints = (v, m)
        }
        return endpoints.byAddress[address]
    }
}
