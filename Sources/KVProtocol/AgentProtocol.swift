/// The KV agent's local protocol (Unix stream socket), shared by the agent,
/// the Swift client and the C client (`Sources/CKVClient/include/switchboard_kv.h`
/// spells the same layout; `docs/kv-agent.md` describes it).
///
/// Every message is a 24-byte little-endian header and a body:
///
///     u32 magic "SBKV"   u32 body length   u16 op   u16 status
///     u32 request id     u64 deadline (CLOCK_MONOTONIC ns, absolute; 0 = none)
///
/// A response repeats the request's op and id; status 0 is success, any other
/// status carries a UTF-8 message as its body. Block data never crosses the
/// socket: HELLO's response carries the pool's memfd (SCM_RIGHTS), and puts
/// and gets exchange page numbers in it.
public enum AgentProtocol {
    public static let magic: UInt32 = 0x564B_4253  // "SBKV"
    public static let version: UInt32 = 1
    public static let headerSize = 24
    public static let maxBody = 4 << 20
    public static let maxKeys = 65_536

    public enum Op: UInt16, Sendable, CaseIterable {
        /// u32 version, u32 page size (0 = any) → u32 version, u32 page size, u64 pages; the pool's fd attached.
        case hello = 1
        /// u32 lease ms, u32 n, n keys → u64 reservation, u32 n, n × i32 page (-1 no write needed, -2 no space).
        case putAlloc = 2
        /// u64 reservation → u32 blocks stored.
        case putCommit = 3
        /// u64 reservation → (empty).
        case putAbort = 4
        /// u32 lease ms, u32 n, n keys → u64 lease, u32 hits, hits × i32 page (longest prefix, pinned).
        case get = 5
        /// u64 lease → (empty).
        case release = 6
        /// u32 n, n keys → u32 longest stored prefix.
        case exists = 7
        /// u32 n, n keys → u32 longest prefix now in L1 (marks them used; the seam for L2 fetches).
        case prefetch = 8
        /// u32 n, n keys → u32 removed.
        case delete = 9
        /// (empty) → JSON object of counters.
        case stats = 10
    }

    public enum Status: UInt16, Sendable, Error, CaseIterable {
        case ok = 0
        case badRequest = 1
        case badSize = 2
        case unknownID = 3
        case deadlineExceeded = 4
        case unsupportedVersion = 5
        case tooLarge = 6
        case notReady = 7
        case internalError = 8
    }

    /// One message.
    public struct Frame: Sendable, Equatable {
        public var op: UInt16
        public var status: UInt16
        public var requestID: UInt32
        public var deadline: UInt64
        public var body: [UInt8]

        public init(op: UInt16, status: UInt16 = 0, requestID: UInt32, deadline: UInt64 = 0, body: [UInt8] = []) {
            self.op = op
            self.status = status
            self.requestID = requestID
            self.deadline = deadline
            self.body = body
        }

        /// A frame's header alone, for a body then appended in place
        /// (`bodyLength` must be what follows).
        public static func header(magic: UInt32, op: UInt16, status: UInt16 = 0, requestID: UInt32, bodyLength: Int,
                                  into w: inout Writer) {
            w.u32(magic)
            w.u32(UInt32(bodyLength))
            w.u16(op)
            w.u16(status)
            w.u32(requestID)
            w.u64(0)
        }

        /// The frame on the wire; `magic` names the protocol (the agent's
        /// by default; the L2 cache servers' is `CacheProtocol.magic`).
        public func encoded(magic: UInt32 = AgentProtocol.magic) -> [UInt8] {
            var w = Writer(capacity: AgentProtocol.headerSize + body.count)
            w.u32(magic)
            w.u32(UInt32(body.count))
            w.u16(op)
            w.u16(status)
            w.u32(requestID)
            w.u64(deadline)
            w.bytes += body
            return w.bytes
        }
    }

    /// Why a byte stream is not a valid sequence of frames (the connection is closed after).
    public enum StreamError: Error, Equatable, Sendable, CustomStringConvertible {
        case badMagic(UInt32)
        case bodyTooLarge(Int, limit: Int)

        public var description: String {
            switch self {
            case .badMagic(let m): return "not a Switchboard KV message (magic 0x\(String(m, radix: 16)))"
            case .bodyTooLarge(let n, let limit): return "message body of \(n) bytes exceeds the \(limit)-byte limit"
            }
        }
    }

    /// Splits a byte stream into frames (the agent's protocol by default;
    /// the L2 cache servers' frames have the same header and their own magic).
    public struct Decoder: Sendable {
        private var buffer: [UInt8] = []
        private var offset = 0
        private let magic: UInt32
        private let maxBody: Int

        public init(magic: UInt32 = AgentProtocol.magic, maxBody: Int = AgentProtocol.maxBody) {
            self.magic = magic
            self.maxBody = maxBody
        }

