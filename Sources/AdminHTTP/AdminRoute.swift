/// One page of an admin endpoint: a method, an exact path (the query string
/// is ignored) and what it answers. Handlers run on the connection's event
/// loop: keep them to reading counters and snapshots.
public struct AdminRoute: Sendable {
    public let method: String
    public let path: String
    /// Called with the query parameters (`?a=1&b=x`, percent-decoded).
    public let handler: @Sendable ([String: String]) -> AdminResponse

    public init(_ path: String, method: String = "GET", handler: @escaping @Sendable () -> AdminResponse) {
        self.method = method
        self.path = path
        self.handler = { _ in handler() }
    }

    public init(_ path: String, method: String = "GET", query handler: @escaping @Sendable ([String: String]) -> AdminResponse) {
        self.method = method
        self.path = path
        self.handler = handler
    }

    /// `a=1&b=x%20y` → ["a": "1", "b": "x y"] (`+` is a space; the last of a repeated name wins).
    public static func parseQuery(_ target: String) -> [String: String] {
        guard let q = target.split(separator: "?", maxSplits: 1).dropFirst().first else { return [:] }
        var out: [String: String] = [:]
        for pair in q.split(separator: "&") {
            let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            out[decode(kv[0])] = kv.count > 1 ? decode(kv[1]) : ""
        }
        return out
    }

    private static func decode(_ s: Substring) -> String {
        var bytes: [UInt8] = []
        var it = Array(s.utf8)[...]
        while let c = it.popFirst() {
            if c == UInt8(ascii: "+") {
                bytes.append(UInt8(ascii: " "))
            } else if c == UInt8(ascii: "%"), it.count >= 2,
                      let v = UInt8(String(decoding: it.prefix(2), as: UTF8.self), radix: 16) {
                bytes.append(v)
                it = it.dropFirst(2)
            } else {
                bytes.append(c)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// What an admin page answers.
public struct AdminResponse: Sendable {
    public var status: Int
    public var contentType: String
    public var body: [UInt8]

    public init(status: Int = 200, contentType: String, body: [UInt8]) {
        self.status = status
        self.contentType = contentType
        self.body = body
    }

    public static func text(_ s: String, status: Int = 200) -> AdminResponse {
        AdminResponse(status: status, contentType: "text/plain; charset=utf-8", body: Array(s.utf8))
    }

    public static func json(_ bytes: [UInt8], status: Int = 200) -> AdminResponse {
        AdminResponse(status: status, contentType: "application/json", body: bytes)
    }

    public static func json(_ s: String, status: Int = 200) -> AdminResponse { json(Array(s.utf8), status: status) }

    /// A Prometheus text-format (0.0.4) page.
    public static func prometheus(_ page: String) -> AdminResponse {
        AdminResponse(contentType: "text/plain; version=0.0.4; charset=utf-8", body: Array(page.utf8))
    }
}
