/// Where a server listens or a client connects: `host:port` (IPv4 or
/// bracketed IPv6 literal) or `unix:/path/to.sock`.
public enum SocketAddress: Sendable, Equatable, CustomStringConvertible {
    case tcp(host: String, port: Int)
    case unix(path: String)

    /// Parses `127.0.0.1:50051`, `[::1]:50051`, `:50051` (all interfaces) or `unix:/run/sb.sock`.
    public init(parsing text: String) throws(AddressError) {
        if text.hasPrefix("unix:") {
            let path = String(text.dropFirst(5))
            guard !path.isEmpty else { throw AddressError(text, "empty Unix socket path") }
            self = .unix(path: path)
            return
        }
        guard let colon = text.lastIndex(of: ":") else {
            throw AddressError(text, "expected host:port or unix:/path")
        }
        var host = String(text[..<colon])
        guard let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port) else {
            throw AddressError(text, "port must be a number from 0 to 65535")
        }
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        if host.isEmpty { host = "0.0.0.0" }
        self = .tcp(host: host, port: port)
    }

    public var description: String {
        switch self {
        case .tcp(let h, let p): return h.contains(":") ? "[\(h)]:\(p)" : "\(h):\(p)"
        case .unix(let p): return "unix:\(p)"
        }
    }
}

/// A listen or connect address that could not be parsed.
public struct AddressError: Error, CustomStringConvertible, Sendable {
    public let text: String
    public let reason: String
    init(_ text: String, _ reason: String) {
        self.text = text
        self.reason = reason
    }
    public var description: String { "invalid address '\(text)': \(reason)" }
}
