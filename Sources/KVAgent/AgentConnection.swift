import EventLoop
import Foundation
import HostMemory
import KVCache
import KVProtocol
import Metrics
import Synchronization

/// One engine's connection: frames in, one response per frame out, in order.
final class AgentConnection: StreamSocketDelegate {
    unowned let core: AgentCore
    let socket: StreamSocket
    let owner: Int
    private var decoder = AgentProtocol.Decoder()
    private var greeted = false
    /// A request is waiting on L2: later frames wait in `backlog` (replies stay in order).
    private var busy = false
    private var backlog: [AgentProtocol.Frame] = []

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
            let status: AgentProtocol.Status
            if case .bodyTooLarge = error { status = .tooLarge } else { status = .badRequest }
            send(AgentProtocol.Frame(op: 0, status: status.rawValue, requestID: 0, body: Array("\(error)".utf8)))
            socket.shutdownWrite()
            socket.close()
            return
        }
        backlog.append(contentsOf: frames)
        drain()
    }

    /// Handles queued frames until one goes to L2 (its completion resumes here).
    private func drain() {
        while !busy, !backlog.isEmpty, !socket.isClosed { handle(backlog.removeFirst()) }
        socket.flush()
        core.publishStats()
    }

    /// Runs an L2 read for `req`; `finish` replies (on the loop), then the backlog resumes.
    private func awaitL2(_ start: (@escaping () -> Void) -> Void) {
        busy = true
        start { [self] in
            busy = false
            drain()
        }
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
        let t0 = monotonicNanos()
        defer { core.opDurations[op]!.observe(nanos: monotonicNanos() &- t0) }
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
                let answer = { [self] in
                    let expires = core.expiry(leaseMillis: ms)
                    let t = op == .putAlloc ? store.reserve(keys, owner: owner, expires: expires)
                                            : store.lease(keys, owner: owner, expires: expires)
                    var w = AgentProtocol.Writer()
                    w.u64(t.id)
                    w.u32(UInt32(t.pages.count))
                    for p in t.pages { w.i32(p) }
                    reply(req, w)
                    if t.id != 0 { core.armExpiry(expires) }
                }
                // A GET reads the blocks L1 lacks through from L2 first (into L1, then leased).
                let held = op == .get ? store.exists(keys) : keys.count
                guard held < keys.count, let l2 = core.l2 else { return answer() }
                awaitL2 { [self] resume in
                    let rest = Array(keys[held...])
                    l2.get(rest, deadline: core.l2Deadline(req.deadline)) { [self] blocks in
                        core.fill(rest, blocks)
                        if !socket.isClosed { answer() }
                        resume()
                    }
                }
            case .putCommit, .putAbort, .release:
                let id = try r.u64()
                try r.expectEnd()
                do {
                    switch op {
                    case .putCommit:
                        let keys = store.reservedKeys(id, owner: owner)
                        w.u32(UInt32(try store.commit(id, owner: owner)))
                        // Written behind to L2: never on the engine's path.
                        if let keys, let l2 = core.l2 { l2.enqueueWrites(keys) }
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
                // EXISTS counts the blocks L2 holds after L1's (metadata only);
                // PREFETCH pulls them into L1 ahead of the request.
                guard op != .delete, n < keys.count, let l2 = core.l2 else {
                    w.u32(UInt32(n))
                    return reply(req, w)
                }
                let rest = Array(keys[n...]), deadline = core.l2Deadline(req.deadline)
                awaitL2 { [self] resume in
                    let answer = { [self] (count: Int) in
                        var w = AgentProtocol.Writer()
                        w.u32(UInt32(count))
                        if !socket.isClosed { reply(req, w) }
                        resume()
                    }
                    if op == .exists {
                        l2.exists(rest, deadline: deadline) { answer(n + $0) }
                    } else {
                        l2.get(rest, deadline: deadline) { [self] blocks in answer(n + core.fill(rest, blocks)) }
                    }
                }
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
