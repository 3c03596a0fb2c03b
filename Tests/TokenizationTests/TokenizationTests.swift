import Foundation
import Testing

@testable import Tokenization

/// A tokenizer.json small enough to reason about: bytes, a few merges.
func tinyTokenizer(pre: String, extra: String = "", normalizer: String = "null", post: String = "null") -> Data {
    var vocab: [String: Int] = [:]
    // ByteLevel alphabet: every byte's printable scalar.
    let table = ByteLevel.decodeTable.sorted { $0.value < $1.value }
    for (scalar, byte) in table { vocab[String(Character(Unicode.Scalar(scalar)!))] = Int(byte) }
    let merged = ["he": 256, "ll": 257, "hell": 258, "hello": 259, "Ġw": 260, "Ġwo": 261]
    for (k, v) in merged { vocab[k] = v }
    let vocabJSON = String(data: try! JSONSerialization.data(withJSONObject: vocab), encoding: .utf8)!
    return Data("""
    {"added_tokens":[{"id":300,"content":"<|eot|>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true}\(extra)],
     "normalizer":\(normalizer),"pre_tokenizer":\(pre),"post_processor":\(post),"decoder":null,
     "model":{"type":"BPE","vocab":\(vocabJSON),"merges":["h e","l l","he ll","hell o","Ġ w",["Ġw","o"]]}}
    """.utf8)
}

let gpt2Pre = #"{"type":"ByteLevel","add_prefix_space":false,"use_regex":true}"#

@Suite struct TokenizationTests {
    @Test func bpeMergesByRankAndAddedTokensAreTakenWhole() throws {
        let t = try BPETokenizer(json: tinyTokenizer(pre: gpt2Pre))
        #expect(t.encode("hello") == [259])
        #expect(t.encode("hello wo") == [259, 261])
        // 'h','e','l','l','o','!' bytes without merges past "hello".
        #expect(t.encode("hello!<|eot|>hell") == [259, 33, 300, 258])
        #expect(t.encode("") == [])
    }

    @Test func gpt2SplitsAsItsRegexDoes() {
        func pieces(_ s: String) -> [String] {
            let scalars = Array(s.unicodeScalars)
            var out: [String] = []
            SplitPattern.gpt2.split(scalars, classes: scalars.map(SplitPattern.classify)) { r in
                var v = String.UnicodeScalarView()
                v.append(contentsOf: scalars[r])
                out.append(String(v))
            }
            return out
        }
        #expect(pieces("Hello world's  end!!\n") == ["Hello", " world", "'s", " ", " end", "!!", "\n"])
        #expect(pieces("x 123abc") == ["x", " 123", "abc"])
        #expect(pieces("a\tb") == ["a", "\t", "b"])
        #expect(pieces("   ") == ["   "])
    }

    @Test func llama3SplitsDigitsInThreesAndKeepsNewlinesWithPunctuation() {
        func pieces(_ p: SplitPattern, _ s: String) -> [String] {
            let scalars = Array(s.unicodeScalars)
            var out: [String] = []
            p.split(scalars, classes: scalars.map(SplitPattern.classify)) { r in
                var v = String.UnicodeScalarView()
                v.append(contentsOf: scalars[r])
                out.append(String(v))
            }
            return out
        }
        #expect(pieces(.llama3(digits: 3), "1234567 I'LL go.\n\nok") == ["123", "456", "7", " I", "'LL", " go", ".\n\n", "ok"])
        #expect(pieces(.llama3(digits: 1), "42") == ["4", "2"])
        #expect(pieces(.llama3(digits: 3), "a \n b") == ["a", " \n", " b"])
    }

    @Test func unsupportedFilesAreRefusedNamingWhy() {
        let unknown = #"{"type":"Split","pattern":{"Regex":"\\w+"},"behavior":"Isolated","invert":false}"#
        #expect(throws: TokenizerError.self) { try BPETokenizer(json: tinyTokenizer(pre: unknown)) }
        do {
            _ = try BPETokenizer(json: tinyTokenizer(pre: #"{"type":"Metaspace"}"#))
            Issue.record("Metaspace accepted")
        } catch {
            #expect(error.description.contains("Metaspace"))
        }
        #expect(throws: TokenizerError.self) {
            try BPETokenizer(json: tinyTokenizer(pre: gpt2Pre, normalizer: #"{"type":"Lowercase"}"#))
        }
        #expect(throws: TokenizerError.self) { try BPETokenizer(json: Data("{".utf8)) }
        #expect(throws: TokenizerError.self) { try BPETokenizer(contentsOf: "/nonexistent/tokenizer.json") }
    }

    @Test func templateProcessingAddsItsSpecialTokens() throws {
        let post = #"{"type":"TemplateProcessing","single":[{"SpecialToken":{"id":"<|eot|>","type_id":0}},{"Sequence":{"id":"A","type_id":0}}],"pair":[],"special_tokens":{"<|eot|>":{"id":"<|eot|>","ids":[300],"tokens":["<|eot|>"]}}}"#
        let t = try BPETokenizer(json: tinyTokenizer(pre: gpt2Pre, post: post))
        #expect(t.encode("hello", addSpecialTokens: true) == [300, 259])
        #expect(t.encode("hello") == [259])
    }
}

@Suite struct LongPieceTests {
    @Test func theHeapMergeEqualsTheScanOnLongPieces() throws {
        let t = try BPETokenizer(json: tinyTokenizer(pre: gpt2Pre))
        // Build a piece longer than the scan's limit out of mergeable runs and compare with the scan, chunk by chunk.
        let unit = Array("hellohellhe".utf8)
        var long: [UInt8] = []
        for i in 0..<40 { long += unit; if i % 3 == 0 { long += Array("ll".utf8) } }
        let viaHeap = t.bpe(long)
        #expect(long.count > 48)
        // The scan on the same bytes (forced by splitting nothing: call the scan directly through short units).
        var scan: [UInt32] = long.map { t.byteIDs[Int($0)] }
        while scan.count > 1 {
            var best = -1, bestRank = UInt32.max, bestID: UInt32 = 0
            for i in 0..<(scan.count - 1) {
                if let m = t.merges[UInt64(scan[i]) << 32 | UInt64(scan[i + 1])], m.rank < bestRank {
                    best = i; bestRank = m.rank; bestID = m.id
                }
            }
            if best < 0 { break }
            scan[best] = bestID
            scan.remove(at: best + 1)
        }
        #expect(viaHeap == scan)
    }

    @Test func aMegabyteWordTokenizesWithoutBlowingUp() throws {
        let t = try BPETokenizer(json: tinyTokenizer(pre: gpt2Pre))
        let word = String(repeating: "hello", count: 200_000)  // one 1 MB piece
        let ids = t.encode(word)
        #expect(ids.count == 200_000 && Set(ids) == [259])
    }
}
