import Foundation
import Tokenization

/// `switchboard tokenize`: the ids the gateway's tokenizer gives a text, to
/// check a tokenizer.json against the engine (or Python `tokenizers`).
public enum TokenizerTool {
    /// Prints the ids of `text` as a JSON array; with `jsonLines`, reads
    /// one JSON string per stdin line and prints one array per line.
    public static func run(tokenizer path: String, addSpecialTokens: Bool, jsonLines: Bool, text: String?) throws {
        let t = try BPETokenizer(contentsOf: path)
        func ids(_ s: String) -> String {
            "[" + t.encode(s, addSpecialTokens: addSpecialTokens).map(String.init).joined(separator: ",") + "]"
        }
        guard jsonLines else {
            print(ids(text ?? ""))
            return
        }
        var n = 0
        while let line = readLine(strippingNewline: true) {
            n += 1
            guard let s = try? JSONSerialization.jsonObject(with: Data(line.utf8), options: [.fragmentsAllowed]) as? String else {
                throw TokenizerError("stdin line \(n) is not a JSON string")
            }
            print(ids(s))
        }
    }
}
