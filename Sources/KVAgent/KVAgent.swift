import EventLoop
import Foundation
import HostMemory
import KVCache
import Metrics
import Synchronization

/// Settings of a node agent.
public struct KVAgentConfiguration: Sendable {
    /// Unix socket engines connect to.
    public var socketPath = "/run/switchboard/kv.sock"
    /// Bytes per KV block (one page); every engine on this agent uses it.
    public var pageSize = 2 << 20
    /// Host memory for the L1 tier (rounded down to whole pages).
    public var capacityBytes = 8 << 30
    public var policy: EvictionPolicyKind = .s3fifo
    /// Lease (and reservation) lifetime when a call does not give one.
    public var defaultLeaseMillis: UInt32 = 10_000
    /// The longest lease a client may ask for.
    public var maxLeaseMillis: UInt32 = 600_000
    public init() {}
}

/// The KV-cache node agent: one L1 pool in shared memory, served to the
/// engines of a node over a Unix socket (see `AgentProtocol`). Engines copy
/// block data through their own mapping of the pool; the agent only keeps
/// the index, hands out pages under reservations and leases, and reclaims
/// what a dead or slow client held. Everything runs on one event loop.
public final class KVAgent: Sendable {
    public let configuration: KVAgentConfiguration
    public let pool: SharedPages
    let listener: Listener
    let core: AgentCore

    public init(configuration: KVAgentConfiguration, loop: EventLoop) throws {
        precondition(configuration.pageSize > 0)
        guard configuration.capacityBytes >= configuration.pageSize else {
            throw SharedPages.Failure(description: "capacity \(configuration.capacityBytes) bytes is less than one \(configuration.pageSize)-byte page")
        }
        self.configuration = configuration
        let pages = configuration.capacityBytes / configuration.pageSize
        pool = try SharedPages(name: "switchboard-kv-l1", pageSize: configuration.pageSize, pages: pages)
        // A live agent on this path keeps it: binding would unlink its socket.
        if (try? BlockingUnixSocket(path: configuration.socketPath)) != nil {
            throw SharedPages.Failure(description: "another agent is already serving \(configuration.socketPath)")
        }
        listener = try Listener(address: .unix(path: configuration.socketPath))
        core = AgentCore(configuration: configuration, pool: pool, loop: loop)
        core.publishStats()
        let core = self.core
        try listener.attach(to: loop) { fd, loop in
            guard let sock = try? StreamSocket(fd: fd, loop: loop) else { return }
            core.accept(sock)
        }
    }

    /// Stops accepting; existing connections stay until closed.
    public func close() { listener.close() }

    /// The agent's counters as JSON (also what STATS returns). Thread-safe.
    public func statsJSON() -> String { core.statsSnapshot.withLock { $0 }.json }

    /// The agent's counters as a Prometheus page. Thread-safe.
    public func prometheus() -> String { core.statsSnapshot.withLock { $0 }.prometheus }
}

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
    /// The latest counters, for readers off the loop (copied after every
    /// batch of requests; rendered as text only when someone asks).
    let statsSnapshot: Mutex<AgentStats>

    init(configuration: KVAgentConfiguration, pool: SharedPages, loop: EventLoop) {
        self.configuration = configuration
        self.pool = pool
        self.loop = loop
        store = BlockStore(pages: pool.pages, policy: configuration.policy)
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

    func publishStats() {
        let s = AgentStats(store: store.stats, pages: pool.pages, pageSize: pool.pageSize, policy: configuration.policy.rawValue,
                           connections: connections.count, requests: requests, errors: errors)
        statsSnapshot.withLock { $0 = s }
    }
}

/// A copy of the agent's counters and their two renderings.
struct AgentStats: Sendable {
    var store: BlockStoreStats
    var pages: Int
    var pageSize: Int
    var policy: String
    var connections = 0
    var requests = 0
    var errors = 0

    var json: String {
        let s = store, page = pageSize
        return """
        {"page_size":\(page),"pages":\(pages),"pages_used":\(s.pagesUsed),"pages_touched":\(s.pagesTouched),\
        "hits":\(s.hits),"misses":\(s.misses),"puts":\(s.puts),"evictions":\(s.evictions),"expired":\(s.expired),\
        "bytes_in":\(s.puts * page),"bytes_out":\(s.hits * page),\
        "reservations":\(s.reservations),"leases":\(s.leases),"connections":\(connections),\
        "requests":\(requests),"errors":\(errors),"policy":"\(policy)"}
        """
    }

    var prometheus: String {
        let s = store, page = pageSize
        var w = PrometheusWriter()
        func metric(_ name: String, _ kind: PrometheusWriter.Kind, _ help: String, _ v: Int) {
            w.single("switchboard_kv_\(name)", kind, help: help, v)
        }
        metric("l1_hits_total", .counter, "Blocks served from L1 (longest-prefix gets).", s.hits)
        metric("l1_misses_total", .counter, "Gets that stopped at a block L1 does not hold.", s.misses)
        metric("l1_puts_total", .counter, "Blocks stored in L1.", s.puts)
        metric("l1_evictions_total", .counter, "Blocks evicted from L1 to make room.", s.evictions)
        metric("l1_bytes_in_total", .counter, "Bytes of blocks stored in L1.", s.puts * page)
        metric("l1_bytes_out_total", .counter, "Bytes of blocks read from L1.", s.hits * page)
        metric("expired_total", .counter, "Reservations and leases reclaimed after their deadline.", s.expired)
        metric("requests_total", .counter, "Protocol requests handled.", requests)
        metric("errors_total", .counter, "Protocol requests refused.", errors)
        metric("l1_pages", .gauge, "Pages (blocks) the L1 pool holds at most.", pages)
        metric("l1_pages_used", .gauge, "Pages holding a stored block.", s.pagesUsed)
        metric("l1_page_bytes", .gauge, "Bytes per page (block).", page)
        metric("reservations", .gauge, "Puts reserved and not yet committed.", s.reservations)
        metric("leases", .gauge, "Gets pinning pages.", s.leases)
        metric("connections", .gauge, "Engine connections.", connections)
        return w.text
    }
}

