internal import CHiredis
import EventLoop

/// One asynchronous Redis connection driven by a gateway event loop: hiredis
/// (0.14, async API) does the protocol; this loop watches its socket, times
/// its commands out and reconnects with backoff. Commands are pipelined in
/// order; AUTH and SELECT go first on every (re)connection.
///
/// Threading: every method must be called on `loop` (the same invariant as
/// `EventLoop`), which is what makes the `@unchecked Sendable` sound.
/// Unsafe pointers stay in this file: the hiredis context is owned here,
/// freed exactly once (by hiredis after a disconnect it reports, or by
/// `reset`), and each command's callback box is retained until hiredis calls
/// its callback, which it does exactly once (with NULL when the connection
/// goes away).
public final class RedisConnection: FDHandler, @unchecked Sendable {
    public let configuration: RedisConfiguration
    public let loop: EventLoop
    private var context: UnsafeMutablePointer<redisAsyncContext>?
    private var fd: Int32 = -1
    private var reading = false, writing = false, registered = false
    private var connected = false
    private var lastError = "not connected yet"
    private var backoff: UInt64
    private var reconnectTimer: TimerID?
    private var connectTimer: TimerID?
    private var pending: [UInt64: Command] = [:]
    private var nextID: UInt64 = 1
    private var closed = false
    /// Told when the connection becomes usable or is lost (for metrics and logs).
    public var onStateChange: ((Bool, String) -> Void)?

    final class Command {
        let id: UInt64
        weak var connection: RedisConnection?
        var done: ((Result<RedisValue, RedisError>) -> Void)?
        var timer: TimerID?
        init(id: UInt64, connection: RedisConnection, done: @escaping (Result<RedisValue, RedisError>) -> Void) {
            self.id = id
            self.connection = connection
            self.done = done
        }
    }

    public init(configuration: RedisConfiguration, loop: EventLoop) {
        self.configuration = configuration
        self.loop = loop
        backoff = configuration.reconnectMinNanos
    }

    /// Connects (asynchronously); commands sent before it is up fail fast.
    public func start() {
        guard !closed else { return }
        connect()
    }

    public var isConnected: Bool { connected }

    /// Sends one command; `done` runs on the loop exactly once.
    public func send(_ args: [String], _ done: @escaping (Result<RedisValue, RedisError>) -> Void) {
        send(args.map { Array($0.utf8) }, done)
    }

    public func send(_ args: [[UInt8]], _ done: @escaping (Result<RedisValue, RedisError>) -> Void) {
        guard connected, let ac = context else {
            done(.failure(.unavailable(lastError)))
            return
        }
        let cmd = Command(id: nextID, connection: self, done: done)
        nextID &+= 1
        if !issue(ac, args, cmd) {
            done(.failure(.disconnected("hiredis refused the command")))
            return
        }
        pending[cmd.id] = cmd
        cmd.timer = loop.schedule(afterNanos: configuration.commandTimeoutNanos) { [weak self, weak cmd] in
            guard let self, let cmd, let d = cmd.done else { return }
            cmd.done = nil
            self.pending[cmd.id] = nil
            d(.failure(.timeout))
            // The reply may still come, out of step with later commands: start over.
            self.reset(because: "command timed out")
        }
    }

    /// Closes for good (pending commands fail).
    public func close() {
        closed = true
        if let t = reconnectTimer { loop.cancel(t) }
        reset(because: "closed")
    }

    // MARK: hiredis plumbing

    private func issue(_ ac: UnsafeMutablePointer<redisAsyncContext>, _ args: [[UInt8]], _ cmd: Command) -> Bool {
        let box = Unmanaged.passRetained(cmd).toOpaque()
        // argv pointers live for the call only: hiredis formats the command into its buffer before returning.
        var lengths = args.map { $0.count }
        let status: Int32 = args.withUnsafeBufferPointers { ptrs in
            var argv: [UnsafePointer<CChar>?] = ptrs.map { UnsafeRawPointer($0.baseAddress ?? UnsafePointer(bitPattern: 1)!).assumingMemoryBound(to: CChar.self) }
            return argv.withUnsafeMutableBufferPointer { a in
                lengths.withUnsafeMutableBufferPointer { l in
                    redisAsyncCommandArgv(ac, redisReplyTrampoline, box, Int32(args.count), a.baseAddress, l.baseAddress)
                }
            }
        }
        if status != REDIS_OK {
            Unmanaged<Command>.fromOpaque(box).release()
            return false
        }
        return true
    }

