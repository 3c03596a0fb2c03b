import EventLoop
import HostMemory
import KVCache
import KVProtocol

/// A refusal from the agent, or a broken connection.
public struct KVAgentError: Error, Sendable, CustomStringConvertible, Equatable {
    /// The agent's status (nil: the connection failed or the reply was malformed).
    public let status: AgentProtocol.Status?
    public let message: String
    public var description: String { status.map { "\($0): \(message)" } ?? message }
    public init(status: AgentProtocol.Status?, message: String) {
        self.status = status
        self.message = message
    }
}

/// A blocking client of the local KV agent for Swift engines and tools.
/// Block data goes through the shared pool mapping, never the socket.
/// One caller at a time (not thread-safe); open one client per thread.
public final class KVAgentClient {
    public let pageSize: Int
    public let pages: Int
    public let pool: SharedPages
    private let socket: BlockingSocket
    private var decoder = AgentProtocol.Decoder()
    private var nextID: UInt32 = 1
    /// Per-call time budget; each request carries now + this as its deadline.
    public var timeoutMillis: UInt64 = 5_000

    /// Connects, says HELLO (with the engine's block size, 0 = any) and maps the pool.
    public init(socketPath: String, pageSize: Int = 0) throws(KVAgentError) {
        do { socket = try BlockingSocket(path: socketPath) } catch {
            throw KVAgentError(status: nil, message: "cannot connect to the KV agent at \(socketPath): \(error)")
        }
        socket.setReceiveTimeout(millis: 30_000)
        var w = AgentProtocol.Writer()
        w.u32(AgentProtocol.version)
        w.u32(UInt32(pageSize))
        let (reply, fd) = try Self.call(socket, &decoder, op: .hello, id: 0, deadline: 0, body: w.bytes, wantDescriptor: true)
        var r = AgentProtocol.Reader(reply)
        guard let _ = try? r.u32(), let ps = try? r.u32(), let n = try? r.u64(), let fd else {
            throw KVAgentError(status: nil, message: "malformed HELLO reply")
        }
        self.pageSize = Int(ps)
        self.pages = Int(n)
        do { pool = try SharedPages(mapping: fd, pageSize: Int(ps), pages: Int(n)) } catch {
            throw KVAgentError(status: nil, message: error.description)
        }
        nextID = 1
    }

    public func close() { socket.close() }

    // MARK: - calls

    /// Stores blocks: reserves pages, copies the bytes in, commits. Returns
    /// how many were stored (keys already there, or with no page free, are not).
    @discardableResult
    public func put(_ blocks: [(key: BlockKey, bytes: [UInt8])], leaseMillis: UInt32 = 0) throws(KVAgentError) -> Int {
        for b in blocks where b.bytes.count != pageSize {
            throw KVAgentError(status: .badSize, message: "block of \(b.bytes.count) bytes; the agent's pages are \(pageSize)")
        }
        let (id, pages) = try reserve(blocks.map(\.key), leaseMillis: leaseMillis)
        guard id != 0 else { return 0 }
        for (b, p) in zip(blocks, pages) where p >= 0 { pool.write(page: Int(p), from: b.bytes) }
        return try commit(id)
    }

    /// The longest stored prefix of `keys`, copied out of the pool.
    public func get(_ keys: [BlockKey], leaseMillis: UInt32 = 0) throws(KVAgentError) -> [[UInt8]] {
        try withLease(keys, leaseMillis) { pages in pages.map { pool.read(page: Int($0)) } } ?? []
    }

    /// The longest stored prefix of `keys`, copied into `buffers` (one
    /// page-sized buffer per key, reused: no allocation). Returns how many
    /// leading buffers were filled.
    public func get(_ keys: [BlockKey], into buffers: inout [[UInt8]], leaseMillis: UInt32 = 0) throws(KVAgentError) -> Int {
        precondition(buffers.count >= keys.count && buffers.allSatisfy { $0.count == pageSize }, "one page-sized buffer per key")
        return try withLease(keys, leaseMillis) { pages in
            for (i, p) in pages.enumerated() { pool.read(page: Int(p), into: &buffers[i]) }
            return pages.count
        } ?? 0
    }

    /// Leases the longest stored prefix, lets `body` copy its pages, releases; nil on a miss.
    private func withLease<R>(_ keys: [BlockKey], _ leaseMillis: UInt32, _ body: ([Int32]) -> R) throws(KVAgentError) -> R? {
        let (id, pages) = try lease(keys, leaseMillis: leaseMillis)
        guard id != 0 else { return nil }
        let out = body(pages)
        try release(id)
        return out
    }

    /// Step one of a put: page numbers to fill (-1: no write needed, -2: no space).
    public func reserve(_ keys: [BlockKey], leaseMillis: UInt32 = 0) throws(KVAgentError) -> (id: UInt64, pages: [Int32]) {
        var w = AgentProtocol.Writer()
        w.u32(leaseMillis)
        w.keys(keys)
        return try idAndPages(try request(.putAlloc, w.bytes))
    }

