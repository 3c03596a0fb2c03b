import EventLoop
import Foundation
import HostMemory
import KVL2Client
import RDMA
import KVProtocol
import Synchronization
import Dispatch
import Testing
@testable import KVServer

/// Servers on their own loop (port 0), stopped at the end.
final class Servers: Sendable {
    let group: EventLoopGroup
    let servers: [KVCacheServer]
    init(_ n: Int, slotBytes: Int = 4096) throws {
        let group = try EventLoopGroup(count: 1)
        self.group = group
        var c = KVServerConfiguration()
        c.listen = .tcp(host: "127.0.0.1", port: 0)
        c.slotBytes = slotBytes
        c.capacityBytes = 256 * slotBytes
        servers = try (0..<n).map { _ in try KVCacheServer(configuration: c, loop: group.loops[0]) }
        group.start(name: "kv-server-test")
    }
    var addresses: [String] { servers.map { "127.0.0.1:\($0.boundPort!)" } }
    func stop() {
        group.stopAll()
        group.join()
    }
}

/// A blocking client for raw frames.
struct RawClient {
    let socket: BlockingSocket
    var decoder = AgentProtocol.Decoder(magic: CacheProtocol.magic, maxBody: CacheProtocol.maxBody)
    init(port: Int) throws {
        socket = try BlockingSocket(host: "127.0.0.1", port: port)
        socket.setReceiveTimeout(millis: 10_000)
    }
    /// The next reply; nil when the server closed the connection.
    mutating func next() throws -> AgentProtocol.Frame? {
        while true {
            let r = try socket.receive()
            if r.bytes.isEmpty { return nil }
            if let f = try decoder.feed(r.bytes).first { return f }
        }
    }
    mutating func call(_ req: CacheProtocol.Request, id: UInt32 = 1) throws -> AgentProtocol.Frame {
        try socket.send(AgentProtocol.Frame(op: req.op.rawValue, requestID: id, body: req.body()).encoded(magic: CacheProtocol.magic))
        guard let f = try next() else { throw AgentProtocol.Malformed("server closed") }
        return f
    }
}

func page(_ i: Int, _ n: Int = 4096) -> CacheProtocol.Block { block(i, bytes: n) }

@Suite(.serialized) struct ServerTests {
    @Test func putGetExistsDeleteStatsOverTCP() throws {
        let s = try Servers(1)
        defer { s.stop() }
        var c = try RawClient(port: s.servers[0].boundPort!)
        let put = try c.call(.put((0..<4).map { (key($0), page($0)) }))
        #expect(put.status == 0)
        var r = AgentProtocol.Reader(put.body)
        #expect(try r.u32() == 4)
        let get = try c.call(.get([key(0), key(1), key(7), key(2)]), id: 2)
        #expect(get.requestID == 2)
        #expect(try CacheProtocol.decodeGetResponse(get.body) == [page(0), page(1)])
        r = AgentProtocol.Reader(try c.call(.exists([key(0), key(1), key(2), key(3), key(4)])).body)
        #expect(try r.u32() == 4)
        r = AgentProtocol.Reader(try c.call(.delete([key(3)])).body)
        #expect(try r.u32() == 1)
        let stats = String(decoding: try c.call(.stats).body, as: UTF8.self)
        #expect(stats.contains(#""blocks":3"#) && stats.contains(#""hits":2"#))
    }

