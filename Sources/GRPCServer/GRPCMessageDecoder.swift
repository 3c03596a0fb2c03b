/// Splits a gRPC request body into length-prefixed messages: 1 byte
/// compressed flag, 4 bytes big-endian length, then the message. Handles a
/// message split across DATA frames and several messages in one frame.
public struct GRPCMessageDecoder: Sendable {
    public let maxMessageSize: Int
    private var buffer: [UInt8] = []
    private var start = 0

    public init(maxMessageSize: Int) {
        self.maxMessageSize = maxMessageSize
    }

    /// Why a frame could not be accepted.
    public enum Failure: Error, Equatable, Sendable {
        case compressed
        case tooLarge(length: Int)
        case badFlag(UInt8)
    }

    /// Bytes buffered that do not yet form a whole message.
    public var bufferedBytes: Int { buffer.count - start }

    /// Appends bytes and returns every message now complete, as slices that
    /// share storage with the received chunk where possible (no copy).
    public mutating func feed(_ bytes: [UInt8]) throws(Failure) -> [ArraySlice<UInt8>] {
        // Fast path: nothing buffered and the chunk holds whole messages.
        if bufferedBytes == 0 {
            var out: [ArraySlice<UInt8>] = []
            var i = 0
            while bytes.count - i >= 5 {
                let len = try Self.checkHeader(bytes, at: i, max: maxMessageSize)
                if bytes.count - i - 5 < len { break }
                out.append(bytes[(i + 5)..<(i + 5 + len)])
                i += 5 + len
            }
            if i < bytes.count {
                buffer.removeAll(keepingCapacity: true)
                start = 0
                buffer.append(contentsOf: bytes[i...])
            }
            return out
        }
        buffer.append(contentsOf: bytes)
        var out: [ArraySlice<UInt8>] = []
        while buffer.count - start >= 5 {
            let len = try Self.checkHeader(buffer, at: start, max: maxMessageSize)
            if buffer.count - start - 5 < len { break }
            out.append(buffer[(start + 5)..<(start + 5 + len)])
            start += 5 + len
        }
        if start == buffer.count {
            buffer.removeAll(keepingCapacity: buffer.capacity <= 64 * 1024)
            start = 0
        } else if start > 64 * 1024 {
            buffer.removeFirst(start)
            start = 0
        }
        return out
    }

    private static func checkHeader(_ b: [UInt8], at i: Int, max: Int) throws(Failure) -> Int {
        switch b[i] {
        case 0: break
        case 1: throw .compressed
        default: throw .badFlag(b[i])
        }
        let len = Int(b[i + 1]) << 24 | Int(b[i + 2]) << 16 | Int(b[i + 3]) << 8 | Int(b[i + 4])
        if len > max { throw .tooLarge(length: len) }
        return len
    }

    /// The 5-byte prefix of an uncompressed message of `length` bytes.
    public static func prefix(length: Int) -> [UInt8] {
        let n = UInt32(length)
        return [0, UInt8(n >> 24), UInt8((n >> 16) & 0xFF), UInt8((n >> 8) & 0xFF), UInt8(n & 0xFF)]
    }

    /// Frames one message (uncompressed) for sending.
    public static func frame(_ message: [UInt8]) -> [UInt8] {
        prefix(length: message.count) + message
    }
}