        public mutating func feed(_ bytes: some Collection<UInt8>) throws(StreamError) -> [Frame] {
            buffer.append(contentsOf: bytes)
            var out: [Frame] = []
            while buffer.count - offset >= AgentProtocol.headerSize {
                var r = Reader(buffer, from: offset)
                let m = (try? r.u32()) ?? 0
                guard m == magic else { throw .badMagic(m) }
                let len = Int((try? r.u32()) ?? 0)
                guard len <= maxBody else { throw .bodyTooLarge(len, limit: maxBody) }
                guard buffer.count - offset >= AgentProtocol.headerSize + len else { break }
                let op = (try? r.u16()) ?? 0, status = (try? r.u16()) ?? 0
                let id = (try? r.u32()) ?? 0, deadline = (try? r.u64()) ?? 0
                let start = offset + AgentProtocol.headerSize
                out.append(Frame(op: op, status: status, requestID: id, deadline: deadline,
                                 body: Array(buffer[start..<(start + len)])))
                offset = start + len
            }
            if offset > 0 && offset == buffer.count {
                buffer.removeAll(keepingCapacity: true)
                offset = 0
            } else if offset > 1 << 16 {
                buffer.removeFirst(offset)
                offset = 0
            }
            return out
        }
    }

    /// A malformed body.
    public struct Malformed: Error, Sendable, CustomStringConvertible {
        public let description: String
        public init(_ d: String) { description = d }
    }

    /// Little-endian reads with bounds checks.
    public struct Reader {
        let bytes: [UInt8]
        var at: Int

        public init(_ bytes: [UInt8], from: Int = 0) {
            self.bytes = bytes
            at = from
        }

        public var remaining: Int { bytes.count - at }

        mutating func take(_ n: Int) throws(Malformed) -> Int {
            guard bytes.count - at >= n else { throw Malformed("body too short: wanted \(n) more bytes at offset \(at), have \(bytes.count - at)") }
            defer { at += n }
            return at
        }

        public mutating func u16() throws(Malformed) -> UInt16 {
            let i = try take(2)
            return UInt16(bytes[i]) | UInt16(bytes[i + 1]) << 8
        }

        public mutating func u32() throws(Malformed) -> UInt32 {
            let i = try take(4)
            var v: UInt32 = 0
            for k in 0..<4 { v |= UInt32(bytes[i + k]) << (8 * UInt32(k)) }
            return v
        }

        public mutating func u64() throws(Malformed) -> UInt64 {
            let i = try take(8)
            var v: UInt64 = 0
            for k in 0..<8 { v |= UInt64(bytes[i + k]) << (8 * UInt64(k)) }
            return v
        }

        public mutating func i32() throws(Malformed) -> Int32 { Int32(bitPattern: try u32()) }

        /// The next `n` bytes as a view of the body (no copy).
        public mutating func slice(_ n: Int) throws(Malformed) -> ArraySlice<UInt8> {
            let i = try take(n)
            return bytes[i..<(i + n)]
        }

        /// The next `n` bytes (block data).
        public mutating func bytes(_ n: Int) throws(Malformed) -> [UInt8] {
            let i = try take(n)
            return Array(bytes[i..<(i + n)])
        }

        public mutating func key() throws(Malformed) -> BlockKey {
            let h = try u64()
            return BlockKey(high: h, low: try u64())
        }

        /// u32 count then that many keys (at most `maxKeys`).
        public mutating func keys() throws(Malformed) -> [BlockKey] {
            let n = Int(try u32())
            guard n <= AgentProtocol.maxKeys else { throw Malformed("\(n) keys in one call; the limit is \(AgentProtocol.maxKeys)") }
            guard remaining >= n * 16 else { throw Malformed("\(n) keys announced but only \(remaining) bytes follow") }
            var out: [BlockKey] = []
            out.reserveCapacity(n)
            for _ in 0..<n { out.append(try key()) }
            return out
        }

        public func expectEnd() throws(Malformed) {
            guard remaining == 0 else { throw Malformed("\(remaining) unexpected bytes after the body") }
        }
    }

    /// Little-endian writes.
    public struct Writer {
        public var bytes: [UInt8] = []
        public init(capacity: Int = 64) { bytes.reserveCapacity(capacity) }
        public mutating func u16(_ v: UInt16) { bytes.append(UInt8(v & 0xFF)); bytes.append(UInt8(v >> 8)) }
        public mutating func u32(_ v: UInt32) { for k in 0..<4 { bytes.append(UInt8(truncatingIfNeeded: v >> (8 * UInt32(k)))) } }
        public mutating func u64(_ v: UInt64) { for k in 0..<8 { bytes.append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(k)))) } }
        public mutating func i32(_ v: Int32) { u32(UInt32(bitPattern: v)) }
        public mutating func key(_ k: BlockKey) { u64(k.high); u64(k.low) }
        public mutating func keys(_ ks: [BlockKey]) {
            u32(UInt32(ks.count))
            for k in ks { key(k) }
        }
    }
}
