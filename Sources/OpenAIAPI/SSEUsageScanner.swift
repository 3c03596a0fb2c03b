/// Reads an OpenAI-style server-sent-event stream as it passes through,
/// chunk by chunk, split anywhere: events split at any byte, several events
/// in one chunk, `\n`, `\r\n` or `\r` line ends (a `\r\n` split across two
/// chunks is one line end), comments, multi-line `data:` and `[DONE]`. It
/// never changes a byte; it only notes:
///
/// - the usage the stream reports (OpenAI's final `choices: []` chunk with
///   `usage`; Anthropic's `message_start` / `message_delta`; the Responses
///   API's `response.completed`), later reports overriding earlier fields;
/// - events that carry content (a non-empty `delta.content`, `text`,
///   `reasoning_content`, Anthropic `delta.text`, a Responses `delta`
///   string): the first one is the moment of the first token (TTFT), and
///   their count stands in for completion tokens when no usage comes;
/// - `[DONE]`, events with a top-level `error`, and malformed events.
///
/// Memory is bounded: an event larger than `maxEventBytes` stops the
/// scanning (`overflowed`) without touching the stream.
public struct SSEUsageScanner: Sendable {
    public let maxEventBytes: Int
    /// Usage as reported by the stream so far.
    public private(set) var reported: OpenAIUsage?
    /// Events carrying content (≈ one token each for vLLM).
    public private(set) var contentEvents = 0
    /// Events dispatched (data events, `[DONE]` included).
    public private(set) var events = 0
    public private(set) var sawDone = false
    public private(set) var errorEvents = 0
    public private(set) var malformedEvents = 0
    public private(set) var overflowed = false

    private var line: [UInt8] = []
    private var data: [UInt8] = []
    private var hasData = false
    private var afterCR = false

    public init(maxEventBytes: Int = 1 << 20) {
        self.maxEventBytes = maxEventBytes
    }

    /// The usage to account: as reported, or counted from content events
    /// (then `estimated`, with no prompt tokens); nil when neither exists.
    public var usage: OpenAIUsage? {
        if let r = reported { return r }
        return contentEvents > 0 ? OpenAIUsage(promptTokens: nil, completionTokens: contentEvents, estimated: true) : nil
    }

    /// Feeds the next bytes of the stream. Returns true when they held the
    /// stream's first content event (the caller stamps TTFT then).
    @discardableResult
    public mutating func feed(_ bytes: ArraySlice<UInt8>) -> Bool {
        guard !overflowed else { return false }
        let before = contentEvents
        var k = bytes.startIndex
        let end = bytes.endIndex
        if afterCR, k < end, bytes[k] == 0x0A { k += 1 }  // the LF of a CRLF split across chunks
        afterCR = false
        while k < end {
            // The next line end (LF or CR) from k.
            var j = k
            while j < end, bytes[j] != 0x0A, bytes[j] != 0x0D { j += 1 }
            if j == end {
                guard line.count + (end - k) <= maxEventBytes else { overflowed = true; return contentEvents > 0 && before == 0 }
                line.append(contentsOf: bytes[k..<end])
                break
            }
            if line.isEmpty {
                processLine(bytes[k..<j])
            } else {
                guard line.count + (j - k) <= maxEventBytes else { overflowed = true; return contentEvents > 0 && before == 0 }
                line.append(contentsOf: bytes[k..<j])
                let whole = line
                line.removeAll(keepingCapacity: true)
                processLine(whole[...])
            }
            if bytes[j] == 0x0D {
                if j + 1 < end {
                    if bytes[j + 1] == 0x0A { j += 1 }
                } else {
                    afterCR = true
                }
            }
            k = j + 1
            if overflowed { break }
        }
        return before == 0 && contentEvents > 0
    }

    /// Convenience for whole arrays.
    @discardableResult
    public mutating func feed(_ bytes: [UInt8]) -> Bool { feed(bytes[...]) }

