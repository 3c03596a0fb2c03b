internal import CSystem
import Glibc

/// A blocking stream socket (Unix or TCP) for simple request/response
/// clients (the KV agent's Swift client, tests and benchmarks of the L2
/// cache server). Not for use on an event loop thread.
public final class BlockingSocket {
    public let fd: Int32
    public private(set) var isClosed = false

    /// Connects to `path`.
    public init(path: String) throws(SystemError) {
        let f = csys_connect_unix(path)
        guard f >= 0 else { throw SystemError("connect(\(path))", errno) }
        fd = f
    }

    /// Connects to a numeric IPv4 `host:port` over TCP (no Nagle delay).
    public init(host: String, port: Int, timeoutMillis: Int = 5_000) throws(SystemError) {
        let f = csys_connect_tcp_blocking(host, Int32(port), Int32(timeoutMillis))
        guard f >= 0 else { throw SystemError("connect(\(host):\(port))", errno) }
        fd = f
    }

    deinit { close() }

    public func close() {
        guard !isClosed else { return }
        isClosed = true
        _ = Glibc.close(fd)
    }

    /// Sends all of `bytes`.
    public func send(_ bytes: [UInt8]) throws(SystemError) {
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + off, $0.count - off, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EINTR { continue }
                throw SystemError("send", errno)
            }
            off += n
        }
    }

    /// Receives up to `max` bytes and any descriptor passed with them. An
    /// empty result means the peer closed.
    public func receive(max: Int = 64 * 1024) throws(SystemError) -> (bytes: [UInt8], descriptor: Int32?) {
        var buf = [UInt8](repeating: 0, count: max)
        var passed: Int32 = -1
        while true {
            let n = buf.withUnsafeMutableBytes { csys_recv_with_fd(fd, $0.baseAddress, $0.count, &passed) }
            if n < 0 {
                if errno == EINTR { continue }
                throw SystemError("recv", errno)
            }
            return (Array(buf[0..<n]), passed >= 0 ? passed : nil)
        }
    }

    /// Receives into `buffer` (reusing its storage); returns the byte count,
    /// 0 when the peer closed.
    public func receive(into buffer: inout [UInt8]) throws(SystemError) -> Int {
        while true {
            let n = buffer.withUnsafeMutableBytes { Glibc.recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 {
                if errno == EINTR { continue }
                throw SystemError("recv", errno)
            }
            return n
        }
    }

    /// Sets a receive timeout (0 = none).
    public func setReceiveTimeout(millis: Int) {
        var tv = timeval(tv_sec: millis / 1000, tv_usec: (millis % 1000) * 1000)
        _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }
}
