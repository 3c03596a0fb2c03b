internal import CSystem
import Glibc

/// A listening socket shared by every loop of a group. Each loop watches it
/// with EPOLLEXCLUSIVE, so one loop wakes per incoming connection and the
/// accepting loop owns the new connection (no hand-off between threads).
public final class Listener: @unchecked Sendable {
    // Invariant for @unchecked Sendable: `fd` is immutable after init and
    // `closed` is only flipped once under the kernel's own serialization of
    // close(); per-loop accept handlers are confined to their loops.
    public let address: SocketAddress
    /// The port actually bound (useful with port 0); nil for Unix sockets.
    public let boundPort: Int?
    let fd: Int32

    /// Binds and listens. Throws with the failing call and errno.
    public init(address: SocketAddress, backlog: Int32 = 1024) throws(SystemError) {
        switch address {
        case .tcp(let host, let port):
            var bound: Int32 = 0
            let f = csys_listen_tcp(host, Int32(port), backlog, &bound)
            guard f >= 0 else { throw SystemError("listen(\(address))", errno) }
            fd = f
            boundPort = Int(bound)
            self.address = .tcp(host: host, port: Int(bound))
        case .unix(let path):
            let f = csys_listen_unix(path, backlog)
            guard f >= 0 else { throw SystemError("listen(\(address))", errno) }
            fd = f
            boundPort = nil
            self.address = address
        }
    }

    /// Registers an accept handler for this listener on `loop`. `onAccept`
    /// receives each new non-blocking connection fd on that loop's thread.
    public func attach(to loop: EventLoop, onAccept: @escaping (Int32, EventLoop) -> Void) throws(SystemError) {
        let handler = AcceptHandler(fd: fd, loop: loop, onAccept: onAccept)
        try loop.register(fd: fd, events: [.readable, .exclusive], handler: handler)
    }

    /// Stops accepting on `loop`; call on that loop's thread.
    public func detach(from loop: EventLoop) {
        loop.unregister(fd: fd)
    }

    /// Closes the socket (and unlinks a Unix socket path). Call after every loop detached.
    public func close() {
        _ = Glibc.close(fd)
        if case .unix(let path) = address { unlink(path) }
    }
}

private final class AcceptHandler: FDHandler {
    let fd: Int32
    let loop: EventLoop
    let onAccept: (Int32, EventLoop) -> Void

    init(fd: Int32, loop: EventLoop, onAccept: @escaping (Int32, EventLoop) -> Void) {
        self.fd = fd
        self.loop = loop
        self.onAccept = onAccept
    }

    func handleEvents(_ events: IOEvents) {
        // Accept a bounded batch so one busy listener cannot starve the loop.
        for _ in 0..<64 {
            let c = csys_accept(fd)
            if c < 0 { return }
            _ = csys_set_nodelay(c)
            onAccept(c, loop)
        }
    }
}
