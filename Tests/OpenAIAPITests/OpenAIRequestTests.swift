import Foundation
import OpenAIAPI
import Testing

@Suite struct JSONScannerTests {
    @Test(arguments: [
        #"{}"#, #" { "a" : [1, -2.5e3, true, false, null, {"b": "c\"\\\/\b\f\n\r\t\u00e9"}] } "#,
        #"{"model":"m","x":{"y":[[[]]]}}"#, #"{"a":0,"b":0.0,"c":-0,"d":1E+2}"#,
    ])
    func acceptsValidDocuments(_ text: String) throws {
        _ = try JSONScanner.topLevelMembers(of: Array(text.utf8), keys: [])
    }

    @Test(arguments: [
        "", "[]", "{", #"{"a"}"#, #"{"a":}"#, #"{"a":1,}"#, #"{"a":01}"#, #"{"a":1.}"#, #"{"a":tru}"#,
        #"{"a":"\x"}"#, "{\"a\":\"\u{01}\"}", #"{"a":"unterminated}"#, #"{"a":1} extra"#, #"{"a":[1 2]}"#,
        #"{"a":"\u12"}"#, #"{'a':1}"#,
    ])
    func rejectsInvalidDocuments(_ text: String) {
        #expect(throws: JSONScanner.SyntaxError.self) { try JSONScanner.topLevelMembers(of: Array(text.utf8), keys: []) }
    }

    @Test func boundsNestingDepth() {
        let deep = String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000)
        #expect(throws: JSONScanner.SyntaxError.self) {
            try JSONScanner.topLevelMembers(of: Array("{\"a\":\(deep)}".utf8), keys: [])
        }
    }

    @Test func decodesOnlyRequestedTopLevelKeys() throws {
        let doc = #"{"inner":{"model":"no"},"model":"caf\u00e9 \ud83d\ude00","stream":true,"n":3}"#
        let m = try JSONScanner.topLevelMembers(of: Array(doc.utf8), keys: ["model", "stream", "missing"])
        #expect(m["model"] == .string("café 😀"))
        #expect(m["stream"] == .bool(true))
        #expect(m["missing"] == nil)
        #expect(m["n"] == nil)
    }
}

@Suite struct OpenAIRequestSummaryTests {
    func parse(_ s: String, _ e: OpenAIEndpoint = .chatCompletions) throws(OpenAIError) -> OpenAIRequestSummary {
        try OpenAIRequestSummary.parse(Array(s.utf8), endpoint: e)
    }

    @Test func chatAndCompletions() throws {
        #expect(try parse(#"{"model":"m","messages":[],"stream":true}"#) == OpenAIRequestSummary(model: "m", stream: true, bodyBytes: 41))
        #expect(try parse(#"{"model":"m","prompt":"x"}"#, .completions).stream == false)
        #expect(try parse(#"{"model":"m","prompt":[1,2]}"#, .completions).model == "m")
    }

    @Test(arguments: [
        (#"{"messages":[]}"#, "missing_model", "model"),
        (#"{"model":"","messages":[]}"#, "invalid_type", "model"),
        (#"{"model":3,"messages":[]}"#, "invalid_type", "model"),
        (#"{"model":"m","messages":[],"stream":"yes"}"#, "invalid_type", "stream"),
        (#"{"model":"m"}"#, "missing_required_parameter", "messages"),
        (#"{"model":"m","messages":"hi"}"#, "invalid_type", "messages"),
        (#"{"model":"m","messages":["#, "invalid_json", nil),
        ("", "invalid_json", nil),
    ] as [(String, String, String?)])
    func errors(_ body: String, _ code: String, _ param: String?) {
        do {
            _ = try parse(body)
            Issue.record("expected an error")
        } catch {
            #expect(error.status == 400)
            #expect(error.code == code)
            #expect(error.param == param)
        }
    }

    @Test func errorBodyIsOpenAIShaped() throws {
        let e = OpenAIError(status: 404, message: "model \"x\"\n gone", param: "model", code: "model_not_found")
        let obj = try #require(JSONSerialization.jsonObject(with: Data(e.jsonBody)) as? [String: Any])
        let inner = try #require(obj["error"] as? [String: Any])
        #expect(inner["message"] as? String == "model \"x\"\n gone")
        #expect(inner["type"] as? String == "invalid_request_error")
        #expect(inner["param"] as? String == "model")
        #expect(inner["code"] as? String == "model_not_found")
        let plain = try #require(JSONSerialization.jsonObject(with: Data(OpenAIError(status: 503, message: "m").jsonBody)) as? [String: [String: Any]])
        #expect(plain["error"]?["type"] as? String == "overloaded_error")
        #expect(plain["error"]?["code"] is NSNull)
    }

    @Test func endpointsMatchPathsWithQueriesAndSlashes() {
        #expect(OpenAIEndpoint(path: "/v1/chat/completions?x=1") == .chatCompletions)
        #expect(OpenAIEndpoint(path: "/v1/completions/") == .completions)
        #expect(OpenAIEndpoint(path: "/v1/models") == .models)
        #expect(OpenAIEndpoint(path: "/v2/chat/completions") == nil)
    }
}

@Suite struct JSONScannerDifferentialTests {
    /// The word-at-a-time string scan must agree with Foundation on where
    /// strings end and which bytes are invalid, at every alignment.
    @Test func agreesWithFoundationOnGeneratedStrings() throws {
        var rng = SplitMix(seed: 7)
        let alphabet: [UInt8] = Array("abcXYZ 09é".utf8) + [0x22, 0x5C, 0x01, 0x1F, 0x7F, 0x80, 0xFF, 0x6E, 0x75]
        var valid = 0, invalid = 0
        for _ in 0..<3000 {
            let n = Int(rng.next() % 40)
            var s: [UInt8] = []
            for _ in 0..<n { s.append(alphabet[Int(rng.next() % UInt64(alphabet.count))]) }
            let doc = Array(#"{"model":""#.utf8) + s + Array(#"","stream":false}"#.utf8)
            let ours = (try? JSONScanner.topLevelMembers(of: doc, keys: ["model"])) != nil
            let foundation = (try? JSONSerialization.jsonObject(with: Data(doc))) as? [String: Any]
            // Foundation also rejects invalid UTF-8, which we pass through; compare on valid UTF-8 only.
            guard String(validating: s, as: UTF8.self) != nil else { continue }
            #expect(ours == (foundation?.count == 2), "disagree on \(s)")
            if ours { valid += 1 } else { invalid += 1 }
        }
        #expect(valid > 100 && invalid > 100)
    }
}

struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
