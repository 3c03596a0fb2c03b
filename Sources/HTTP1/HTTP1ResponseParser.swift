import EventLoop

/// Incremental HTTP/1.1 response parser: status line, headers, and a body by
/// Content-Length, chunked encoding, or read-until-close.
struct HTTP1ResponseParser {
    enum Failure: Error, CustomStringConvertible {
        case malformed(String), tooLarge(Int)
        var description: String {
            switch self {
            case .malformed(let why): return why
            case .tooLarge(let limit): return "body larger than \(limit >> 20) MiB"
            }
        }
    }
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
            if let n = length, n > maxBodyBytes { throw .tooLarge(maxBodyBytes) }
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
                    if body.count > maxBodyBytes { throw .tooLarge(maxBodyBytes) }
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
        if buffer.count > maxBodyBytes { throw .tooLarge(maxBodyBytes) }
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
