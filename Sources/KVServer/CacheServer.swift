import EventLoop
import KVCache
import Foundation
import KVMembership
import KVProtocol
import Metrics
import RDMA
import Synchronization

/// Settings of one L2 cache server.
public struct KVServerConfiguration: Sendable {
    /// TCP address node agents connect to.
    public var listen: SocketAddress = .tcp(host: "0.0.0.0", port: 7480)
    /// Bytes per slot: the largest block stored (the agents' block size).
    public var slotBytes = 2 << 20
    /// Memory for blocks (rounded down to whole slots; committed as written).
    public var capacityBytes = 16 << 30
    public var policy = "s3fifo"
    public var highWatermark = 0.95
    public var lowWatermark = 0.90
    /// Time a request may wait in the server when its frame gives none (ms).
    public var defaultTimeoutMillis: UInt64 = 1_000
    /// Serve `POST /debug/corrupt` on the admin endpoint (fault injection for tests).
    public var debugEndpoints = false
    /// Register in Redis (`host:port`; password from `REDIS_PASSWORD`) under
    /// `registerKey` as `advertise`, the address agents dial.
    public var registerRedisAddress: String?
    public var registerKey = RedisMembership.defaultKey
    public var advertise: String?
    public var redisPassword: String?
    public init() {}
}

/// The cache server's state on its loop: the store, the connections, the
/// counters readers off the loop see.
final class CacheServerCore: @unchecked Sendable {
    let store: CacheStore
    let configuration: KVServerConfiguration
    var connections: [ObjectIdentifier: CacheConnection] = [:]
    let requests = Counter()
    let errors = Counter()
    let deadlineMisses = Counter()
    let connectionCount = Mutex(0)
    let opDurations: [CacheProtocol.Op: Histogram]
    /// RDMA on this machine (probed once; the data path is TCP either way).
    let rdma = RDMAProbe.run()

    init(store: CacheStore, configuration: KVServerConfiguration) {
        self.store = store
        self.configuration = configuration
        var d: [CacheProtocol.Op: Histogram] = [:]
        for op in CacheProtocol.Op.allCases {
            d[op] = Histogram(bounds: [0.000_01, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.05, 0.1])
        }
        opDurations = d
    }

    func accept(_ sock: StreamSocket) {
        let c = CacheConnection(core: self, socket: sock)
        connections[ObjectIdentifier(c)] = c
        sock.delegate = c
        connectionCount.withLock { $0 = connections.count }
    }

    func closed(_ c: CacheConnection) {
        connections[ObjectIdentifier(c)] = nil
        connectionCount.withLock { $0 = connections.count }
    }
}

/// One agent's connection: frames in, one response per frame, in order.
/// A stream that cannot be split into frames (wrong magic, a body over the
/// limit) gets one error frame and is closed; a frame with a malformed body
/// gets an error reply and the connection carries on.
final class CacheConnection: StreamSocketDelegate {
    unowned let core: CacheServerCore
    let socket: StreamSocket
    private var decoder = AgentProtocol.Decoder(magic: CacheProtocol.magic, maxBody: CacheProtocol.maxBody)

    init(core: CacheServerCore, socket: StreamSocket) {
        self.core = core
        self.socket = socket
        // Replies carry whole batches of blocks: let a reader fall behind by a batch or two.
        socket.highWater = 2 * CacheProtocol.maxBody
        socket.lowWater = CacheProtocol.maxBody / 2
    }

    func socketRead(_ socket: StreamSocket, _ bytes: ArraySlice<UInt8>) {
        let frames: [AgentProtocol.Frame]
        do {
            frames = try decoder.feed(bytes)
        } catch {
            core.errors.add()
            let status: CacheProtocol.Status
            if case .bodyTooLarge = error { status = .tooLarge } else { status = .badRequest }
            send(AgentProtocol.Frame(op: 0, status: status.rawValue, requestID: 0, body: Array("\(error)".utf8)))
            socket.shutdownWrite()
            socket.close()
            return
        }
        let received = monotonicNanos()
        for f in frames where !socket.isClosed { handle(f, received: received) }
        socket.flush()
    }

    func socketDrained(_ socket: StreamSocket) {}

    func socketClosed(_ socket: StreamSocket, error: SystemError?) { core.closed(self) }

    private func send(_ f: AgentProtocol.Frame) { socket.write(f.encoded(magic: CacheProtocol.magic)) }

