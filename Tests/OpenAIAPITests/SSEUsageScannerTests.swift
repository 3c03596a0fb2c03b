import OpenAIAPI
import Testing

/// The response-side stream reader: same result for every way the stream
/// can be cut into chunks; usage, content events and TTFT point as the
/// stream says; never more memory than one event.
@Suite struct SSEUsageScannerTests {
    static let chunkPrefix = #"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"tiny","choices":["#
    static func event(_ delta: String, finish: String = "null", usage: String = "null") -> String {
        "data: " + chunkPrefix + #"{"index":0,"delta":\#(delta),"logprobs":null,"finish_reason":\#(finish)}],"usage":\#(usage)}"#
            + "\n\n"
    }

    /// A vLLM chat stream with include_usage: a role event with empty
    /// content, three content events (one with escapes), a comment, the
    /// usage chunk with `choices: []`, then [DONE].
    static let recorded: String = event(#"{"role":"assistant","content":""}"#)
        + event(#"{"content":"Hello"}"#)
        + event(#"{"content":" wor\"ld\n"}"#)
        + ": keep-alive\n\n"
        + event(#"{"content":"!"}"#, finish: #""length""#)
        + "data: " + #"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"tiny","choices":[],"usage":{"prompt_tokens":12,"total_tokens":15,"completion_tokens":3}}"#
        + "\n\ndata: [DONE]\n\n"

    struct Outcome: Equatable {
        var usage: OpenAIUsage?
        var contentEvents, events, errors, malformed: Int
        var done: Bool
        /// Byte offset (exclusive end of the chunk) at which feed reported the first content event.
        var firstContentAt: Int?
    }

    static func run(_ bytes: [UInt8], cuts: [Int]) -> Outcome {
        var s = SSEUsageScanner()
        var first: Int?
        var start = 0
        for end in cuts + [bytes.count] where end >= start {
            if s.feed(bytes[start..<end]) {
                #expect(first == nil, "first content reported twice")
                first = end
            }
            start = end
        }
        return Outcome(usage: s.usage, contentEvents: s.contentEvents, events: s.events, errors: s.errorEvents,
                       malformed: s.malformedEvents, done: s.sawDone, firstContentAt: first)
    }

    /// Where the first content event is complete (the end of its blank line).
    static func firstContentEnd(_ bytes: [UInt8]) -> Int {
        func find(_ needle: [UInt8], from: Int) -> Int? {
            guard needle.count <= bytes.count else { return nil }
            return (from...(bytes.count - needle.count)).first { bytes[$0..<$0 + needle.count].elementsEqual(needle) }
        }
        let hello = find(Array("Hello".utf8), from: 0)!
        let lf = find([10, 10], from: hello).map { $0 + 2 } ?? .max
        // A CR alone ends a line in SSE: the blank line is complete at its CR.
        let crlf = find([13, 10, 13], from: hello).map { $0 + 3 } ?? .max
        return min(lf, crlf)
    }

    @Test func wholeStreamGivesReportedUsageContentAndDone() {
        let b = Array(Self.recorded.utf8)
        let o = Self.run(b, cuts: [])
        #expect(o.usage == OpenAIUsage(promptTokens: 12, completionTokens: 3))
        #expect(o.contentEvents == 3 && o.events == 6 && o.done && o.errors == 0 && o.malformed == 0)
        #expect(o.firstContentAt == b.count)
    }

    @Test(arguments: ["\n", "\r\n", "\r"])
    func everySplitPositionGivesTheSameResult(lineEnd: String) {
        let text = Self.recorded.replacingOccurrences(of: "\n", with: lineEnd)
        let b = Array(text.utf8)
        let whole = Self.run(b, cuts: [])
        let firstEnd = lineEnd == "\r" ? nil : Self.firstContentEnd(b)
        for p in 0...b.count {
            var o = Self.run(b, cuts: [p])
            // TTFT is stamped in the chunk that completes the first content event.
            if let e = firstEnd {
                #expect(o.firstContentAt == (p >= e ? p : b.count), "split at \(p), first event ends at \(e)")
            }
            o.firstContentAt = whole.firstContentAt
            #expect(o == whole, "split at \(p)")
        }
        #expect(whole.usage == OpenAIUsage(promptTokens: 12, completionTokens: 3))
    }

    @Test func randomMultiSplitsAndOneByteChunks() {
        let b = Array(Self.recorded.replacingOccurrences(of: "\n", with: "\r\n").utf8)
        let whole = Self.run(b, cuts: [])
        var rng = SplitMix(seed: 42)
        for _ in 0..<300 {
            let n = Int(rng.next() % 12) + 1
            let cuts = (0..<n).map { _ in Int(rng.next() % UInt64(b.count + 1)) }.sorted()
            var o = Self.run(b, cuts: cuts)
            o.firstContentAt = whole.firstContentAt
            #expect(o == whole, "cuts \(cuts)")
        }
        var o = Self.run(b, cuts: Array(1..<b.count))
        o.firstContentAt = whole.firstContentAt
        #expect(o == whole)
    }

    @Test func withoutUsageTheCompletionIsCountedAndSaysSo() {
        let text = Self.event(#"{"role":"assistant"}"#) + Self.event(#"{"content":"a"}"#) + Self.event(#"{"content":"b"}"#)
            + "data: [DONE]\n\n"
        var s = SSEUsageScanner()
        s.feed(Array(text.utf8))
        #expect(s.usage == OpenAIUsage(promptTokens: nil, completionTokens: 2, estimated: true))
    }

    @Test func completionsAnthropicAndResponsesStreams() {
        var c = SSEUsageScanner()
        c.feed(Array(("data: {\"choices\":[{\"index\":0,\"text\":\" hi\",\"finish_reason\":null}]}\n\n"
                      + "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":1,\"total_tokens\":5}}\n\n"
                      + "data: [DONE]\n\n").utf8))
        #expect(c.usage == OpenAIUsage(promptTokens: 4, completionTokens: 1) && c.contentEvents == 1)

        var a = SSEUsageScanner()
        a.feed(Array(("event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"usage\":{\"input_tokens\":9,\"output_tokens\":1}}}\n\n"
                      + "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n"
                      + "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":7}}\n\n"
                      + "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n").utf8))
        #expect(a.usage == OpenAIUsage(promptTokens: 9, completionTokens: 7) && a.contentEvents == 1)

        var r = SSEUsageScanner()
        r.feed(Array(("event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"Hi\"}\n\n"
                      + "event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"usage\":{\"input_tokens\":3,\"output_tokens\":2,\"total_tokens\":5}}}\n\n").utf8))
        #expect(r.usage == OpenAIUsage(promptTokens: 3, completionTokens: 2) && r.contentEvents == 1)
    }

    @Test func errorsMalformedEventsAndMultiLineData() {
        var s = SSEUsageScanner()
        s.feed(Array(("data: {\"error\":{\"message\":\"boom\",\"type\":\"internal_error\"}}\n\n"
                      + "data: {not json\n\n"
                      + "data: {\"choices\":[{\"delta\":\n" + "data: {\"content\":\"x\"}}]}\n\n"
                      + "id: 7\nretry: 10\n\n").utf8))
        #expect(s.errorEvents == 1 && s.malformedEvents == 1 && s.contentEvents == 1 && s.events == 3)
    }

    @Test func anEventLargerThanTheLimitStopsScanningWithoutGrowing() {
        var s = SSEUsageScanner(maxEventBytes: 64)
        s.feed(Array(("data: " + String(repeating: "x", count: 200) + "\n\n").utf8))
        #expect(s.overflowed && s.events == 0)
        s.feed(Array(Self.recorded.utf8))
        #expect(s.events == 0 && s.usage == nil)
    }

    @Test func nonStreamedBodies() {
        let chat = #"{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"}}],"usage":{"prompt_tokens":10,"total_tokens":14,"completion_tokens":4}}"#
        #expect(OpenAIUsage.parse(responseBody: Array(chat.utf8)) == OpenAIUsage(promptTokens: 10, completionTokens: 4))
        let embeddings = #"{"object":"list","data":[{"embedding":[0.1,-2e-3]}],"usage":{"prompt_tokens":5,"total_tokens":5}}"#
        #expect(OpenAIUsage.parse(responseBody: Array(embeddings.utf8)) == OpenAIUsage(promptTokens: 5, completionTokens: 0))
        let anthropic = #"{"type":"message","content":[{"type":"text","text":"hi"}],"usage":{"input_tokens":8,"output_tokens":2}}"#
        #expect(OpenAIUsage.parse(responseBody: Array(anthropic.utf8)) == OpenAIUsage(promptTokens: 8, completionTokens: 2))
        for bad in [#"{"error":{"message":"x"}}"#, "not json", #"{"usage":null}"#, #"{"usage":{"prompt_tokens":-1}}"#, ""] {
            #expect(OpenAIUsage.parse(responseBody: Array(bad.utf8)) == nil, "\(bad)")
        }
    }
}
