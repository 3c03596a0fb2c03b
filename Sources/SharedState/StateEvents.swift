/// One change of routing state a replica made, as exchanged between
/// gateway replicas (a batch of these is one Redis stream entry).
public enum StateEvent: Sendable, Equatable {
    /// The replica routed a prompt with these block keys to `pod`
    /// (an address, `host:port`); `capacity`: the pod's block budget in the
    /// sender's index (nil: bounded only globally).
    case prefix(pod: String, capacity: Int?, keys: [UInt64])
    /// The replica charged `user` this many weighted tokens (vtc-basic).
    case charge(user: String, tokens: Double)
    /// The replica read the usage of a response routed by `replica` under
    /// its observer ticket `ticket` (the two ext_proc streams of one request
    /// reached different replicas).
    case usage(replica: String, ticket: UInt64, promptTokens: Int?, completionTokens: Int, estimated: Bool)
    /// The sender missed messages from `replica` ("": from everyone, as at
    /// start): that replica republishes its index.
    case resync(replica: String)
}

/// The binary form of a batch of events: a version byte, then per event a
/// kind byte and its fields, integers little-endian, strings as a 16-bit
/// length and UTF-8. Decoding checks every length against what is left:
/// a truncated or foreign entry is rejected whole, never half-applied.
public enum StateBatch {
    static let version: UInt8 = 1
    /// Keys in one prefix event at most (a 2 MiB prompt in 16-byte blocks).
    static let maxKeys = 131_072

    public static func encode(_ events: [StateEvent]) -> [UInt8] {
        var out: [UInt8] = [version]
        for e in events { append(e, to: &out) }
        return out
    }

    /// Appends one event to an encoded batch (the outbox builds its batch this way).
    public static func append(_ e: StateEvent, to out: inout [UInt8]) {
        if out.isEmpty { out.append(version) }
        switch e {
        case .prefix(let pod, let capacity, let keys):
            out.append(1)
            string(pod, &out)
            int64(Int64(capacity ?? -1), &out)
            let n = min(keys.count, maxKeys)
            int64(Int64(n), &out)
            out.reserveCapacity(out.count + n * 8)
            for k in keys.prefix(n) { int64(Int64(bitPattern: k), &out) }
        case .charge(let user, let tokens):
            out.append(2)
            string(user, &out)
            int64(Int64(bitPattern: tokens.bitPattern), &out)
        case .usage(let replica, let ticket, let prompt, let completion, let estimated):
            out.append(3)
            string(replica, &out)
            int64(Int64(bitPattern: ticket), &out)
            int64(Int64(prompt ?? -1), &out)
            int64(Int64(completion), &out)
            out.append(estimated ? 1 : 0)
        case .resync(let replica):
            out.append(4)
            string(replica, &out)
        }
    }

    public enum DecodeError: Error, Equatable, CustomStringConvertible {
        case version(UInt8?)
        case truncated(at: Int)
        case unknownKind(UInt8, at: Int)
        case badField(String, at: Int)
        public var description: String {
            switch self {
            case .version(let v): return "unknown batch version \(v.map(String.init) ?? "(empty)")"
            case .truncated(let at): return "batch truncated at byte \(at)"
            case .unknownKind(let k, let at): return "unknown event kind \(k) at byte \(at)"
            case .badField(let f, let at): return "bad \(f) at byte \(at)"
            }
        }
    }

    public static func decode(_ bytes: [UInt8]) throws(DecodeError) -> [StateEvent] {
        guard bytes.first == version else { throw .version(bytes.first) }
        var r = Reader(bytes: bytes, at: 1)
        var out: [StateEvent] = []
        while r.at < bytes.count {
            let kindAt = r.at
            let kind = try r.byte()
            switch kind {
            case 1:
                let pod = try r.string()
                let cap = try r.int64()
                let n = try r.int64()
                guard n >= 0, n <= Int64(maxKeys), Int(n) * 8 <= bytes.count - r.at else { throw .badField("key count", at: r.at) }
                var keys = [UInt64](repeating: 0, count: Int(n))
                for i in 0..<Int(n) { keys[i] = UInt64(bitPattern: try r.int64()) }
                out.append(.prefix(pod: pod, capacity: cap < 0 ? nil : Int(cap), keys: keys))
            case 2:
                let user = try r.string()
                let t = Double(bitPattern: UInt64(bitPattern: try r.int64()))
                guard t.isFinite else { throw .badField("tokens", at: r.at) }
                out.append(.charge(user: user, tokens: t))
            case 3:
                let replica = try r.string()
                let ticket = UInt64(bitPattern: try r.int64())
                let p = try r.int64()
                let c = try r.int64()
                let est = try r.byte()
                guard c >= 0, c <= Int64(Int32.max), p <= Int64(Int32.max) else { throw .badField("token count", at: r.at) }
                out.append(.usage(replica: replica, ticket: ticket, promptTokens: p < 0 ? nil : Int(p), completionTokens: Int(c),
                                  estimated: est != 0))
            case 4:
                out.append(.resync(replica: try r.string()))
            default:
                throw .unknownKind(kind, at: kindAt)
            }
        }
        return out
    }

    private static func int64(_ v: Int64, _ out: inout [UInt8]) {
        var x = UInt64(bitPattern: v)
        for _ in 0..<8 {
            out.append(UInt8(truncatingIfNeeded: x))
            x >>= 8
        }
    }

    private static func string(_ s: String, _ out: inout [UInt8]) {
        let u = Array(s.utf8.prefix(Int(UInt16.max)))
        out.append(UInt8(truncatingIfNeeded: u.count))
        out.append(UInt8(truncatingIfNeeded: u.count >> 8))
        out.append(contentsOf: u)
    }

    struct Reader {
        let bytes: [UInt8]
        var at: Int
        mutating func byte() throws(DecodeError) -> UInt8 {
            guard at < bytes.count else { throw .truncated(at: at) }
            defer { at += 1 }
            return bytes[at]
        }
        mutating func int64() throws(DecodeError) -> Int64 {
            guard bytes.count - at >= 8 else { throw .truncated(at: at) }
            var x: UInt64 = 0
            for i in (0..<8).reversed() { x = x << 8 | UInt64(bytes[at + i]) }
            at += 8
            return Int64(bitPattern: x)
        }
        mutating func string() throws(DecodeError) -> String {
            let n = Int(try byte()) | Int(try byte()) << 8
            guard bytes.count - at >= n else { throw .truncated(at: at) }
            defer { at += n }
            return String(decoding: bytes[at..<at + n], as: UTF8.self)
        }
    }
}
