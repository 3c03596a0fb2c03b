import EventLoop

/// One client connection; requests are answered in order.
final class HTTP1Connection: StreamSocketDelegate {
    let socket: StreamSocket
    let handler: HTTP1Handler
    private var parser = HTTP1RequestParser()
    private var queue: [HTTP1Request] = []
    private var busy = false

    init(socket: StreamSocket, handler: @escaping HTTP1Handler) {
        self.socket = socket
        self.handler = handler
        socket.delegate = self
    }

    static func retain(_ c: HTTP1Connection, on loop: EventLoop) {
        let set = (loop.loopLocal["http1"] as? HTTP1ConnectionSet) ?? {
            let s = HTTP1ConnectionSet()
            loop.loopLocal["http1"] = s
            return s
        }()
        set.all[ObjectIdentifier(c)] = c
    }

    func socketRead(_ socket: StreamSocket, _ bytes: ArraySlice<UInt8>) {
        do {
            queue += try parser.feed(bytes)
        } catch {
            let status = error == .bodyTooLarge ? 413 : (error == .headersTooLarge ? 431 : 400)
            let w = HTTP1ResponseWriter(connection: self, keepAlive: false)
            w.respond(status: status, headers: [("content-type", "text/plain")], body: Array("bad request: \(error)\n".utf8))
            return
        }
        dispatch()
    }

    private func dispatch() {
        guard !busy, !queue.isEmpty, !socket.isClosed else { return }
        let r = queue.removeFirst()
        busy = true
        let keep = (r.header("connection")?.lowercased() != "close")
        handler(r, HTTP1ResponseWriter(connection: self, keepAlive: keep))
    }

    func responseFinished(keepAlive: Bool) {
        busy = false
        if !keepAlive {
            socket.shutdownWrite()
            socket.close()
            return
        }
        dispatch()
    }

    func socketDrained(_ socket: StreamSocket) {}

    func socketClosed(_ socket: StreamSocket, error: SystemError?) {
        (socket.loop.loopLocal["http1"] as? HTTP1ConnectionSet)?.all[ObjectIdentifier(self)] = nil
    }
}

final class HTTP1ConnectionSet {
    var all: [ObjectIdentifier: HTTP1Connection] = [:]
}
