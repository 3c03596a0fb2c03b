import EventLoop
import HTTP1

/// The plain-HTTP side door of a long-running component (the gateway, the
/// KV agent): probes, Prometheus, debug pages. A fixed route table; an
/// unknown path answers 404 and a known path with another method 405, both
/// as JSON naming the paths that exist. Not authenticated: bind it to
/// loopback or a pod-internal address.
public final class AdminServer: Sendable {
    public let server: HTTP1Server
    public let routes: [AdminRoute]

    public init(address: SocketAddress, group: EventLoopGroup, routes: [AdminRoute]) throws {
        self.routes = routes
        let table = Dictionary(routes.map { ("\($0.method) \($0.path)", $0) }, uniquingKeysWith: { a, _ in a })
        let paths = Array(Set(routes.map(\.path))).sorted()
        let known = paths.joined(separator: ", ")
        let methods = Dictionary(grouping: routes, by: \.path).mapValues { $0.map(\.method).sorted().joined(separator: ", ") }
        server = try HTTP1Server(address: address, group: group) { req, w in
            let r: AdminResponse
            if let route = table["\(req.method) \(req.path)"] {
                r = route.handler(req.query)
            } else if let allowed = methods[req.path] {
                r = .json(#"{"error":"method not allowed here; use \#(allowed)"}"#, status: 405)
            } else {
                r = .json(#"{"error":"unknown admin path; try \#(known)"}"#, status: 404)
            }
            w.respond(status: r.status, headers: [("content-type", r.contentType)], body: r.body)
        }
    }

    /// The port bound (useful with port 0).
    public var boundPort: Int? { server.listener.boundPort }
}
