import EventLoop

/// Answers one request. Call exactly one of `respond` or `startStream` …
/// `endStream`. Confined to the connection's loop.
public final class HTTP1ResponseWriter {
    /// Strong: a response may finish after its client left (timers of a generation);
    /// the connection then lives until the writer goes.
    let connection: HTTP1Connection
    let keepAlive: Bool
    private var started = false
    private var finished = false

    init(connection: HTTP1Connection, keepAlive: Bool) {
        self.connection = connection
        self.keepAlive = keepAlive
    }

    /// The loop this response runs on (for timers).
    public var loop: EventLoop { connection.socket.loop }
    /// False once the client went away.
    public var isOpen: Bool { !connection.socket.isClosed }

    /// A whole response with Content-Length.
    public func respond(status: Int, headers: [(String, String)] = [], body: [UInt8] = []) {
        guard !started else { return }
        started = true
        finished = true
        writeHead(status, framing: "content-length: \(body.count)", headers)
        connection.socket.write(body)
        connection.socket.flush()
        connection.responseFinished(keepAlive: keepAlive)
    }

    /// Starts a chunked response (server-sent events and other streams).
    public func startStream(status: Int, headers: [(String, String)]) {
        guard !started else { return }
        started = true
        writeHead(status, framing: "transfer-encoding: chunked", headers)
        connection.socket.flush()
    }

    private func writeHead(_ status: Int, framing: String, _ headers: [(String, String)]) {
        var head = "HTTP/1.1 \(status) \(Self.reason(status))\r\n\(framing)\r\n"
        for (n, v) in headers { head += "\(n): \(v)\r\n" }
        if !keepAlive { head += "connection: close\r\n" }
        head += "\r\n"
        connection.socket.write(Array(head.utf8))
    }

    /// Sends one chunk of a stream.
    public func writeChunk(_ bytes: [UInt8]) {
        guard started, !finished, !bytes.isEmpty else { return }
        connection.socket.write(Array(String(bytes.count, radix: 16).utf8) + [13, 10])
        connection.socket.write(bytes)
        connection.socket.write([13, 10])
        connection.socket.flush()
    }

    /// Drops the connection mid-response (no terminating chunk): how an
    /// upstream that dies mid-stream looks to its client.
    public func abort() {
        guard !finished else { return }
        finished = true
        connection.socket.flush()
        connection.socket.close()
    }

    /// Ends a stream.
    public func endStream() {
        guard started, !finished else { return }
        finished = true
        connection.socket.write(Array("0\r\n\r\n".utf8))
        connection.socket.flush()
        connection.responseFinished(keepAlive: keepAlive)
    }

    static func reason(_ s: Int) -> String {
        switch s {
        case 200: return "OK"
        case 400: return "Bad Request"
        case 404: return "Not Found"
        case 405: return "Method Not Allowed"
        case 413: return "Payload Too Large"
        case 500: return "Internal Server Error"
        case 503: return "Service Unavailable"
        default: return "Status"
        }
    }
}
