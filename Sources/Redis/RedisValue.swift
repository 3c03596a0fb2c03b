/// A Redis reply, in safe Swift.
public enum RedisValue: Sendable, Equatable, CustomStringConvertible {
    case string([UInt8])
    case integer(Int64)
    case array([RedisValue])
    case null
    case status(String)
    case error(String)

    public var description: String {
        switch self {
        case .string(let b): return "\"\(String(decoding: b, as: UTF8.self))\""
        case .integer(let i): return "\(i)"
        case .array(let a): return "[" + a.map(\.description).joined(separator: ", ") + "]"
        case .null: return "nil"
        case .status(let s): return s
        case .error(let e): return "(error) \(e)"
        }
    }

    /// The bytes of a bulk string as text.
    public var text: String? {
        if case .string(let b) = self { return String(decoding: b, as: UTF8.self) }
        if case .status(let s) = self { return s }
        return nil
    }

    public var int: Int64? {
        if case .integer(let i) = self { return i }
        return nil
    }
}

/// Why a command got no reply.
public enum RedisError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Not connected (connecting, or waiting to reconnect after a failure).
    case unavailable(String)
    /// No reply within the command timeout (the connection is then reset).
    case timeout
    /// The connection dropped with the command in flight.
    case disconnected(String)

    public var description: String {
        switch self {
        case .unavailable(let why): return "redis unavailable: \(why)"
        case .timeout: return "redis command timed out"
        case .disconnected(let why): return "redis connection lost: \(why)"
        }
    }
}

/// Where and how to reach Redis. Debian's hiredis (0.14) has no TLS: reach
/// a TLS Redis through a local TLS proxy (stunnel, or a sidecar), and point
/// this at the proxy's plain port.
public struct RedisConfiguration: Sendable, Equatable {
    public var host: String
    public var port: Int
    /// AUTH: password alone, or an ACL user with `username`.
    public var password: String?
    public var username: String?
    /// SELECT after connecting.
    public var database = 0
    public var commandTimeoutNanos: UInt64 = 100_000_000
    public var connectTimeoutNanos: UInt64 = 1_000_000_000
    /// Reconnect backoff: starts here, doubles per failed attempt, up to the max.
    public var reconnectMinNanos: UInt64 = 50_000_000
    public var reconnectMaxNanos: UInt64 = 2_000_000_000

    public init(host: String, port: Int = 6379) {
        self.host = host
        self.port = port
    }

    /// `host:port` (IPv6 in brackets).
    public static func parse(address: String) -> RedisConfiguration? {
        if address.hasPrefix("[") {
            guard let close = address.firstIndex(of: "]") else { return nil }
            let host = String(address[address.index(after: address.startIndex)..<close])
            let rest = address[address.index(after: close)...]
            guard rest.isEmpty || rest.hasPrefix(":") else { return nil }
            let port = rest.isEmpty ? 6379 : Int(rest.dropFirst()) ?? -1
            return (1...65535).contains(port) ? RedisConfiguration(host: host, port: port) : nil
        }
        let parts = address.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count <= 2, let h = parts.first, !h.isEmpty else { return nil }
        let port = parts.count == 2 ? Int(parts[1]) ?? -1 : 6379
        return (1...65535).contains(port) ? RedisConfiguration(host: String(h), port: port) : nil
    }
}
