import EventLoop

/// Handles requests for an `HTTP1Server`; called on the connection's loop.
public typealias HTTP1Handler = @Sendable (HTTP1Request, HTTP1ResponseWriter) -> Void

/// A small HTTP/1.1 server (keep-alive, chunked bodies both ways) on the
/// project's event loops. Used by the vLLM simulator and admin endpoints.
public final class HTTP1Server: Sendable {
    let group: EventLoopGroup
    let handler: HTTP1Handler
    public let listener: Listener

    public init(address: SocketAddress, group: EventLoopGroup, handler: @escaping HTTP1Handler) throws {
        self.group = group
        self.handler = handler
        self.listener = try Listener(address: address)
        for loop in group.loops {
            try listener.attach(to: loop) { [handler] fd, loop in
                guard let sock = try? StreamSocket(fd: fd, loop: loop) else { return }
                let c = HTTP1Connection(socket: sock, handler: handler)
                HTTP1Connection.retain(c, on: loop)
            }
        }
    }
}