    @discardableResult
    public func commit(_ id: UInt64) throws(KVAgentError) -> Int {
        var w = AgentProtocol.Writer()
        w.u64(id)
        return Int(try u32Reply(try request(.putCommit, w.bytes)))
    }

    public func abort(_ id: UInt64) throws(KVAgentError) {
        var w = AgentProtocol.Writer()
        w.u64(id)
        _ = try request(.putAbort, w.bytes)
    }

    /// Pins the longest stored prefix; copy the pages, then `release`.
    public func lease(_ keys: [BlockKey], leaseMillis: UInt32 = 0) throws(KVAgentError) -> (id: UInt64, pages: [Int32]) {
        var w = AgentProtocol.Writer()
        w.u32(leaseMillis)
        w.keys(keys)
        return try idAndPages(try request(.get, w.bytes))
    }

    public func release(_ id: UInt64) throws(KVAgentError) {
        var w = AgentProtocol.Writer()
        w.u64(id)
        _ = try request(.release, w.bytes)
    }

    public func exists(_ keys: [BlockKey]) throws(KVAgentError) -> Int { try keysCall(.exists, keys) }
    public func prefetch(_ keys: [BlockKey]) throws(KVAgentError) -> Int { try keysCall(.prefetch, keys) }
    @discardableResult
    public func delete(_ keys: [BlockKey]) throws(KVAgentError) -> Int { try keysCall(.delete, keys) }

    /// The agent's counters (JSON text).
    public func stats() throws(KVAgentError) -> String {
        String(decoding: try request(.stats, []), as: UTF8.self)
    }

    /// Sends a raw frame and returns the raw reply (for tests of error paths).
    public func raw(op: UInt16, body: [UInt8], deadline: UInt64? = nil) throws(KVAgentError) -> [UInt8] {
        let id = nextID
        nextID &+= 1
        return try Self.call(socket, &decoder, rawOp: op, id: id, deadline: deadline ?? monotonicNanos() &+ timeoutMillis * 1_000_000,
                             body: body, wantDescriptor: false).0
    }

    // MARK: - plumbing

    private func keysCall(_ op: AgentProtocol.Op, _ keys: [BlockKey]) throws(KVAgentError) -> Int {
        var w = AgentProtocol.Writer()
        w.keys(keys)
        return Int(try u32Reply(try request(op, w.bytes)))
    }

    private func request(_ op: AgentProtocol.Op, _ body: [UInt8]) throws(KVAgentError) -> [UInt8] {
        try raw(op: op.rawValue, body: body)
    }

    private func u32Reply(_ b: [UInt8]) throws(KVAgentError) -> UInt32 {
        var r = AgentProtocol.Reader(b)
        guard let v = try? r.u32() else { throw KVAgentError(status: nil, message: "malformed reply") }
        return v
    }

    private func idAndPages(_ b: [UInt8]) throws(KVAgentError) -> (UInt64, [Int32]) {
        var r = AgentProtocol.Reader(b)
        guard let id = try? r.u64(), let n = try? r.u32(), r.remaining == Int(n) * 4 else {
            throw KVAgentError(status: nil, message: "malformed reply")
        }
        var pages: [Int32] = []
        for _ in 0..<n { pages.append((try? r.i32()) ?? -2) }
        return (id, pages)
    }

    private static func call(_ socket: BlockingSocket, _ decoder: inout AgentProtocol.Decoder, op: AgentProtocol.Op, id: UInt32,
                             deadline: UInt64, body: [UInt8], wantDescriptor: Bool) throws(KVAgentError) -> ([UInt8], Int32?) {
        try call(socket, &decoder, rawOp: op.rawValue, id: id, deadline: deadline, body: body, wantDescriptor: wantDescriptor)
    }

    private static func call(_ socket: BlockingSocket, _ decoder: inout AgentProtocol.Decoder, rawOp: UInt16, id: UInt32,
                             deadline: UInt64, body: [UInt8], wantDescriptor: Bool) throws(KVAgentError) -> ([UInt8], Int32?) {
        do {
            try socket.send(AgentProtocol.Frame(op: rawOp, requestID: id, deadline: deadline, body: body).encoded())
            var descriptor: Int32?
            while true {
                let (bytes, fd) = try socket.receive()
                if let fd { descriptor = fd }
                guard !bytes.isEmpty else { throw KVAgentError(status: nil, message: "the KV agent closed the connection") }
                let frames: [AgentProtocol.Frame]
                do { frames = try decoder.feed(bytes) } catch {
                    throw KVAgentError(status: nil, message: "bad reply stream: \(error)")
                }
                guard let f = frames.first else { continue }
                guard f.status == 0 else {
                    throw KVAgentError(status: AgentProtocol.Status(rawValue: f.status) ?? .internalError,
                                       message: String(decoding: f.body, as: UTF8.self))
                }
                if wantDescriptor && descriptor == nil { throw KVAgentError(status: nil, message: "no pool descriptor in the HELLO reply") }
                return (f.body, descriptor)
            }
        } catch let e as KVAgentError {
            throw e
        } catch {
            throw KVAgentError(status: nil, message: "KV agent connection failed: \(error)")
        }
    }
}