    /// A reply (or NULL: the connection went away) for one command.
    fileprivate func replied(_ cmd: Command, _ reply: UnsafeMutableRawPointer?) {
        pending[cmd.id] = nil
        if let t = cmd.timer { loop.cancel(t) }
        guard let d = cmd.done else { return }  // timed out already
        cmd.done = nil
        if let r = reply {
            d(.success(Self.value(r.assumingMemoryBound(to: redisReply.self))))
        } else {
            d(.failure(.disconnected(lastError)))
        }
    }

    static func value(_ r: UnsafeMutablePointer<redisReply>) -> RedisValue {
        let p = r.pointee
        switch p.type {
        case REDIS_REPLY_STRING:
            return .string(p.str.map { Array(UnsafeRawBufferPointer(start: $0, count: Int(p.len))) } ?? [])
        case REDIS_REPLY_INTEGER: return .integer(Int64(p.integer))
        case REDIS_REPLY_NIL: return .null
        case REDIS_REPLY_STATUS: return .status(p.str.map { String(cString: $0) } ?? "")
        case REDIS_REPLY_ERROR: return .error(p.str.map { String(cString: $0) } ?? "")
        case REDIS_REPLY_ARRAY:
            var out: [RedisValue] = []
            for i in 0..<Int(p.elements) { if let e = p.element[i] { out.append(value(e)) } }
            return .array(out)
        default: return .error("unknown reply type \(p.type)")
        }
    }

    private func connect() {
        reconnectTimer = nil
        guard let ac = redisAsyncConnect(configuration.host, Int32(configuration.port)) else {
            scheduleReconnect(because: "out of memory")
            return
        }
        if ac.pointee.err != 0 {
            let why = Self.errorString(ac)
            redisAsyncFree(ac)
            scheduleReconnect(because: why)
            return
        }
        context = ac
        fd = ac.pointee.c.fd
        let me = Unmanaged.passUnretained(self).toOpaque()
        ac.pointee.data = me
        ac.pointee.ev.data = me
        ac.pointee.ev.addRead = { p in RedisConnection.from(p).want(read: true) }
        ac.pointee.ev.delRead = { p in RedisConnection.from(p).want(read: false) }
        ac.pointee.ev.addWrite = { p in RedisConnection.from(p).want(write: true) }
        ac.pointee.ev.delWrite = { p in RedisConnection.from(p).want(write: false) }
        ac.pointee.ev.cleanup = { p in RedisConnection.from(p).cleanup() }
        redisAsyncSetConnectCallback(ac) { ac, status in
            guard let ac, let me = ac.pointee.data else { return }
            RedisConnection.from(me).didConnect(status == REDIS_OK, RedisConnection.errorString(ac))
        }
        redisAsyncSetDisconnectCallback(ac) { ac, status in
            guard let ac, let me = ac.pointee.data else { return }
            RedisConnection.from(me).didDisconnect(RedisConnection.errorString(ac))
        }
        connectTimer = loop.schedule(afterNanos: configuration.connectTimeoutNanos) { [weak self] in
            guard let self, !self.connected, self.context == ac else { return }
            self.reset(because: "connect timed out")
        }
        // Until AUTH/SELECT answer, the connection counts as down.
    }

    private func didConnect(_ ok: Bool, _ why: String) {
        if let t = connectTimer { loop.cancel(t); connectTimer = nil }
        guard ok, let ac = context else {
            // hiredis frees the context after a failed connect.
            forget(because: why.isEmpty ? "connect failed" : why)
            return
        }
        var setup: [[String]] = []
        if let pw = configuration.password {
            setup.append(configuration.username.map { ["AUTH", $0, pw] } ?? ["AUTH", pw])
        }
        if configuration.database != 0 { setup.append(["SELECT", "\(configuration.database)"]) }
        guard !setup.isEmpty else { return becameReady() }
        var left = setup.count
        for args in setup {
            let cmd = Command(id: nextID, connection: self) { [weak self] r in
                guard let self else { return }
                switch r {
                case .success(.error(let e)): self.reset(because: "\(args[0]) refused: \(e)")
                case .failure(let e): self.reset(because: "\(args[0]): \(e)")
                case .success:
                    left -= 1
                    if left == 0 { self.becameReady() }
                }
            }
            nextID &+= 1
            pending[cmd.id] = cmd
            if !issue(ac, args.map { Array($0.utf8) }, cmd) { pending[cmd.id] = nil }
        }
    }