    private mutating func processLine(_ l: ArraySlice<UInt8>) {
        if l.isEmpty {
            dispatch()
            return
        }
        if l.first == UInt8(ascii: ":") { return }  // comment
        // field ":" [" "] value; only "data" matters here.
        guard l.count >= 4,
              l[l.startIndex] == UInt8(ascii: "d"), l[l.startIndex + 1] == UInt8(ascii: "a"),
              l[l.startIndex + 2] == UInt8(ascii: "t"), l[l.startIndex + 3] == UInt8(ascii: "a") else { return }
        var v = l.startIndex + 4
        if v == l.endIndex {
            // "data" with no colon: an empty data line.
        } else {
            guard l[v] == UInt8(ascii: ":") else { return }  // another field that starts with "data"
            v += 1
            if v < l.endIndex, l[v] == UInt8(ascii: " ") { v += 1 }
        }
        if hasData { data.append(0x0A) }
        guard data.count + (l.endIndex - v) <= maxEventBytes else {
            overflowed = true
            return
        }
        data.append(contentsOf: l[v..<l.endIndex])
        hasData = true
    }

    private mutating func dispatch() {
        guard hasData else { return }
        defer {
            data.removeAll(keepingCapacity: true)
            hasData = false
        }
        events += 1
        if data.count == 6, data.elementsEqual("[DONE]".utf8) {
            sawDone = true
            return
        }
        inspect(data)
    }

    private mutating func inspect(_ d: [UInt8]) {
        guard let top = try? JSONScanner.members(of: d, in: 0..<d.count,
                                                 keys: ["usage", "choices", "delta", "message", "response", "error"],
                                                 decode: false, maxDepth: 128) else {
            malformedEvents += 1
            return
        }
        if let e = top["error"], e != .null { errorEvents += 1 }
        for container in [top["usage"], Self.nested(d, top["message"], "usage"), Self.nested(d, top["response"], "usage")] {
            if let u = OpenAIUsage.fromUsage(d, container) { merge(u) }
        }
        if Self.hasContent(d, top) { contentEvents += 1 }
    }

    private mutating func merge(_ u: OpenAIUsage) {
        guard var r = reported else {
            reported = u
            return
        }
        if let p = u.promptTokens { r.promptTokens = p }
        // Anthropic's message_delta carries only output_tokens (cumulative).
        r.completionTokens = u.completionTokens
        reported = r
    }

    private static func nested(_ d: [UInt8], _ v: JSONScanner.Value?, _ key: String) -> JSONScanner.Value? {
        guard case .object(let r)? = v, let m = try? JSONScanner.members(of: d, in: r, keys: [key], decode: false, maxDepth: 128)
        else { return nil }
        return m[key]
    }

    private static func hasContent(_ d: [UInt8], _ top: [String: JSONScanner.Value]) -> Bool {
        if case .array(let r)? = top["choices"], let choices = try? JSONScanner.elements(of: d, in: r, maxDepth: 128) {
            for c in choices {
                guard case .object(let cr) = c,
                      let m = try? JSONScanner.members(of: d, in: cr, keys: ["delta", "text"], decode: false, maxDepth: 128)
                else { continue }
                if JSONScanner.isNonEmptyString(m["text"]) { return true }
                if case .object(let dr)? = m["delta"],
                   let dm = try? JSONScanner.members(of: d, in: dr, keys: ["content", "reasoning_content", "text"],
                                                     decode: false, maxDepth: 128),
                   JSONScanner.isNonEmptyString(dm["content"]) || JSONScanner.isNonEmptyString(dm["reasoning_content"])
                    || JSONScanner.isNonEmptyString(dm["text"]) {
                    return true
                }
            }
            return false
        }
        switch top["delta"] {
        case .object(let r)?:  // Anthropic content_block_delta
            guard let m = try? JSONScanner.members(of: d, in: r, keys: ["text", "partial_json"], decode: false, maxDepth: 128)
            else { return false }
            return JSONScanner.isNonEmptyString(m["text"]) || JSONScanner.isNonEmptyString(m["partial_json"])
        case let v?:  // Responses API output_text.delta
            return JSONScanner.isNonEmptyString(v)
        case nil:
            return false
        }
    }
}
