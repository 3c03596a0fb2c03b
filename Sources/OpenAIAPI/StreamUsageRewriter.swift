/// The documented `--inject-stream-usage` option, both halves, as pure
/// byte functions: ask the engine for a usage chunk the client did not ask
/// for, and take that chunk out of the stream on its way back, so the client
/// sees exactly the events it would have seen.
public enum StreamUsageRewriter {
    /// The request body with `"stream_options":{"include_usage":true}` added
    /// to its top-level object; nil when the body has no closing brace.
    public static func injecting(into body: [UInt8]) -> [UInt8]? {
        var end = body.count
        while end > 0, body[end - 1] == 0x20 || body[end - 1] == 0x0A || body[end - 1] == 0x0D || body[end - 1] == 0x09 {
            end -= 1
        }
        guard end > 0, body[end - 1] == UInt8(ascii: "}") else { return nil }
        var out = [UInt8]()
        out.reserveCapacity(body.count + 40)
        out.append(contentsOf: body[0..<(end - 1)])
        out.append(contentsOf: #","stream_options":{"include_usage":true}}"#.utf8)
        out.append(contentsOf: body[end...])
        return out
    }

    /// Stream state for the response half: bytes of an event not complete
    /// yet are held until its blank line arrives (vLLM writes whole events,
    /// so nothing is held in practice).
    public struct Stripper: Sendable {
        private var held: [UInt8] = []
        public private(set) var stripped = 0

        public init() {}

        /// The bytes to pass on for this chunk: complete events except a
        /// usage-only one (`"choices":[]` with a `usage` object); with `last`,
        /// whatever is still held goes out too.
        public mutating func pass(_ chunk: ArraySlice<UInt8>, last: Bool) -> [UInt8] {
            held.append(contentsOf: chunk)
            var out = [UInt8]()
            out.reserveCapacity(held.count)
            var start = 0
            var lineStart = 0
            var k = 0
            var dataStart = -1
            while k < held.count {
                let c = held[k]
                guard c == 0x0A || c == 0x0D else { k += 1; continue }
                // A CR at the very end may be the first half of a CRLF: wait for the next chunk.
                if c == 0x0D, k + 1 == held.count, !last { break }
                let lineEnd = k
                if c == 0x0D, k + 1 < held.count, held[k + 1] == 0x0A { k += 1 }
                k += 1
                if lineEnd == lineStart {
                    // A blank line: the event [start, k) is complete.
                    if !(dataStart >= 0 && Self.isUsageOnly(held, from: dataStart, to: lineStart)) {
                        out.append(contentsOf: held[start..<k])
                    } else {
                        stripped += 1
                    }
                    start = k
                    dataStart = -1
                } else if dataStart < 0, lineEnd - lineStart >= 5, held[lineStart..<lineStart + 5].elementsEqual("data:".utf8) {
                    dataStart = lineStart
                }
                lineStart = k
            }
            if last {
                out.append(contentsOf: held[start...])
                held.removeAll()
            } else {
                held.removeFirst(start)
            }
            return out
        }

        /// The event's data (from its first `data:` line) is a chunk with an
        /// empty `choices` array and a `usage` object.
        static func isUsageOnly(_ b: [UInt8], from: Int, to: Int) -> Bool {
            var i = from + 5
            if i < to, b[i] == 0x20 { i += 1 }
            var j = to
            while j > i, b[j - 1] == 0x0A || b[j - 1] == 0x0D { j -= 1 }
            let data = Array(b[i..<j])
            guard let m = try? JSONScanner.members(of: data, in: 0..<data.count, keys: ["choices", "usage"], decode: false),
                  case .object? = m["usage"], case .array(let r)? = m["choices"],
                  let e = try? JSONScanner.elements(of: data, in: r), e.isEmpty else { return false }
            return true
        }
    }
}
