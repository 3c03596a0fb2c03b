import EventLoop
import Foundation
import Redis
import Synchronization
import Testing

/// A real redis-server on a free port, for one test. Start waits for the
/// server's own "Ready to accept connections" line, stop for its exit: events,
/// each bounded by a timeout that fails with the server's output.
final class RedisServer {
    let port: Int
    let process = Process()
    let dir: String
    private let events = Events()

    /// What the server's output and exit tell the test, shared with Foundation's handlers.
    final class Events: Sendable {
        let output = Mutex("")
        let ready = DispatchSemaphore(value: 0)
        let exited = DispatchSemaphore(value: 0)
    }

    init(password: String? = nil, port: Int? = nil) throws {
        self.port = port ?? Self.freePort()
        dir = NSTemporaryDirectory() + "redis-test-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        process.executableURL = URL(fileURLWithPath: "/usr/bin/redis-server")
        var args = ["--port", "\(self.port)", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir,
                    "--enable-debug-command", "yes"]
        if let p = password { args += ["--requirepass", p] }
        process.arguments = args
        let pipe = Pipe()
        process.standardOutput = pipe
        let events = self.events
        pipe.fileHandleForReading.readabilityHandler = { h in
            let chunk = String(decoding: h.availableData, as: UTF8.self)
            events.output.withLock { $0 += chunk }
            if chunk.contains("Ready to accept connections") { events.ready.signal() }
        }
        process.terminationHandler = { _ in events.exited.signal() }
        try process.run()
        guard events.ready.wait(timeout: .now() + 10) == .success else {
            throw NSError(domain: "redis-server did not become ready on \(self.port): \(events.output.withLock { $0 })", code: 1)
        }
    }

    /// Kills the server and waits (bounded) for it to exit.
    func stop() {
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGKILL)
        if events.exited.wait(timeout: .now() + 10) != .success {
            Issue.record("redis-server \(port) did not exit after SIGKILL")
        }
    }

    /// A port below the kernel's ephemeral range (32768+, where an outgoing
    /// connection could take it first) that binds now.
    static func freePort() -> Int {
        for _ in 0..<100 {
            let p = Int.random(in: 20_000...31_000)
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var a = sockaddr_in()
            a.sin_family = sa_family_t(AF_INET)
            a.sin_port = in_port_t(UInt16(p).bigEndian)
            a.sin_addr.s_addr = inet_addr("127.0.0.1")
            let ok = withUnsafePointer(to: &a) { ptr in
                ptr.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
            }
            close(fd)
            if ok { return p }
        }
        return Int.random(in: 20_000...31_000)
    }
}

/// Runs `body` on the loop and waits (bounded) for its result.
func onLoop<T: Sendable>(_ loop: EventLoop, timeout: Double = 10, _ body: @escaping @Sendable (@escaping @Sendable (T) -> Void) -> Void) -> T? {
    let box = Mutex<T?>(nil)
    let sem = DispatchSemaphore(value: 0)
    loop.execute {
        body { v in
            box.withLock { $0 = v }
            sem.signal()
        }
    }
    guard sem.wait(timeout: .now() + timeout) == .success else { return nil }
    return box.withLock { $0 }
}

/// Sends one command on the loop; waits for its result.
func command(_ c: RedisConnection, _ args: [String], timeout: Double = 10) -> Result<RedisValue, RedisError>? {
    onLoop(c.loop, timeout: timeout) { done in c.send(args) { done($0) } }
}

/// Waits (bounded) for the connection to say it is up: its state-change
/// event, or already up when asked on its loop.
func waitConnected(_ c: RedisConnection, _ seconds: Double = 10) -> Bool {
    let up = DispatchSemaphore(value: 0)
    c.loop.execute {
        c.onStateChange = { isUp, _ in if isUp { up.signal() } }
        if c.isConnected { up.signal() }
    }
    return up.wait(timeout: .now() + seconds) == .success
}

/// A real redis-server, an event loop group and one started connection
/// per loop, connected (fails the test, saying why, when redis-server is
/// missing: scripts/setup installs it).
final class RedisFixture {
    var server: RedisServer
    let group: EventLoopGroup
    let connections: [RedisConnection]

    init(loops: Int = 1, password: String? = nil, _ configure: (inout RedisConfiguration) -> Void = { _ in }) throws {
        try #require(FileManager.default.fileExists(atPath: "/usr/bin/redis-server"), "redis-server is missing: run scripts/setup")
        server = try RedisServer(password: password)
        group = try EventLoopGroup(count: loops)
        group.start()
        var cfg = RedisConfiguration(host: "127.0.0.1", port: server.port)
        configure(&cfg)
        connections = group.loops.map { RedisConnection(configuration: cfg, loop: $0) }
        for c in connections { c.loop.execute { c.start() } }
    }