    private func becameReady() {
        connected = true
        backoff = configuration.reconnectMinNanos
        lastError = ""
        onStateChange?(true, "")
    }

    private func didDisconnect(_ why: String) {
        // hiredis frees the context right after this callback.
        forget(because: why.isEmpty ? "server closed the connection" : why)
    }

    /// The context is gone (hiredis freed it): fail what was pending, reconnect later.
    private func forget(because why: String) {
        let was = connected
        context = nil
        connected = false
        lastError = why
        if let t = connectTimer { loop.cancel(t); connectTimer = nil }
        failPending(why)
        if was { onStateChange?(false, why) }
        scheduleReconnect(because: why)
    }

    /// Tears the connection down ourselves (timeouts, refused AUTH, close).
    private func reset(because why: String) {
        guard let ac = context else {
            if closed { failPending(why) }
            return
        }
        let was = connected
        context = nil
        connected = false
        lastError = why
        ac.pointee.onDisconnect = nil  // we report it here, not from inside the free
        redisAsyncFree(ac)  // calls every pending callback with NULL, then cleanup
        failPending(why)
        if was { onStateChange?(false, why) }
        scheduleReconnect(because: why)
    }

    private func failPending(_ why: String) {
        let all = pending.values
        pending.removeAll()
        for c in all {
            if let t = c.timer { loop.cancel(t) }
            if let d = c.done {
                c.done = nil
                d(.failure(.disconnected(why)))
            }
        }
    }

    private func scheduleReconnect(because why: String) {
        guard !closed, reconnectTimer == nil else { return }
        let wait = backoff
        backoff = min(configuration.reconnectMaxNanos, backoff * 2)
        reconnectTimer = loop.schedule(afterNanos: wait) { [weak self] in self?.connect() }
    }

    // MARK: the event loop side

    private func want(read: Bool? = nil, write: Bool? = nil) {
        if let r = read { reading = r }
        if let w = write { writing = w }
        guard fd >= 0 else { return }
        var ev: IOEvents = []
        if reading { ev.insert(.readable) }
        if writing { ev.insert(.writable) }
        if !registered {
            if (try? loop.register(fd: fd, events: ev, handler: self)) != nil { registered = true }
        } else {
            loop.modify(fd: fd, events: ev)
        }
    }

    private func cleanup() {
        if registered { loop.unregister(fd: fd) }
        registered = false
        reading = false
        writing = false
        fd = -1
    }

    public func handleEvents(_ events: IOEvents) {
        guard let ac = context else { return }
        if !events.intersection([.readable, .error, .hangup]).isEmpty {
            redisAsyncHandleRead(ac)
        }
        // The read may have freed the context (a disconnect).
        if events.contains(.writable), let ac2 = context, ac2 == ac {
            redisAsyncHandleWrite(ac2)
        }
    }

    fileprivate static func from(_ p: UnsafeMutableRawPointer?) -> RedisConnection {
        Unmanaged<RedisConnection>.fromOpaque(p!).takeUnretainedValue()
    }

    static func errorString(_ ac: UnsafePointer<redisAsyncContext>) -> String {
        guard ac.pointee.err != 0 else { return "" }
        if let s = ac.pointee.errstr { return String(cString: s) }
        return "error \(ac.pointee.err)"
    }

    static func errorString(_ ac: UnsafeMutablePointer<redisAsyncContext>) -> String { errorString(UnsafePointer(ac)) }
}

/// hiredis's reply callback: hands the reply to the command's connection.
private let redisReplyTrampoline: @convention(c) (UnsafeMutablePointer<redisAsyncContext>?, UnsafeMutableRawPointer?,
                                                    UnsafeMutableRawPointer?) -> Void = { _, reply, privdata in
    guard let privdata else { return }
    let cmd = Unmanaged<RedisConnection.Command>.fromOpaque(privdata).takeRetainedValue()
    cmd.connection?.replied(cmd, reply)
}

extension Array where Element == [UInt8] {
    /// Calls `body` with each element's buffer pointer, all valid at once.
    func withUnsafeBufferPointers<R>(_ body: ([UnsafeBufferPointer<UInt8>]) -> R) -> R {
        func go(_ i: Int, _ acc: inout [UnsafeBufferPointer<UInt8>]) -> R {
            if i == count { return body(acc) }
            return self[i].withUnsafeBufferPointer { p in
                acc.append(p)
                return go(i + 1, &acc)
            }
        }
        var acc: [UnsafeBufferPointer<UInt8>] = []
        acc.reserveCapacity(count)
        return go(0, &acc)
    }
}
