import OpenAIAPI
import Testing

@Suite struct StreamUsageRewriterTests {
    @Test func injectsIntoTheTopLevelObject() throws {
        let out = try #require(StreamUsageRewriter.injecting(into: Array(#"{"model":"m","prompt":"p","stream":true} "#.utf8)))
        let s = try OpenAIRequestSummary.parse(out + [], endpoint: .completions)
        #expect(s.includeUsage && s.hasStreamOptions)
        #expect(String(decoding: out, as: UTF8.self) == #"{"model":"m","prompt":"p","stream":true,"stream_options":{"include_usage":true}} "#)
        #expect(StreamUsageRewriter.injecting(into: Array("[1]".utf8)) == nil)
    }

    static let usage = #"data: {"id":"c","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#
    static let content = #"data: {"id":"c","choices":[{"index":0,"delta":{"content":"hi"}}]}"#

    @Test(arguments: ["\n", "\r\n"])
    func theUsageChunkIsTakenOutAtEverySplit(_ eol: String) {
        let stream = Self.content + eol + eol + ": comment" + eol + eol + Self.content + eol + eol + Self.usage + eol + eol
            + "data: [DONE]" + eol + eol
        let expected = Self.content + eol + eol + ": comment" + eol + eol + Self.content + eol + eol + "data: [DONE]" + eol + eol
        let b = Array(stream.utf8)
        for p in 0...b.count {
            var st = StreamUsageRewriter.Stripper()
            let out = st.pass(b[0..<p], last: false) + st.pass(b[p...], last: true)
            #expect(String(decoding: out, as: UTF8.self) == expected, "split at \(p)")
            #expect(st.stripped == 1)
        }
    }

    @Test func onlyUsageOnlyEventsGo() {
        // A usage object beside real choices (some servers send it on every chunk) stays.
        let both = #"data: {"choices":[{"delta":{"content":"x"}}],"usage":{"prompt_tokens":1}}"# + "\n\n"
        var st = StreamUsageRewriter.Stripper()
        #expect(st.pass(Array(both.utf8)[...], last: true) == Array(both.utf8) && st.stripped == 0)
    }
}
