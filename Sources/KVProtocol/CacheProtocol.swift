/// The protocol between node agents and L2 cache servers (TCP). Frames have
/// the agent protocol's 24-byte header (`AgentProtocol.Frame`, decoded by
/// `AgentProtocol.Decoder(magic: CacheProtocol.magic, maxBody: maxBody)`)
/// with their own magic, and the `deadline` field carries a **timeout in
/// milliseconds** relative to the server's receipt (clocks differ between
/// machines; 0 = the server's default). Unlike the agent's, these frames
/// carry block data, each block with the checksum the writer computed: a
/// reader verifies it and treats a mismatch as a miss.
///
///     PUT     u32 n, n × (key, u64 checksum, u32 length, bytes)  → u32 stored
///     GET     u32 n, n × key                                     → u32 found, found × (u64 checksum, u32 length, bytes)
///                                                                  (the longest stored prefix of the keys)
///     EXISTS  u32 n, n × key                                     → u32 longest stored prefix
///     DELETE  u32 n, n × key                                     → u32 removed
///     STATS   (empty)                                            → JSON object
///
/// A response repeats the op and request id; a non-zero status carries a
/// UTF-8 message. Batches are what make remote reads pay: one round trip
/// for a whole prefix, not one message per block.
public enum CacheProtocol {
    public static let magic: UInt32 = 0x324C_4253  // "SBL2"
    /// A batch of 2 MiB blocks fits (32 blocks + headers).
    public static let maxBody = 80 << 20
    public static let maxKeys = 65_536
    public static let maxBlockBytes = 16 << 20

    public enum Op: UInt16, Sendable, CaseIterable {
        case put = 1, get = 2, exists = 3, delete = 4, stats = 5
    }

    public enum Status: UInt16, Sendable, Error, CaseIterable {
        case ok = 0
        case badRequest = 1
        case tooLarge = 2
        case deadlineExceeded = 3
        case outOfMemory = 4
        case internalError = 5
    }

    /// One stored block as it travels.
    public struct Block: Sendable, Equatable {
        public var checksum: UInt64
        public var bytes: [UInt8]
        public init(checksum: UInt64, bytes: [UInt8]) {
            self.checksum = checksum
            self.bytes = bytes
        }
    }

    /// A request's body, decoded and checked (never trusting a count or a
    /// length the bytes do not back).
    public enum Request: Sendable, Equatable {
        case put([(BlockKey, Block)])
        case get([BlockKey])
        case exists([BlockKey])
        case delete([BlockKey])
        case stats

        public static func == (a: Request, b: Request) -> Bool {
            switch (a, b) {
            case (.put(let x), .put(let y)): return x.count == y.count && zip(x, y).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
            case (.get(let x), .get(let y)), (.exists(let x), .exists(let y)), (.delete(let x), .delete(let y)): return x == y
            case (.stats, .stats): return true
            default: return false
            }
        }

        public var op: Op {
            switch self {
            case .put: return .put
            case .get: return .get
            case .exists: return .exists
            case .delete: return .delete
            case .stats: return .stats
            }
        }

        public func body() -> [UInt8] {
            var w = AgentProtocol.Writer()
            switch self {
            case .put(let blocks):
                w.bytes.reserveCapacity(4 + blocks.reduce(0) { $0 + 28 + $1.1.bytes.count })
                w.u32(UInt32(blocks.count))
                for (k, b) in blocks {
                    w.key(k)
                    w.u64(b.checksum)
                    w.u32(UInt32(b.bytes.count))
                    w.bytes += b.bytes
                }
            case .get(let keys), .exists(let keys), .delete(let keys):
                w.u32(UInt32(keys.count))
                for k in keys { w.key(k) }
            case .stats:
                break
            }
            return w.bytes
        }

        public static func decode(op raw: UInt16, body: [UInt8]) throws(AgentProtocol.Malformed) -> Request {
            guard let op = Op(rawValue: raw) else { throw AgentProtocol.Malformed("unknown op \(raw)") }
            var r = AgentProtocol.Reader(body)
            switch op {
            case .put:
                return .put(try CacheProtocol.decodePutView(body).map { ($0.key, Block(checksum: $0.checksum, bytes: Array($0.bytes))) })
            case .get, .exists, .delete:
                let keys = try r.keys()
                guard keys.count <= CacheProtocol.maxKeys else { throw AgentProtocol.Malformed("\(keys.count) keys; at most \(CacheProtocol.maxKeys)") }
                try r.expectEnd()
                return op == .get ? .get(keys) : op == .exists ? .exists(keys) : .delete(keys)
            case .stats:
                try r.expectEnd()
                return .stats
            }
        }
    }

    /// A PUT body's blocks as views of the body (no copies), checked like
    /// `Request.decode` checks them: the whole body is valid or it is refused.
    public static func decodePutView(_ body: [UInt8]) throws(AgentProtocol.Malformed) -> [(key: BlockKey, checksum: UInt64, bytes: ArraySlice<UInt8>)] {
        var r = AgentProtocol.Reader(body)
        let n = Int(try r.u32())
        guard n <= maxKeys, n * 28 <= r.remaining else {
            throw AgentProtocol.Malformed("PUT of \(n) blocks does not fit its \(body.count)-byte body")
        }
        var out: [(key: BlockKey, checksum: UInt64, bytes: ArraySlice<UInt8>)] = []
        out.reserveCapacity(n)
        for i in 0..<n {
            let k = try r.key(), sum = try r.u64(), len = Int(try r.u32())
            guard len <= maxBlockBytes, len <= r.remaining else {
                throw AgentProtocol.Malformed("PUT block \(i) says \(len) bytes; \(r.remaining) remain")
            }
            out.append((k, sum, try r.slice(len)))
        }
        try r.expectEnd()
        return out
    }

    /// A GET response body: the blocks found, in key order.
    public static func getResponse(_ blocks: [Block]) -> [UInt8] {
        var w = AgentProtocol.Writer(capacity: 4 + blocks.reduce(0) { $0 + 12 + $1.bytes.count })
        w.u32(UInt32(blocks.count))
        for b in blocks {
            w.u64(b.checksum)
            w.u32(UInt32(b.bytes.count))
            w.bytes += b.bytes
        }
        return w.bytes
    }

    public static func decodeGetResponse(_ body: [UInt8]) throws(AgentProtocol.Malformed) -> [Block] {
        var r = AgentProtocol.Reader(body)
        let n = Int(try r.u32())
        guard n <= maxKeys, n * 12 <= r.remaining else { throw AgentProtocol.Malformed("GET response of \(n) blocks does not fit") }
        var out: [Block] = []
        out.reserveCapacity(n)
        for _ in 0..<n {
            let sum = try r.u64(), len = Int(try r.u32())
            guard len <= maxBlockBytes, len <= r.remaining else { throw AgentProtocol.Malformed("GET response block of \(len) bytes does not fit") }
            out.append(Block(checksum: sum, bytes: try r.bytes(len)))
        }
        try r.expectEnd()
        return out
    }
}
