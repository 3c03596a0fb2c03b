import EventLoop

/// Why a request got no response.
public enum HTTP1ClientError: Error, Sendable, Equatable, CustomStringConvertible {
    case timeout(milliseconds: Int)
    case connectionFailed(String)
    case closedBeforeResponse
    case malformedResponse(String)
    case busy

    public var description: String {
        switch self {
        case .timeout(let ms): return "no response within \(ms) ms"
        case .connectionFailed(let why): return "connection failed: \(why)"
        case .closedBeforeResponse: return "connection closed before the response ended"
        case .malformedResponse(let why): return "malformed response: \(why)"
        case .busy: return "a request is already in flight on this connection"
        }
    }
}

/// A keep-alive HTTP/1.1 client for one `host:port`, one request at a time,
/// on one event loop (the scraper's). Reconnects on demand; a timeout
/// closes the connection so a slow server cannot wedge the next request.
public final class HTTP1Client: StreamSocketDelegate {
    public let host: String
    public let port: Int
    public let loop: EventLoop
    public var maxBodyBytes = 16 << 20
    private var socket: StreamSocket?
    private var parser = HTTP1ResponseParser()
    private var pending: ((Result<HTTP1Response, HTTP1ClientError>) -> Void)?
    private var timer: TimerID?

    public init(host: String, port: Int, loop: EventLoop) {
        self.host = host
        self.port = port
        self.loop = loop
    }

    public var isBusy: Bool { pending != nil }

    /// GETs `path`; `completion` runs on the loop exactly once.
    public func get(_ path: String, timeoutNanos: UInt64, completion: @escaping (Result<HTTP1Response, HTTP1ClientError>) -> Void) {
        send(Array("GET \(path) HTTP/1.1\r\nHost: \(host):\(port)\r\nUser-Agent: switchboard\r\nAccept: text/plain\r\n\r\n".utf8),
             timeoutNanos: timeoutNanos, completion: completion)
    }

    /// POSTs `body` to `path`; `completion` runs on the loop exactly once.
    public func post(_ path: String, contentType: String, body: [UInt8], timeoutNanos: UInt64,
                     completion: @escaping (Result<HTTP1Response, HTTP1ClientError>) -> Void) {
        let head = "POST \(path) HTTP/1.1\r\nHost: \(host):\(port)\r\nUser-Agent: switchboard\r\n"
            + "Content-Type: \(contentType)\r\nContent-Length: \(body.count)\r\n\r\n"
        send(Array(head.utf8) + body, timeoutNanos: timeoutNanos, completion: completion)
    }

    private func send(_ request: [UInt8], timeoutNanos: UInt64, completion: @escaping (Result<HTTP1Response, HTTP1ClientError>) -> Void) {
        guard pending == nil else { return completion(.failure(.busy)) }
        pending = completion
        parser = HTTP1ResponseParser(maxBodyBytes: maxBodyBytes)
        if socket == nil || socket!.isClosed {
            do {
                let s = try StreamSocket.connect(host: host, port: port, loop: loop)
                s.delegate = self
                socket = s
            } catch {
                return finish(.failure(.connectionFailed("\(error)")))
            }
        }
        timer = loop.schedule(afterNanos: timeoutNanos) { [weak self] in
            guard let self else { return }
            self.timer = nil
            // Report the timeout first: closing the socket would otherwise
            // report "closed before the response" for this request.
            self.finish(.failure(.timeout(milliseconds: Int(timeoutNanos / 1_000_000))))
            self.socket?.close()
        }
        socket!.write(request)
        socket!.flush()
    }

    /// Closes the connection (a pending request fails).
    public func close() {
        socket?.close()
        socket = nil
    }

    private func finish(_ r: Result<HTTP1Response, HTTP1ClientError>) {
        if let t = timer { loop.cancel(t); timer = nil }
        guard let p = pending else { return }
        pending = nil
        p(r)
    }

    public func socketRead(_ socket: StreamSocket, _ bytes: ArraySlice<UInt8>) {
        guard pending != nil else { return }
        do {
            if let resp = try parser.feed(bytes) {
                if resp.header("connection")?.lowercased() == "close" { socket.close() }
                finish(.success(resp))
            }
        } catch {
            // Report the parse failure first: closing the socket would
            // otherwise report "closed before the response" for this request.
            finish(.failure(.malformedResponse("\(error)")))
            socket.close()
        }
    }

    public func socketDrained(_ socket: StreamSocket) {}

    public func socketClosed(_ socket: StreamSocket, error: SystemError?) {
        if self.socket === socket { self.socket = nil }
        guard pending != nil else { return }
        if let resp = parser.finishAtClose() { return finish(.success(resp)) }
        if let e = error { return finish(.failure(.connectionFailed(e.description))) }
        finish(.failure(parser.sawAnything ? .closedBeforeResponse : .connectionFailed("connection closed by the server")))
    }
}