    /// Fuzzed frames: every malformed body is answered with an error and the
    /// connection keeps working; a broken stream gets an error frame, then
    /// the server closes it; the server keeps serving others throughout.
    @Test func fuzzedFramesGetErrorRepliesAndNeverStopTheServer() throws {
        let s = try Servers(1)
        defer { s.stop() }
        let port = s.servers[0].boundPort!
        var rng = SystemRandomNumberGenerator()
        var errors = 0
        var c = try RawClient(port: port)
        let valid = CacheProtocol.Request.put([(key(1), page(1, 64))]).body()
        for i in 0..<400 {
            var body = valid
            switch i % 4 {
            case 0: body = (0..<Int.random(in: 0..<200, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            case 1: body[Int.random(in: 0..<min(40, body.count), using: &rng)] ^= UInt8.random(in: 1...255, using: &rng)
            case 2: body = Array(body[0..<Int.random(in: 0..<body.count, using: &rng)])
            default: body += [UInt8](repeating: 7, count: Int.random(in: 1..<9, using: &rng))
            }
            let op = UInt16.random(in: 0...7, using: &rng)
            try c.socket.send(AgentProtocol.Frame(op: op, requestID: UInt32(i), body: body).encoded(magic: CacheProtocol.magic))
            guard let f = try c.next() else { Issue.record("server closed a connection over a malformed body (frame \(i))"); return }
            #expect(f.requestID == UInt32(i))
            if f.status != 0 { errors += 1 }
        }
        #expect(errors > 200, "most fuzzed bodies are refused (\(errors) of 400)")
        // A broken stream: wrong magic, then a body over the limit.
        for bad in [[UInt8](repeating: 0x41, count: 24),
                    AgentProtocol.Frame(op: 1, requestID: 1).encoded(magic: CacheProtocol.magic).enumerated().map { $0.offset == 7 ? 0x7F : $0.element }] {
            var b = try RawClient(port: port)
            try b.socket.send(bad)
            let f = try b.next()
            #expect(f?.status != nil && f?.status != 0)
            #expect(try b.next() == nil, "the server closes a stream it cannot split into frames")
        }
        // Random byte streams.
        for _ in 0..<50 {
            let b = try RawClient(port: port)
            try b.socket.send((0..<Int.random(in: 1..<300, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) })
            b.socket.close()
        }
        var after = try RawClient(port: port)
        #expect(try after.call(.exists([key(1)])).status == 0, "the server still answers")
    }

    /// Two agents' tiers over three servers: blocks written through one are
    /// read through the other; a server stopped mid-run is failed over and
    /// leaves the ring; corrupt replies are misses.
    @Test func blocksWrittenThroughOneTierAreReadThroughAnother() throws {
        let s = try Servers(3)
        defer { s.stop() }
        let loops = try EventLoopGroup(count: 1)
        loops.start(name: "l2-tier-test")
        defer { loops.stopAll(); loops.join() }
        let loop = loops.loops[0]
        let blocks = Dictionary(uniqueKeysWithValues: (0..<40).map { (key($0), page($0)) })
        var config = L2Configuration()
        config.members = s.addresses
        config.replicas = 2
        config.healthIntervalMillis = 50
        config.readTimeoutMillis = 2_000
        let up = Mutex([0, 0])
        let changed = DispatchSemaphore(value: 0)
        let tiers = try (0..<2).map { i in
            let t = try L2Tier(configuration: config, loop: loop) { keys in keys.compactMap { k in blocks[k].map { (k, $0) } } }
            t.onRingChange = { _, isUp, _ in up.withLock { $0[i] += isUp ? 1 : -1 }; changed.signal() }
            t.onStatsChange = { changed.signal() }
            return t
        }
        /// Re-checks `cond` each time a tier reports a change (ring or counters); fails after 10 s with `what`.
        func waitFor(_ what: String, _ cond: () -> Bool) throws {
            let end = DispatchTime.now() + 10
            while !cond() {
                guard changed.wait(timeout: end) == .success else { throw AgentProtocol.Malformed("timed out waiting until \(what)") }
            }
        }
        for t in tiers { loop.execute { t.start() } }
        try waitFor("both tiers see three members") { up.withLock { $0 == [3, 3] } }
        let keys = (0..<40).map(key)
        loop.execute { tiers[0].enqueueWrites(keys) }
        try waitFor("80 block copies written") { onLoop(loop) { tiers[0].stats.blocksWritten } == 80 }
        let got = try completion(on: loop) { done in tiers[1].get(keys, deadline: monotonicNanos() + 2_000_000_000) { done($0) } }
        #expect(got == keys.map { blocks[$0]! })
        // The tier is loop-confined: every touch of it below runs on the loop.
        // One server down: reads fail over to the replicas.
        s.servers[1].stop()
        let stopped = s.addresses[1]
        try waitFor("tier B drops the stopped member") {
            onLoop(loop) { tiers[1].memberStates.first { $0.id == stopped }?.up == false }
        }
        let again = try completion(on: loop) { done in tiers[1].exists(keys, deadline: monotonicNanos() + 2_000_000_000) { done($0) } }
        #expect(again == 40)
        let stats = onLoop(loop) { tiers[1].stats }
        #expect(stats.membersUp == 2)
    }
}

/// Runs `body` on the loop and waits for its value.
func onLoop<T: Sendable>(_ loop: EventLoop, _ body: @escaping @Sendable () -> T) -> T {
    let box = Mutex<T?>(nil)
    let sem = DispatchSemaphore(value: 0)
    loop.execute {
        let v = body()
        box.withLock { $0 = v }
        sem.signal()
    }
    sem.wait()
    return box.withLock { $0! }
}

/// Starts an asynchronous operation on the loop and waits for its completion (10 s at most).
func completion<T: Sendable>(on loop: EventLoop, _ start: @escaping @Sendable (@escaping @Sendable (T) -> Void) -> Void) throws -> T {
    let box = Mutex<T?>(nil)
    let sem = DispatchSemaphore(value: 0)
    loop.execute { start { v in box.withLock { $0 = v }; sem.signal() } }
    guard sem.wait(timeout: .now() + 10) == .success else { throw AgentProtocol.Malformed("operation did not complete within 10 s") }
    return box.withLock { $0! }
}

@Suite struct ResolverTests {
    @Test func namesResolveOffTheLoopAndBadNamesSayWhy() throws {
        #expect(Resolver.isIPv4Literal("10.1.2.3") && !Resolver.isIPv4Literal("10.1.2") && !Resolver.isIPv4Literal("kv-0.kv"))
        #expect(try Resolver.ipv4("localhost").get() == "127.0.0.1")
        guard case .failure(let e) = Resolver.ipv4("no-such-host.invalid") else {
            Issue.record("a name under .invalid resolved")
            return
        }
        #expect(!e.reason.isEmpty)
    }

    @Test func aTierReachesAServerByName() throws {
        let s = try Servers(1)
        defer { s.stop() }
        let loops = try EventLoopGroup(count: 1)
        loops.start(name: "l2-name-test")
        defer { loops.stopAll(); loops.join() }
        let loop = loops.loops[0]
        var config = L2Configuration()
        config.members = ["localhost:\(s.servers[0].boundPort!)"]
        config.healthIntervalMillis = 20
        config.resolveIntervalMillis = 20
        config.replicas = 1
        let joined = DispatchSemaphore(value: 0)
        let t = try L2Tier(configuration: config, loop: loop) { keys in keys.map { ($0, page(1)) } }
        t.onRingChange = { _, up, _ in if up { joined.signal() } }
        loop.execute { t.start() }
        #expect(joined.wait(timeout: .now() + 10) == .success, "the member named localhost joined the ring")
        loop.execute { t.stop() }
    }
}

@Suite struct RDMAProbeTests {
    /// The shim loads everywhere and says why RDMA is unavailable; where the
    /// kernel lists RDMA devices, it finds them.
    @Test func theProbeAgreesWithTheKernelsDeviceList() {
        let kernel = (try? FileManager.default.contentsOfDirectory(atPath: "/sys/class/infiniband")) ?? []
        switch RDMAProbe.run() {
        case .available(let devices):
            #expect(!devices.isEmpty)
            #expect(!kernel.isEmpty, "the shim found \(devices) but /sys/class/infiniband lists none")
        case .unavailable(let why):
            #expect(!why.isEmpty)
            #expect(kernel.isEmpty, "/sys/class/infiniband lists \(kernel) but the shim says: \(why)")
        }
    }
}

/// A server that answers every GET with blocks whose bytes do not match
/// their checksums (what a bit flip on the wire would look like) and every
/// other request with an empty success.
final class LyingConnection: StreamSocketDelegate {
    let socket: StreamSocket
    private var decoder = AgentProtocol.Decoder(magic: CacheProtocol.magic, maxBody: CacheProtocol.maxBody)
    init(socket: StreamSocket) { self.socket = socket }
    func socketRead(_ socket: StreamSocket, _ bytes: ArraySlice<UInt8>) {
        for f in (try? decoder.feed(bytes)) ?? [] {
            var body: [UInt8] = [0, 0, 0, 0]
            if f.op == CacheProtocol.Op.get.rawValue {
                var good = page(1)
                good.bytes[7] ^= 0x40
                body = CacheProtocol.getResponse([good])
            }
            socket.write(AgentProtocol.Frame(op: f.op, requestID: f.requestID, body: body).encoded(magic: CacheProtocol.magic))
        }
        socket.flush()
    }
    func socketDrained(_ socket: StreamSocket) {}
    func socketClosed(_ socket: StreamSocket, error: SystemError?) {}
}

final class Held: @unchecked Sendable { var list: [LyingConnection] = [] }

@Suite struct TierIntegrityTests {
    @Test func aBlockThatArrivesDamagedIsAMissNeverReturned() throws {
        let loops = try EventLoopGroup(count: 1)
        let loop = loops.loops[0]
        let listener = try Listener(address: .tcp(host: "127.0.0.1", port: 0))
        let held = Held()
        try listener.attach(to: loop) { fd, loop in
            guard let s = try? StreamSocket(fd: fd, loop: loop) else { return }
            let c = LyingConnection(socket: s)
            s.delegate = c
            held.list.append(c)
        }
        loops.start(name: "lying-server")
        defer { loops.stopAll(); loops.join() }
        var config = L2Configuration()
        config.members = ["127.0.0.1:\(listener.boundPort!)"]
        config.replicas = 1
        config.healthIntervalMillis = 20
        let joined = DispatchSemaphore(value: 0)
        let t = try L2Tier(configuration: config, loop: loop) { _ in [] }
        t.onRingChange = { _, up, _ in if up { joined.signal() } }
        loop.execute { t.start() }
        #expect(joined.wait(timeout: .now() + 10) == .success)
        let got = try completion(on: loop) { done in t.get([key(1)], deadline: monotonicNanos() + 2_000_000_000) { done($0) } }
        #expect(got.isEmpty)
        let stats = onLoop(loop) { t.stats }
        #expect(stats.corrupt == 1 && stats.hits == 0 && stats.misses == 1)
        loop.execute { t.stop() }
    }
}
