internal import CSystem
import Glibc

/// Receives what a `StreamSocket` reads, on the socket's loop thread.
public protocol StreamSocketDelegate: AnyObject {
    /// Bytes arrived. The slice shares the socket's read buffer: copy what you keep.
    func socketRead(_ socket: StreamSocket, _ bytes: ArraySlice<UInt8>)
    /// Everything queued has been written (the outbound buffer emptied after being non-empty).
    func socketDrained(_ socket: StreamSocket)
    /// The peer closed or an error occurred; the socket is already closed.
    func socketClosed(_ socket: StreamSocket, error: SystemError?)
}

/// A non-blocking connected socket bound to one loop, with an outbound buffer.
///
/// Backpressure: when the outbound buffer grows past `highWater` reading
/// pauses until it drains below `lowWater`, so a slow peer cannot make the
/// process buffer without bound.
public final class StreamSocket: FDHandler {
    public let fd: Int32
    /// Strong: loops outlive their sockets, and an unowned load costs a check per access.
    public let loop: EventLoop
    public weak var delegate: (any StreamSocketDelegate)?
    private var outbound: [UInt8] = []
    private var outboundOffset = 0
    private var watchingWrite = false
    private var readPaused = false
    public private(set) var isClosed = false
    public var highWater = 4 << 20
    public var lowWater = 1 << 20

    /// Takes ownership of `fd` (closed on `close()`); registers it on `loop`.
    public init(fd: Int32, loop: EventLoop) throws(SystemError) {
        self.fd = fd
        self.loop = loop
        try loop.register(fd: fd, events: .readable, handler: self)
    }

    /// Connects to a numeric IPv4 `host:port` (non-blocking; writes queue until connected).
    public static func connect(host: String, port: Int, loop: EventLoop) throws(SystemError) -> StreamSocket {
        let fd = csys_connect_tcp(host, Int32(port))
        guard fd >= 0 else { throw SystemError("connect(\(host):\(port))", errno) }
        _ = csys_set_nodelay(fd)
        let s = try StreamSocket(fd: fd, loop: loop)
        s.watchingWrite = true
        loop.modify(fd: fd, events: [.readable, .writable])
        return s
    }

    /// Bytes queued and not yet written.
    public var pendingBytes: Int { outbound.count - outboundOffset }

    public func handleEvents(_ events: IOEvents) {
        if events.contains(.writable) { flush() }
        if events.contains(.readable) || events.contains(.hangup) || events.contains(.error) {
            readAvailable()
        }
    }

    private func readAvailable() {
        // Read until EAGAIN (bounded) so edge cases like RDHUP after data are seen.
        for _ in 0..<16 {
            if isClosed || readPaused { return }
            // One read buffer per loop, shared by its sockets: reads are
            // handled synchronously, and a delegate that keeps the slice
            // makes the next read copy the buffer (copy-on-write) first.
            let n = loop.readBuffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n > 0 {
                delegate?.socketRead(self, loop.readBuffer[0..<n])
                if n < loop.readBuffer.count { return }
            } else if n == 0 {
                close(error: nil)
                return
            } else {
                let e = errno
                if e == EAGAIN || e == EWOULDBLOCK || e == EINTR { return }
                close(error: SystemError("read", e))
                return
            }
        }
    }

    /// Queues bytes and tries to write them now.
    public func write<C: Collection>(_ bytes: C) where C.Element == UInt8 {
        guard !isClosed else { return }
        outbound.append(contentsOf: bytes)
    }

    /// Queues an array; when nothing is queued the array itself becomes the
    /// queue (no copy: large replies are written from the buffer they were built in).
    public func write(_ bytes: [UInt8]) {
        guard !isClosed else { return }
        if outboundOffset == outbound.count {
            outbound = bytes
            outboundOffset = 0
        } else {
            outbound.append(contentsOf: bytes)
        }
    }

    /// Sends `bytes` with a file descriptor attached (SCM_RIGHTS, Unix
    /// sockets only). Only when nothing else is queued, so the descriptor
    /// rides on exactly these bytes; false (and nothing sent) otherwise or
    /// when the kernel does not take all of them at once.
    public func writeWithDescriptor(_ bytes: [UInt8], descriptor: Int32) -> Bool {
        guard !isClosed, pendingBytes == 0, !bytes.isEmpty else { return false }
        let n = bytes.withUnsafeBytes { csys_send_with_fd(fd, $0.baseAddress, $0.count, descriptor) }
        return n == bytes.count
    }

    /// Writes as much of the queue as the kernel takes; watches for writability otherwise.
    public func flush() {
        guard !isClosed else { return }
        while outboundOffset < outbound.count {
            let n = outbound.withUnsafeBytes { raw in
                Glibc.send(fd, raw.baseAddress! + outboundOffset, raw.count - outboundOffset, Int32(MSG_NOSIGNAL))
            }
            if n > 0 {
                outboundOffset += n
            } else {
                let e = errno
                if n < 0 && (e == EAGAIN || e == EWOULDBLOCK) { break }
                if n < 0 && e == EINTR { continue }
                close(error: SystemError("send", e))
                return
            }
        }
        let drained = outboundOffset == outbound.count
        if drained {
            outbound.removeAll(keepingCapacity: outbound.capacity <= 256 * 1024)
            outboundOffset = 0
        } else if outboundOffset > 64 * 1024 {
            outbound.removeFirst(outboundOffset)
            outboundOffset = 0
        }
        let pending = pendingBytes
        if pending > highWater && !readPaused {
            readPaused = true
        } else if pending < lowWater && readPaused {
            readPaused = false
            loop.schedule(afterNanos: 0) { [weak self] in self?.readAvailable() }
        }
        let wantWrite = !drained
        if wantWrite != watchingWrite {
            watchingWrite = wantWrite
            loop.modify(fd: fd, events: readPaused ? (wantWrite ? .writable : []) : (wantWrite ? [.readable, .writable] : .readable))
        } else if readPaused && wantWrite {
            loop.modify(fd: fd, events: .writable)
        }
        if drained && wantWrite == false {
            delegate?.socketDrained(self)
        }
    }

    /// Closes the socket; the delegate hears `socketClosed` once.
    public func close(error: SystemError? = nil) {
        guard !isClosed else { return }
        isClosed = true
        loop.unregister(fd: fd)
        _ = Glibc.close(fd)
        outbound = []
        delegate?.socketClosed(self, error: error)
    }

    /// Half-closes the write side after flushing what is queued.
    public func shutdownWrite() {
        flush()
        _ = Glibc.shutdown(fd, Int32(SHUT_WR))
    }
}