    var first: RedisConnection { connections[0] }

    func close() {
        for c in connections { c.loop.execute { c.close() } }
        group.stopAll()
        server.stop()
    }
}

@Suite(.serialized) struct RedisConnectionTests {
    @Test func commandsPipelineInOrderAndRepliesConvert() throws {
        let f = try RedisFixture()
        defer { f.close() }
        let c = f.first
        #expect(waitConnected(c))
        #expect(command(c, ["SET", "k", "v\u{0}with nul"]) == .success(.status("OK")))
        #expect(command(c, ["GET", "k"]) == .success(.string(Array("v\u{0}with nul".utf8))))
        #expect(command(c, ["GET", "missing"]) == .success(.null))
        #expect(command(c, ["RPUSH", "l", "a", "b"]) == .success(.integer(2)))
        #expect(command(c, ["LRANGE", "l", "0", "-1"]) == .success(.array([.string([97]), .string([98])])))
        if case .success(.error(let e)) = command(c, ["NOSUCHCOMMAND"]) { #expect(e.contains("unknown command")) } else {
            Issue.record("an error reply")
        }
        // 1,000 INCRs sent back to back: every reply in order.
        let replies = onLoop(c.loop) { (done: @escaping @Sendable ([Int64]) -> Void) in
            var got: [Int64] = []
            for _ in 0..<1000 {
                c.send(["INCR", "n"]) { r in
                    if case .success(.integer(let i)) = r { got.append(i) }
                    if got.count == 1000 { done(got) }
                }
            }
        }
        #expect(replies == Array(1...1000))
    }

    @Test func authAndDatabaseSelection() throws {
        let f = try RedisFixture(password: "s3cret") { $0.password = "wrong" }
        defer { f.close() }
        let b = f.first
        #expect(!waitConnected(b, 1))
        if case .failure(.unavailable(let why)) = command(b, ["PING"]) { #expect(why.contains("AUTH")) } else {
            Issue.record("a wrong password must keep the connection down, saying why")
        }
        var good = b.configuration
        good.password = "s3cret"
        good.database = 3
        let c = RedisConnection(configuration: good, loop: f.group.loops[0])
        f.group.loops[0].execute { c.start() }
        defer { f.group.loops[0].execute { c.close() } }
        #expect(waitConnected(c))
        #expect(command(c, ["SET", "only-in-3", "x"]) == .success(.status("OK")))
        #expect(command(c, ["SELECT", "0"]) == .success(.status("OK")))
        #expect(command(c, ["GET", "only-in-3"]) == .success(.null))
    }

    @Test func aDeadServerFailsCommandsFastAndAReturningOneIsReconnected() throws {
        let f = try RedisFixture()
        defer { f.close() }
        let c = f.first
        #expect(waitConnected(c))
        f.server.stop()
        // Every command now ends with an error, never a hang.
        for _ in 0..<5 {
            guard case .failure = command(c, ["PING"], timeout: 5) else {
                Issue.record("a command to a dead server must fail")
                break
            }
        }
        f.server = try RedisServer(port: f.server.port)
        #expect(waitConnected(c), "reconnected without a restart")
        #expect(command(c, ["PING"]) == .success(.status("PONG")))
    }

    @Test func aSlowCommandTimesOutAndTheConnectionRecovers() throws {
        let f = try RedisFixture { $0.commandTimeoutNanos = 100_000_000 }
        defer { f.close() }
        let c = f.first
        #expect(waitConnected(c))
        #expect(command(c, ["DEBUG", "SLEEP", "0.5"]) == .failure(.timeout))
        // The server is busy for the rest of its sleep: each attempt waits for the
        // reconnection, then times out or answers; never a hang.
        let deadline = Date().addingTimeInterval(10)
        var answered = false
        while !answered && Date() < deadline {
            answered = waitConnected(c, 2) && command(c, ["PING"]) == .success(.status("PONG"))
        }
        #expect(answered, "the connection recovered after the slow command")
    }

    @Test func addressesParse() {
        #expect(RedisConfiguration.parse(address: "10.0.0.5:6380") == RedisConfiguration(host: "10.0.0.5", port: 6380))
        #expect(RedisConfiguration.parse(address: "redis")?.port == 6379)
        #expect(RedisConfiguration.parse(address: "[::1]:7000") == RedisConfiguration(host: "::1", port: 7000))
        #expect(RedisConfiguration.parse(address: "h:0") == nil && RedisConfiguration.parse(address: ":1") == nil)
    }
}
