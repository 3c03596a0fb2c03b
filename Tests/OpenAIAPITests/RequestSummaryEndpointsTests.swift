import OpenAIAPI
import Testing

/// The request summary for every endpoint clients use: the fields routers
/// and limits read, and the prompt text as the engine's template sees its
/// pieces (non-text parts skipped).
@Suite struct RequestSummaryEndpointsTests {
    func parse(_ s: String, _ e: OpenAIEndpoint) throws(OpenAIError) -> (OpenAIRequestSummary, [UInt8]) {
        let b = Array(s.utf8)
        return (try OpenAIRequestSummary.parse(b, endpoint: e), b)
    }

    @Test func chatWithPartsToolsAndOptions() throws {
        let (s, b) = try parse(#"""
            {"model":"m","stream":true,"stream_options":{"include_usage":true},"max_completion_tokens":64,"max_tokens":9,
             "user":"alice","tools":[{"type":"function","function":{"name":"f"}}],"response_format":{"type":"json_object"},
             "messages":[{"role":"system","content":"Be brief."},
                         {"role":"user","content":[{"type":"text","text":"What is \"this\"?\n"},
                                                   {"type":"image_url","image_url":{"url":"data:x"}},
                                                   {"type":"text","text":"caf\u00e9"}]},
                         {"role":"assistant","content":null,"tool_calls":[]}]}
            """#, .chatCompletions)
        #expect(s.model == "m" && s.stream && s.includeUsage && s.maxTokens == 64 && s.user == "alice")
        #expect(s.promptText(in: b) == "Be brief.\nWhat is \"this\"?\n\ncafé")
    }

    @Test func completionsPromptsOfEveryShape() throws {
        let (one, b1) = try parse(#"{"model":"m","prompt":"hello","max_tokens":3}"#, .completions)
        #expect(one.promptText(in: b1) == "hello" && one.maxTokens == 3 && !one.stream)
        let (many, b2) = try parse(#"{"model":"m","prompt":["a","b"]}"#, .completions)
        #expect(many.promptText(in: b2) == "a\nb")
        let (ids, _) = try parse(#"{"model":"m","prompt":[1,2,3]}"#, .completions)
        #expect(ids.promptTokenIDs == 3 && ids.promptParts.isEmpty)
        let (nested, _) = try parse(#"{"model":"m","prompt":[[1,2],[3]]}"#, .completions)
        #expect(nested.promptTokenIDs == 3)
    }

    @Test func embeddingsResponsesAndMessages() throws {
        let (e, eb) = try parse(#"{"model":"m","input":["x","y"]}"#, .embeddings)
        #expect(e.promptText(in: eb) == "x\ny")
        let (r, rb) = try parse(#"{"model":"m","input":[{"role":"user","content":[{"type":"input_text","text":"hi"}]}],"max_output_tokens":5,"stream":true}"#, .responses)
        #expect(r.promptText(in: rb) == "hi" && r.maxTokens == 5 && r.stream)
        let (r2, rb2) = try parse(#"{"model":"m","input":"plain"}"#, .responses)
        #expect(r2.promptText(in: rb2) == "plain")
        let (a, ab) = try parse(#"{"model":"m","max_tokens":16,"system":"sys","messages":[{"role":"user","content":[{"type":"text","text":"q"}]}]}"#, .messages)
        #expect(a.promptText(in: ab) == "sys\nq" && a.maxTokens == 16)
    }

    @Test(arguments: [
        (#"{"model":"m","messages":[],"stream_options":true}"#, OpenAIEndpoint.chatCompletions, "stream_options"),
        (#"{"model":"m","messages":[],"stream_options":{"include_usage":"yes"}}"#, .chatCompletions, "stream_options.include_usage"),
        (#"{"model":"m","messages":[],"max_tokens":-1}"#, .chatCompletions, "max_tokens"),
        (#"{"model":"m","messages":[],"max_tokens":1.5}"#, .chatCompletions, "max_tokens"),
        (#"{"model":"m","messages":[],"max_tokens":"9"}"#, .chatCompletions, "max_tokens"),
        (#"{"model":"m","messages":[],"user":7}"#, .chatCompletions, "user"),
        (#"{"model":"m","messages":[3]}"#, .chatCompletions, "messages[0]"),
        (#"{"model":"m","messages":[{"content":5}]}"#, .chatCompletions, "messages[0].content"),
        (#"{"model":"m","messages":[{"content":[{"type":"text","text":1}]}]}"#, .chatCompletions, "messages[0].content[0].text"),
        (#"{"model":"m","messages":[{"content":["x"]}]}"#, .chatCompletions, "messages[0].content[0]"),
        (#"{"model":"m","prompt":["a",1]}"#, .completions, "prompt"),
        (#"{"model":"m","prompt":[[1,"x"]]}"#, .completions, "prompt"),
        (#"{"model":"m","prompt":{}}"#, .completions, "prompt"),
        (#"{"model":"m"}"#, .embeddings, "input"),
        (#"{"model":"m","input":true}"#, .embeddings, "input"),
        (#"{"model":"m","input":7}"#, .responses, "input"),
        (#"{"model":"m","system":3,"messages":[]}"#, .messages, "system"),
        (#"{"model":"m","max_output_tokens":-3,"input":"x"}"#, .responses, "max_output_tokens"),
    ] as [(String, OpenAIEndpoint, String)])
    func wrongTypesNameTheParameter(_ body: String, _ e: OpenAIEndpoint, _ param: String) {
        do {
            _ = try OpenAIRequestSummary.parse(Array(body.utf8), endpoint: e)
            Issue.record("accepted \(body)")
        } catch {
            #expect(error.status == 400 && error.param == param, "\(body): \(error.message)")
            #expect(error.type == "invalid_request_error")
        }
    }
}

@Suite struct JSONScannerStrictnessTests {
    @Test(arguments: [
        ([0x7B, 0x22, 0x61, 0x22, 0x3A, 0x22, 0xFF, 0x22, 0x7D], "a lone 0xFF"),
        ([0x7B, 0x22, 0x61, 0x22, 0x3A, 0x22, 0xC0, 0xAF, 0x22, 0x7D], "an overlong slash"),
        ([0x7B, 0x22, 0x61, 0x22, 0x3A, 0x22, 0xED, 0xA0, 0x80, 0x22, 0x7D], "a UTF-16 surrogate"),
        ([0x7B, 0x22, 0x61, 0x22, 0x3A, 0x22, 0xE2, 0x82, 0x22, 0x7D], "a truncated sequence"),
        ([0x7B, 0x22, 0x61, 0x22, 0x3A, 0x22, 0xF4, 0x90, 0x80, 0x80, 0x22, 0x7D], "a code point above U+10FFFF"),
    ] as [([UInt8], String)])
    func invalidUTF8IsRejected(_ bytes: [UInt8], _ what: String) {
        #expect(throws: JSONScanner.SyntaxError.self, "\(what)") { try JSONScanner.topLevelMembers(of: bytes, keys: []) }
    }

    @Test func validUTF8InLongStringsPasses() throws {
        let text = #"{"model":"m","messages":[{"role":"user","content":""# + String(repeating: "héllo wörld 日本語 😀 ", count: 50) + #""}]}"#
        let s = try OpenAIRequestSummary.parse(Array(text.utf8), endpoint: .chatCompletions)
        #expect(s.promptText(in: Array(text.utf8)).hasPrefix("héllo wörld 日本語 😀"))
    }

    @Test func aRepeatedKeyThatRoutingReadsIsAnError() {
        do {
            _ = try OpenAIRequestSummary.parse(Array(#"{"model":"a","messages":[],"model":"b"}"#.utf8), endpoint: .chatCompletions)
            Issue.record("accepted a duplicate model")
        } catch {
            #expect(error.status == 400 && error.code == "invalid_json" && error.message.contains("duplicate member 'model'"))
        }
        // Keys nobody reads may repeat (the engine decides what they mean).
        #expect((try? OpenAIRequestSummary.parse(Array(#"{"model":"a","messages":[],"x":1,"x":2}"#.utf8), endpoint: .chatCompletions)) != nil)
    }
}