/// One engine's connection: frames in, one response per frame out, in order.
final class AgentConnection: StreamSocketDelegate {
    unowned let core: AgentCore
    let socket: StreamSocket
    let owner: Int
    private var decoder = AgentProtocol.Decoder()
    private var greeted = false

    init(core: AgentCore, socket: StreamSocket, owner: Int) {
        self.core = core
        self.socket = socket
        self.owner = owner
    }

    func socketRead(_ socket: StreamSocket, _ bytes: ArraySlice<UInt8>) {
        let frames: [AgentProtocol.Frame]
        do {
            frames = try decoder.feed(bytes)
        } catch {
            // The stream cannot be resynchronised: say why, then close.
            core.errors += 1
            send(AgentProtocol.Frame(op: 0, status: error == .bodyTooLarge(0) ? AgentProtocol.Status.tooLarge.rawValue : AgentProtocol.Status.badRequest.rawValue,
                                     requestID: 0, body: Array("\(error)".utf8)))
            socket.shutdownWrite()
            socket.close()
            return
        }
        for f in frames where !socket.isClosed { handle(f) }
        socket.flush()
        core.publishStats()
    }

    func socketDrained(_ socket: StreamSocket) {}

    func socketClosed(_ socket: StreamSocket, error: SystemError?) {
        core.closed(owner)
    }

    private func send(_ f: AgentProtocol.Frame) {
        socket.write(f.encoded())
    }

    private func fail(_ req: AgentProtocol.Frame, _ status: AgentProtocol.Status, _ message: String) {
        core.errors += 1
        send(AgentProtocol.Frame(op: req.op, status: status.rawValue, requestID: req.requestID, body: Array(message.utf8)))
    }

    private func reply(_ req: AgentProtocol.Frame, _ body: AgentProtocol.Writer) {
        send(AgentProtocol.Frame(op: req.op, requestID: req.requestID, body: body.bytes))
    }

    private func handle(_ req: AgentProtocol.Frame) {
        core.requests += 1
        guard let op = AgentProtocol.Op(rawValue: req.op) else {
            return fail(req, .badRequest, "unknown op \(req.op)")
        }
        if req.deadline != 0 {
            let now = monotonicNanos()
            if now > req.deadline {
                return fail(req, .deadlineExceeded, "deadline passed \(String(format: "%.3f", Double(now - req.deadline) / 1e6)) ms before the agent read the request")
            }
        }
        if op != .hello && !greeted {
            return fail(req, .notReady, "send HELLO first")
        }
        var r = AgentProtocol.Reader(req.body)
        var w = AgentProtocol.Writer()
        let store = core.store
        do {
            switch op {
            case .hello:
                let version = try r.u32(), pageSize = try r.u32()
                try r.expectEnd()
                guard !greeted else { return fail(req, .badRequest, "HELLO sent twice") }
                guard version == AgentProtocol.version else {
                    return fail(req, .unsupportedVersion, "protocol version \(version) not supported; this agent speaks \(AgentProtocol.version)")
                }
                guard pageSize == 0 || Int(pageSize) == core.pool.pageSize else {
                    return fail(req, .badSize, "engine blocks are \(pageSize) bytes; this agent's pages are \(core.pool.pageSize) bytes")
                }
                w.u32(AgentProtocol.version)
                w.u32(UInt32(core.pool.pageSize))
                w.u64(UInt64(core.pool.pages))
                let frame = AgentProtocol.Frame(op: req.op, requestID: req.requestID, body: w.bytes).encoded()
                guard socket.writeWithDescriptor(frame, descriptor: core.pool.fd) else {
                    return fail(req, .internalError, "could not pass the pool descriptor")
                }
                greeted = true
            case .putAlloc, .get:
                // Both hand out pages under a ticket: u32 lease ms, keys -> u64 id, u32 n, n pages.
                let ms = try r.u32(), keys = try r.keys()
                try r.expectEnd()
                let expires = core.expiry(leaseMillis: ms)
                let t = op == .putAlloc ? store.reserve(keys, owner: owner, expires: expires)
                                        : store.lease(keys, owner: owner, expires: expires)
                w.u64(t.id)
                w.u32(UInt32(t.pages.count))
                for p in t.pages { w.i32(p) }
                reply(req, w)
                if t.id != 0 { core.armExpiry(expires) }
            case .putCommit, .putAbort, .release:
                let id = try r.u64()
                try r.expectEnd()
                do {
                    switch op {
                    case .putCommit: w.u32(UInt32(try store.commit(id, owner: owner)))
                    case .putAbort: try store.abort(id, owner: owner)
                    default: try store.release(id, owner: owner)
                    }
                } catch {
                    return fail(req, .unknownID, error.description)
                }
                reply(req, w)
            case .exists, .prefetch, .delete:
                let keys = try r.keys()
                try r.expectEnd()
                let n = op == .exists ? store.exists(keys) : (op == .prefetch ? store.touch(keys) : store.delete(keys))
                w.u32(UInt32(n))
                reply(req, w)
            case .stats:
                try r.expectEnd()
                core.publishStats()
                w.bytes = Array(core.statsSnapshot.withLock { $0 }.json.utf8)
                reply(req, w)
            }
        } catch {
            fail(req, .badRequest, "malformed \(op) request: \(error)")
        }
    }
}
