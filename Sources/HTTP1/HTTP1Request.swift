/// A parsed HTTP/1.1 request (head and complete body).
public struct HTTP1Request: Sendable {
    public var method: String
    public var target: String
    /// Header names lower-cased.
    public var headers: [(String, String)]
    public var body: [UInt8]

    public var path: String {
        String(target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? "")
    }

    public func header(_ name: String) -> String? {
        for (n, v) in headers where n == name { return v }
        return nil
    }

    /// `a=1&b=x%20y` → ["a": "1", "b": "x y"] (`+` is a space; the last of a repeated name wins).
    public var query: [String: String] {
        guard let q = target.split(separator: "?", maxSplits: 1).dropFirst().first else { return [:] }
        var out: [String: String] = [:]
        for pair in q.split(separator: "&") {
            let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            out[Self.decode(kv[0])] = kv.count > 1 ? Self.decode(kv[1]) : ""
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

/// Incremental HTTP/1.1 request parser: request line, headers, and a body
/// framed by Content-Length or chunked transfer encoding.
struct HTTP1RequestParser {
    enum Failure: Error, Equatable {
        case malformed(String)
        case headersTooLarge
        case bodyTooLarge
    }

    let maxHeaderBytes: Int
    let maxBodyBytes: Int
    private var buffer: [UInt8] = []
    private var head: (method: String, target: String, headers: [(String, String)])?
    private var bodyMode: BodyMode = .none
    private var body: [UInt8] = []

    private enum BodyMode {
        case none
        case length(Int)
        case chunked(ChunkState)
    }

    private enum ChunkState {
        case size
        case data(Int)
        case dataCRLF
        case trailers
    }

    init(maxHeaderBytes: Int = 64 * 1024, maxBodyBytes: Int = 16 << 20) {
        self.maxHeaderBytes = maxHeaderBytes
        self.maxBodyBytes = maxBodyBytes
    }

    /// Appends bytes; returns every request now complete.
    mutating func feed(_ bytes: ArraySlice<UInt8>) throws(Failure) -> [HTTP1Request] {
        buffer.append(contentsOf: bytes)
        var out: [HTTP1Request] = []
        while let r = try next() { out.append(r) }
        return out
    }

    private mutating func next() throws(Failure) -> HTTP1Request? {
        if head == nil {
            guard let end = Self.find(buffer, [13, 10, 13, 10]) else {
                if buffer.count > maxHeaderBytes { throw .headersTooLarge }
                return nil
            }
            let text = String(decoding: buffer[0..<end], as: UTF8.self)
            buffer.removeFirst(end + 4)
            var lines = text.split(separator: "\r\n", omittingEmptySubsequences: false)
            guard !lines.isEmpty else { throw .malformed("empty request") }
            let parts = lines.removeFirst().split(separator: " ")
            guard parts.count == 3, parts[2].hasPrefix("HTTP/1.") else { throw .malformed("bad request line") }
            var headers: [(String, String)] = []
            var length = 0
            var chunked = false
            for l in lines {
                guard let c = l.firstIndex(of: ":") else { throw .malformed("bad header line") }
                let name = l[..<c].lowercased()
                let value = l[l.index(after: c)...].trimmingSpaces()
                headers.append((name, value))
                if name == "content-length" {
                    guard let n = Int(value), n >= 0 else { throw .malformed("bad content-length") }
                    length = n
                } else if name == "transfer-encoding" && value.lowercased().contains("chunked") {
                    chunked = true
                }
            }
            if chunked {
                bodyMode = .chunked(.size)
            } else {
                if length > maxBodyBytes { throw .bodyTooLarge }
                bodyMode = length > 0 ? .length(length) : .none
            }
            head = (String(parts[0]), String(parts[1]), headers)
            body = []
        }
        switch bodyMode {
        case .none:
            return complete()
        case .length(let n):
            guard buffer.count >= n else { return nil }
            body = Array(buffer[0..<n])
            buffer.removeFirst(n)
            return complete()
        case .chunked(var st):
            while true {
                switch st {
                case .size:
                    guard let e = Self.find(buffer, [13, 10]) else { bodyMode = .chunked(st); return nil }
                    let line = String(decoding: buffer[0..<e], as: UTF8.self)
                    buffer.removeFirst(e + 2)
                    let hex = line.split(separator: ";").first.map(String.init) ?? ""
                    guard let n = Int(hex.trimmingSpaces(), radix: 16), n >= 0 else { throw .malformed("bad chunk size") }
                    if body.count + n > maxBodyBytes { throw .bodyTooLarge }
                    st = n == 0 ? .trailers : .data(n)
                case .data(let n):
                    guard buffer.count >= n else { bodyMode = .chunked(st); return nil }
                    body.append(contentsOf: buffer[0..<n])
                    buffer.removeFirst(n)
                    st = .dataCRLF
                case .dataCRLF:
                    guard buffer.count >= 2 else { bodyMode = .chunked(st); return nil }
                    buffer.removeFirst(2)
                    st = .size
                case .trailers:
                    guard let e = Self.find(buffer, [13, 10]) else { bodyMode = .chunked(st); return nil }
                    buffer.removeFirst(e + 2)
                    if e == 0 { return complete() }
                }
            }
        }
    }

    private mutating func complete() -> HTTP1Request {
        let h = head!
        head = nil
        bodyMode = .none
        let b = body
        body = []
        return HTTP1Request(method: h.method, target: h.target, headers: h.headers, body: b)
    }

    static func find(_ hay: [UInt8], _ needle: [UInt8]) -> Int? {
        guard hay.count >= needle.count else { return nil }
        var i = 0
        let last = hay.count - needle.count
        while i <= last {
            if hay[i] == needle[0] {
                var ok = true
                for k in 1..<needle.count where hay[i + k] != needle[k] { ok = false; break }
                if ok { return i }
            }
            i += 1
        }
        return nil
    }
}

extension StringProtocol {
    func trimmingSpaces() -> String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" { s = s.dropLast() }
        return String(s)
    }
}
