import EventLoop
import KVProtocol

/// Why one call to a cache server produced no answer.
public enum L2CallError: Error, Sendable, CustomStringConvertible {
    case timeout(millis: UInt64)
    case connection(String)
    case refused(status: UInt16, message: String)
    case malformed(String)

    public var description: String {
        switch self {
        case .timeout(let ms): return "no reply within \(ms) ms"
        case .connection(let why): return "connection failed: \(why)"
        case .refused(let status, let message): return "server refused (status \(status)): \(message)"
        case .malformed(let why): return "malformed reply: \(why)"
        }
    }
}

/// One cache server as an agent sees it: a pipelined TCP connection
/// (requests matched to replies by id), a timer per call, and health.
/// Loop-confined.
final class L2Member: StreamSocketDelegate {
    let id: String
    let host: String
    let port: Int
    let loop: EventLoop
    /// The IPv4 address connected to: the host itself when it is a literal,
    /// else what the tier's resolver last found (nil until then).
    private(set) var address: String?
    var resolveError = "not resolved yet"
    /// In the ring (healthy).
    var up = false
    var consecutiveFailures = 0
    var lastError = ""
    var writesInFlight = 0
    /// Called when the connection fails (the tier re-evaluates the ring).
    var onFailure: ((L2Member, String) -> Void)?

    private var socket: StreamSocket?
    private var decoder = AgentProtocol.Decoder(magic: CacheProtocol.magic, maxBody: CacheProtocol.maxBody)
    private struct Pending {
        var timer: TimerID
        var timeoutMs: UInt64
        var done: (Result<[UInt8], L2CallError>) -> Void
    }
    private var pending: [UInt32: Pending] = [:]
    private var nextID: UInt32 = 1

    init(id: String, host: String, port: Int, loop: EventLoop) {
        self.id = id
        self.host = host
        self.port = port
        self.loop = loop
        if Resolver.isIPv4Literal(host) { address = host }
    }

    /// A new address for the host name: later calls connect there (a
    /// restarted server pod comes back with another IP).
    func resolved(_ result: Result<String, AddressError>) {
        switch result {
        case .success(let a):
            guard a != address else { return }
            address = a
            disconnect("\(host) now resolves to \(a)")
        case .failure(let e):
            resolveError = e.reason
        }
    }

    var pendingCalls: Int { pending.count }

    /// Sends one request; `done` runs exactly once on the loop: the reply
    /// body, or why there is none (timeout, connection, refusal).
    func call(_ op: CacheProtocol.Op, body: [UInt8], timeoutMs: UInt64, _ done: @escaping (Result<[UInt8], L2CallError>) -> Void) {
        let sock: StreamSocket
        if let s = socket, !s.isClosed {
            sock = s
        } else {
            guard let address else {
                let why = "\(host) has no address: \(resolveError)"
                loop.schedule(afterNanos: 0) { done(.failure(.connection(why))) }
                return
            }
            do { sock = try StreamSocket.connect(host: address, port: port, loop: loop) } catch {
                let why = "\(error)"
                loop.schedule(afterNanos: 0) { done(.failure(.connection(why))) }
                return
            }
            sock.highWater = 2 * CacheProtocol.maxBody
            sock.lowWater = CacheProtocol.maxBody / 2
            sock.delegate = self
            decoder = AgentProtocol.Decoder(magic: CacheProtocol.magic, maxBody: CacheProtocol.maxBody)
            socket = sock
        }
        let rid = nextID
        nextID = nextID == UInt32.max ? 1 : nextID + 1
        let ms = max(1, timeoutMs)
        let timer = loop.schedule(afterNanos: ms * 1_000_000) { [weak self] in
            guard let self, let p = self.pending.removeValue(forKey: rid) else { return }
            p.done(.failure(.timeout(millis: p.timeoutMs)))
        }
        pending[rid] = Pending(timer: timer, timeoutMs: ms, done: done)
        sock.write(AgentProtocol.Frame(op: op.rawValue, requestID: rid, deadline: ms, body: body).encoded(magic: CacheProtocol.magic))
        sock.flush()
    }

    /// Drops the connection and fails what is pending on it.
    func disconnect(_ why: String) {
        guard let s = socket else { return }
        socket = nil
        s.delegate = nil
        s.close()
        failAll(why)
    }

    private func failAll(_ why: String) {
        let calls = pending
        pending.removeAll()
        for (_, p) in calls {
            loop.cancel(p.timer)
            p.done(.failure(.connection(why)))
        }
    }

    func socketRead(_ socket: StreamSocket, _ bytes: ArraySlice<UInt8>) {
        let frames: [AgentProtocol.Frame]
        do { frames = try decoder.feed(bytes) } catch {
            let why = "unreadable reply stream: \(error)"
            disconnect(why)
            onFailure?(self, why)
            return
        }
        for f in frames {
            // A reply to a call that already timed out finds nothing here.
            guard let p = pending.removeValue(forKey: f.requestID) else { continue }
            loop.cancel(p.timer)
            if f.status == 0 {
                p.done(.success(f.body))
            } else {
                p.done(.failure(.refused(status: f.status, message: String(decoding: f.body, as: UTF8.self))))
            }
        }
    }

    func socketDrained(_ socket: StreamSocket) {}

    func socketClosed(_ socket: StreamSocket, error: SystemError?) {
        guard socket === self.socket else { return }
        self.socket = nil
        let why = error.map { "\($0)" } ?? "closed by the server"
        failAll(why)
        onFailure?(self, why)
    }
}