    private func fail(_ req: AgentProtocol.Frame, _ status: CacheProtocol.Status, _ message: String) {
        core.errors.add()
        send(AgentProtocol.Frame(op: req.op, status: status.rawValue, requestID: req.requestID, body: Array(message.utf8)))
    }

    private func handle(_ req: AgentProtocol.Frame, received: UInt64) {
        core.requests.add()
        let t0 = monotonicNanos()
        let timeoutMs = req.deadline == 0 ? core.configuration.defaultTimeoutMillis : req.deadline
        if t0 &- received > timeoutMs &* 1_000_000 {
            core.deadlineMisses.add()
            return fail(req, .deadlineExceeded, "waited \((t0 &- received) / 1_000_000) ms in the server; the request allowed \(timeoutMs) ms")
        }
        guard let op = CacheProtocol.Op(rawValue: req.op) else {
            return fail(req, .badRequest, "unknown op \(req.op)")
        }
        let store = core.store
        do throws(AgentProtocol.Malformed) {
            switch op {
            case .put:
                // Blocks are copied once: from the request body into their slots.
                var w = AgentProtocol.Writer()
                w.u32(UInt32(store.put(try CacheProtocol.decodePutView(req.body))))
                send(AgentProtocol.Frame(op: req.op, requestID: req.requestID, body: w.bytes))
            case .get:
                guard case .get(let keys) = try CacheProtocol.Request.decode(op: req.op, body: req.body) else { return }
                // Header, then the blocks straight from the pool into the reply buffer, handed to the socket whole.
                var w = AgentProtocol.Writer(capacity: AgentProtocol.headerSize + 4)
                AgentProtocol.Frame.header(magic: CacheProtocol.magic, op: req.op, requestID: req.requestID, bodyLength: 0, into: &w)
                store.appendGetResponse(keys, to: &w.bytes)
                let len = UInt32(w.bytes.count - AgentProtocol.headerSize)
                for k in 0..<4 { w.bytes[4 + k] = UInt8(truncatingIfNeeded: len >> (8 * UInt32(k))) }
                socket.write(w.bytes)
            default:
                var w = AgentProtocol.Writer()
                switch try CacheProtocol.Request.decode(op: req.op, body: req.body) {
                case .exists(let keys): w.u32(UInt32(store.exists(keys)))
                case .delete(let keys): w.u32(UInt32(store.delete(keys)))
                case .stats: w.bytes = Array(CacheServerStats(core).json.utf8)
                case .put, .get: return
                }
                send(AgentProtocol.Frame(op: req.op, requestID: req.requestID, body: w.bytes))
            }
        } catch {
            return fail(req, .badRequest, "malformed \(op) request: \(error)")
        }
        core.opDurations[op]!.observe(nanos: monotonicNanos() &- t0)
    }
}

/// A cache server on one event loop: the store and a TCP listener.
public final class KVCacheServer: Sendable {
    public let configuration: KVServerConfiguration
    public let store: CacheStore
    let listener: Listener
    let core: CacheServerCore
    let loop: EventLoop

    public init(configuration: KVServerConfiguration, loop: EventLoop) throws {
        guard let policy = EvictionPolicyKind(rawValue: configuration.policy) else {
            throw CacheStore.Failure(description: "unknown eviction policy \(configuration.policy)")
        }
        self.configuration = configuration
        self.loop = loop
        store = try CacheStore(capacityBytes: configuration.capacityBytes, slotBytes: configuration.slotBytes, policy: policy,
                               highWatermark: configuration.highWatermark, lowWatermark: configuration.lowWatermark)
        listener = try Listener(address: configuration.listen)
        core = CacheServerCore(store: store, configuration: configuration)
        let core = self.core
        try listener.attach(to: loop) { fd, loop in
            guard let sock = try? StreamSocket(fd: fd, loop: loop) else { return }
            core.accept(sock)
        }
    }

    /// The TCP port bound (with port 0 in tests).
    public var boundPort: Int? { listener.boundPort }

    /// Stops accepting; connections stay until their agents close them.
    public func close() { listener.close() }

    /// Stops accepting and closes every connection (as a crash would, for
    /// agents: their calls fail and they fail over). Safe from any thread.
    public func stop() {
        listener.close()
        let core = self.core
        loop.execute {
            for c in Array(core.connections.values) { c.socket.close() }
        }
    }

    public func statsJSON() -> String { CacheServerStats(core).json }

    /// RDMA on this machine, as probed at start.
    public var rdma: RDMAProbe.Availability { core.rdma }
    public func prometheus() -> String { CacheServerStats(core).prometheus }
}
