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
