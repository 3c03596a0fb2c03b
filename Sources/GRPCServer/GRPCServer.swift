import EventLoop
import HTTP2
import Logging
import Metrics
import Synchronization

/// A gRPC server over h2c (HTTP/2 with prior knowledge) on TCP and Unix sockets.
///
/// Shape: one event loop per core; every loop accepts from every listener
/// (EPOLLEXCLUSIVE) and owns the connections it accepted, so a message is
/// decoded, handled and answered on one thread with no hand-off.
///
/// Threading: the server object is shared (Sendable): its mutable state is
/// atomics and a mutex; per-connection state lives in loop-local storage.
public final class GRPCServer: Sendable {
    public let configuration: GRPCServerConfiguration
    public let logger: Logger
    public let stats = GRPCServerStats()
    let group: EventLoopGroup
    private let handlers: [String: @Sendable (GRPCStream) -> any GRPCStreamHandler]
    private let listeners = Mutex<[Listener]>([])
    private let serving = Atomic<Bool>(true)
    private let draining = Atomic<Bool>(false)
    private let activeStreams = Atomic<Int>(0)
    private let connectionIDs = Atomic<UInt64>(0)
    private let localKey: String

    public static let healthCheckPath = "/grpc.health.v1.Health/Check"

    /// `services` maps a full method path (`/pkg.Service/Method`) to a factory
    /// called on the loop thread for each new stream.
    public init(configuration: GRPCServerConfiguration, group: EventLoopGroup, logger: Logger,
                services: [String: @Sendable (GRPCStream) -> any GRPCStreamHandler]) {
        self.group = group
        self.logger = logger
        var all = services
        let names = configuration.healthServices
        all[Self.healthCheckPath] = { [names] _ in HealthCheckHandler(services: names) }
        self.handlers = all
        var c = configuration
        c.http2.internedValues += ["application/grpc", "trailers", "POST", "http"] + all.keys.sorted()
        self.configuration = c
        self.localKey = "grpc-server-\(UInt(bitPattern: ObjectIdentifier(Self.self).hashValue))-\(Int.random(in: 0..<Int.max))"
    }

    /// Binds every listen address and starts accepting on every loop.
    /// Returns the bound addresses (ports resolved when 0 was asked).
    @discardableResult
    public func start() throws -> [SocketAddress] {
        var made: [Listener] = []
        for a in configuration.listen {
            made.append(try Listener(address: a))
        }
        listeners.withLock { $0 = made }
        for loop in group.loops {
            for l in made {
                try l.attach(to: loop) { [self] fd, loop in accept(fd: fd, on: loop) }
            }
        }
        return made.map(\.address)
    }

    /// True while health checks answer SERVING.
    public var isServing: Bool { serving.load(ordering: .relaxed) }
    /// True once `drain` began.
    public var isDraining: Bool { draining.load(ordering: .relaxed) }
    /// RPCs currently open across all connections.
    public var openStreams: Int { activeStreams.load(ordering: .relaxed) }

    func handler(for path: String) -> (@Sendable (GRPCStream) -> any GRPCStreamHandler)? { handlers[path] }

    func streamStarted() { activeStreams.add(1, ordering: .relaxed) }
    func streamEnded() { activeStreams.subtract(1, ordering: .relaxed) }

    private func connections(on loop: EventLoop) -> ConnectionSet {
        if let c = loop.loopLocal[localKey] as? ConnectionSet { return c }
        let c = ConnectionSet()
        loop.loopLocal[localKey] = c
        return c
    }

    private func accept(fd: Int32, on loop: EventLoop) {
        do {
            let sock = try StreamSocket(fd: fd, loop: loop)
            let id = connectionIDs.add(1, ordering: .relaxed).newValue
            let conn = try GRPCConnection(socket: sock, server: self, connectionID: id)
            connections(on: loop).all[ObjectIdentifier(conn)] = conn
            stats.connectionsAccepted.add(1)
            if isDraining { conn.beginDrain() }
        } catch {
            logger.warning("grpc.server.accept_failed", metadata: ["error": "\(error)"])
        }
    }

    func connectionClosed(_ c: GRPCConnection) {
        connections(on: c.socket.loop).all[ObjectIdentifier(c)] = nil
    }

    /// Graceful shutdown: health turns NOT_SERVING, listeners close (new
    /// connections are refused), every connection gets GOAWAY, in-flight RPCs
    /// run to completion. `completion` runs on `controlLoop` once no RPC is
    /// open or the drain timeout passed (then remaining connections are closed).
    public func drain(controlLoop: EventLoop, completion: @escaping @Sendable (_ timedOut: Bool) -> Void) {
        guard !draining.exchange(true, ordering: .relaxed) else { return }
        serving.store(false, ordering: .relaxed)
        logger.notice("grpc.server.drain_started", metadata: ["grpc.open_streams": "\(openStreams)"])
        let ls = listeners.withLock { $0 }
        let remaining = Atomic<Int>(group.loops.count)
        for loop in group.loops {
            loop.execute { [self] in
                for l in ls { l.detach(from: loop) }
                for c in connections(on: loop).all.values { c.beginDrain() }
                if remaining.subtract(1, ordering: .acquiringAndReleasing).newValue == 0 {
                    for l in ls { l.close() }
                }
            }
        }
        let deadline = monotonicNanos() + configuration.drainTimeoutNanos
        pollDrain(controlLoop: controlLoop, deadline: deadline, completion: completion)
    }

    private func pollDrain(controlLoop: EventLoop, deadline: UInt64, completion: @escaping @Sendable (Bool) -> Void) {
        controlLoop.schedule(afterNanos: 20_000_000) { [self] in
            let open = openStreams
            let timedOut = monotonicNanos() >= deadline
            if open > 0 && !timedOut {
                pollDrain(controlLoop: controlLoop, deadline: deadline, completion: completion)
                return
            }
            if timedOut {
                logger.warning("grpc.server.drain_timeout", metadata: ["grpc.open_streams": "\(open)"])
            } else {
                logger.notice("grpc.server.drained")
            }
            for loop in group.loops {
                loop.execute { [self] in
                    for c in connections(on: loop).all.values { c.forceClose() }
                }
            }
            completion(timedOut)
        }
    }
}

/// The connections a server owns on one loop (loop-confined).
final class ConnectionSet {
    var all: [ObjectIdentifier: GRPCConnection] = [:]
}

/// Counters for the server, readable from any thread.
public final class GRPCServerStats: Sendable {
    public let connectionsAccepted = Counter()
    public let streamsOpened = Counter()
    public let streamsReset = Counter()
    public let messagesReceived = Counter()
    public let messagesSent = Counter()
    public let errorStatuses = Counter()
    public let protocolErrors = Counter()
    /// Connections closed because the peer did not finish its preface in time.
    public let handshakeTimeouts = Counter()
    public let unknownMethods = Counter()
    public let compressedRejected = Counter()
    public let oversizeRejected = Counter()
}
