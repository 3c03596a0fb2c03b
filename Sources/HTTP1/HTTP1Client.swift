import EventLoop

/// A response read by `HTTP1Client`.
public struct HTTP1Response: Sendable {
    public var status: Int
    public var headers: [(String, String)]
    public var body: [UInt8]

    public func header(_ name: String) -> String? {
        for (n, v) in headers where n == name { return v }
        return nil
    }
}

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
        socket!.write(Array("GET \(path) HTTP/1.1\r\nHost: \(host):\(port)\r\nUser-Agent: switchboard\r\nAccept: text/plain\r\n\r\n".utf8))
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
            socket.close()
            finish(.failure(.malformedResponse("\(error)")))
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

/// Incremental HTTP/1.1 response parser: status line, headers, and a body by
/// Content-Length, chunked encoding, or read-until-close.
struct HTTP1ResponseParser {
    enum Failure: Error { case malformed(String), tooLarge }
    let maxBodyBytes: Int
    private var buffer: [UInt8] = []
    private var head: (status: Int, headers: [(String, String)])?
    private var length: Int?
    private var chunked = false
    private var body: [UInt8] = []
    private var chunkRemaining: Int?
    private(set) var sawAnything = false

    init(maxBodyBytes: Int = 16 << 20) {
        self.maxBodyBytes = maxBodyBytes
    }

    mutating func feed(_ bytes: ArraySlice<UInt8>) throws(Failure) -> HTTP1Response? {
        sawAnything = true
        buffer.append(contentsOf: bytes)
        if head == nil {
            guard let end = HTTP1RequestParser.find(buffer, [13, 10, 13, 10]) else {
                if buffer.count > 64 * 1024 { throw .malformed("headers too large") }
                return nil
            }
            let text = String(decoding: buffer[0..<end], as: UTF8.self)
            buffer.removeFirst(end + 4)
            var lines = text.split(separator: "\r\n", omittingEmptySubsequences: false)
            let statusLine = lines.removeFirst().split(separator: " ", maxSplits: 2)
            guard statusLine.count >= 2, statusLine[0].hasPrefix("HTTP/1."), let status = Int(statusLine[1]) else {
                throw .malformed("bad status line")
            }
            var headers: [(String, String)] = []
            for l in lines {
                guard let c = l.firstIndex(of: ":") else { throw .malformed("bad header line") }
                let name = l[..<c].lowercased()
                let value = l[l.index(after: c)...].trimmingSpaces()
                headers.append((name, value))
                if name == "content-length" { length = Int(value) }
                if name == "transfer-encoding" && value.lowercased().contains("chunked") { chunked = true }
            }
            head = (status, headers)
            if let n = length, n > maxBodyBytes { throw .tooLarge }
        }
        if chunked {
            while true {
                if let r = chunkRemaining {
                    if r == 0 {
                        // After the last chunk: optional trailers, then an empty line.
                        guard let e = HTTP1RequestParser.find(buffer, [13, 10]) else { return nil }
                        buffer.removeFirst(e + 2)
                        if e == 0 { return response() }
                        continue
                    }
                    guard buffer.count >= r + 2 else { return nil }
                    body.append(contentsOf: buffer[0..<r])
                    buffer.removeFirst(r + 2)
                    chunkRemaining = nil
                    if body.count > maxBodyBytes { throw .tooLarge }
                } else {
                    guard let e = HTTP1RequestParser.find(buffer, [13, 10]) else { return nil }
                    let hex = String(decoding: buffer[0..<e], as: UTF8.self).split(separator: ";").first.map(String.init) ?? ""
                    guard let n = Int(hex.trimmingSpaces(), radix: 16), n >= 0 else { throw .malformed("bad chunk size") }
                    buffer.removeFirst(e + 2)
                    chunkRemaining = n
                }
            }
        }
        if let n = length {
            guard buffer.count >= n else { return nil }
            body = Array(buffer[0..<n])
            buffer.removeFirst(n)
            return response()
        }
        if head!.status == 204 || head!.status == 304 { return response() }
        if buffer.count > maxBodyBytes { throw .tooLarge }
        return nil  // read until close
    }

    /// The response when the server closed the connection to end the body.
    mutating func finishAtClose() -> HTTP1Response? {
        guard head != nil, length == nil, !chunked else { return nil }
        body = buffer
        return response()
    }

    private mutating func response() -> HTTP1Response {
        let h = head!
        return HTTP1Response(status: h.status, headers: h.headers, body: body)
    }
}
