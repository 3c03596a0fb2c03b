import Foundation
import Synchronization

/// Why a `tokenizer.json` could not be used.
public struct TokenizerError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ d: String) { description = d }
}

/// A byte-level BPE tokenizer read from a Hugging Face `tokenizer.json`
/// (the GPT-2, Llama-3 and Qwen2 families), producing the ids the engine's
/// fast tokenizer produces:
///
/// 1. **Added tokens** (special or not) are found first, leftmost-longest,
///    honouring `lstrip`, `rstrip` and `single_word`, and become their ids.
/// 2. The text between them is **normalized** (none, or NFC) and
///    **pre-tokenized** by the family's split pattern (`SplitPattern`), with
///    ByteLevel's `add_prefix_space`.
/// 3. Each piece's UTF-8 bytes are merged by **BPE** rank (lowest first,
///    leftmost on ties); with `ignore_merges`, a piece that is itself in the
///    vocabulary is taken whole. Pieces are cached.
/// 4. With `addSpecialTokens`, a `TemplateProcessing` post-processor's
///    single-sequence tokens are added around the result (as the engine
///    does for completions prompts).
///
/// Anything else in the file (another model type, normalizer, pattern, or
/// byte fallback) is refused at load, naming what is unsupported.
public final class BPETokenizer: Sendable {
    /// Byte string → id (the vocabulary, mapped back from ByteLevel's alphabet).
    let vocab: [[UInt8]: UInt32]
    /// Single-byte ids (every byte has one in a byte-level vocabulary).
    let byteIDs: [UInt32]
    /// (left id << 32 | right id) → (rank, merged id).
    let merges: [UInt64: (rank: UInt32, id: UInt32)]
    let added: AddedTokens
    let pattern: SplitPattern
    let addPrefixSpace: Bool
    let nfc: Bool
    let ignoreMerges: Bool
    let prefixIDs: [UInt32]
    let suffixIDs: [UInt32]
    public let vocabularySize: Int
    private let cache = Mutex<[[UInt8]: [UInt32]]>([:])
    static let cacheCapacity = 50_000

    public convenience init(contentsOf path: String) throws(TokenizerError) {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw TokenizerError("cannot read tokenizer file '\(path)'")
        }
        do {
            try self.init(json: data)
        } catch {
            throw TokenizerError("\(path): \(error.description)")
        }
    }

    public init(json data: Data) throws(TokenizerError) {
        let root: [String: Any]
        do {
            guard let r = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
                throw TokenizerError("not a JSON object")
            }
            root = r
        } catch let e as TokenizerError {
            throw e
        } catch {
            throw TokenizerError("not valid JSON: \(error.localizedDescription)")
        }
        guard let model = root["model"] as? [String: Any], (model["type"] as? String ?? "BPE") == "BPE" else {
            throw TokenizerError("model.type must be BPE (byte-level BPE tokenizers only)")
        }
        if model["byte_fallback"] as? Bool == true { throw TokenizerError("model.byte_fallback is not supported (SentencePiece-style BPE)") }
        if let p = model["continuing_subword_prefix"] as? String, !p.isEmpty { throw TokenizerError("model.continuing_subword_prefix is not supported") }
        if let p = model["end_of_word_suffix"] as? String, !p.isEmpty { throw TokenizerError("model.end_of_word_suffix is not supported") }
        ignoreMerges = model["ignore_merges"] as? Bool ?? false

        // Pre-tokenizer: ByteLevel(use_regex) alone, or Sequence[Split(pattern), ByteLevel(use_regex: false)].
        var pattern: SplitPattern?
        var prefixSpace = false
        var sawByteLevel = false
        func visit(_ p: [String: Any]) throws(TokenizerError) {
            switch p["type"] as? String {
            case "ByteLevel":
                sawByteLevel = true
                prefixSpace = p["add_prefix_space"] as? Bool ?? false
                if p["use_regex"] as? Bool ?? true {
                    guard pattern == nil else { throw TokenizerError("two split patterns in pre_tokenizer") }
                    pattern = .gpt2
                }
            case "Split":
                guard let re = (p["pattern"] as? [String: Any])?["Regex"] as? String else {
                    throw TokenizerError("pre_tokenizer Split without a Regex pattern is not supported")
                }
                guard let known = SplitPattern.recognizing(re) else {
                    throw TokenizerError("pre_tokenizer Split pattern is not one of the supported families (GPT-2, Llama-3, Qwen2): \(re)")
                }
                guard (p["behavior"] as? String ?? "Isolated") == "Isolated", p["invert"] as? Bool != true else {
                    throw TokenizerError("pre_tokenizer Split must be Isolated and not inverted")
                }
                guard pattern == nil else { throw TokenizerError("two split patterns in pre_tokenizer") }
                pattern = known
            case "Sequence":
                for q in p["pretokenizers"] as? [[String: Any]] ?? [] { try visit(q) }
            default:
                throw TokenizerError("pre_tokenizer \(p["type"] as? String ?? "?") is not supported (byte-level BPE only)")
            }
        }
        guard let pre = root["pre_tokenizer"] as? [String: Any] else { throw TokenizerError("pre_tokenizer is missing (byte-level BPE only)") }
        try visit(pre)
        guard sawByteLevel, let pattern else { throw TokenizerError("pre_tokenizer must include ByteLevel and a split pattern") }
        self.pattern = pattern
        addPrefixSpace = prefixSpace

        var nfc = false
        func normalizer(_ n: [String: Any]) throws(TokenizerError) {
            switch n["type"] as? String {
            case "NFC": nfc = true
            case "Sequence": for m in n["normalizers"] as? [[String: Any]] ?? [] { try normalizer(m) }
            default: throw TokenizerError("normalizer \(n["type"] as? String ?? "?") is not supported (none or NFC)")
            }
        }
        if let n = root["normalizer"] as? [String: Any] { try normalizer(n) }
        self.nfc = nfc

        // Vocabulary in byte space.
        guard let v = model["vocab"] as? [String: Any] else { throw TokenizerError("model.vocab is missing") }
        let decode = ByteLevel.decodeTable
        var vocab: [[UInt8]: UInt32] = [:]
        vocab.reserveCapacity(v.count)
        var maxID = 0
        for (token, idAny) in v {
            guard let id = (idAny as? NSNumber)?.intValue, id >= 0 else { throw TokenizerError("vocab id of '\(token)' is not a number") }
            var bytes: [UInt8] = []
            bytes.reserveCapacity(token.unicodeScalars.count)
            var ok = true
            for s in token.unicodeScalars {
                guard let b = decode[s.value] else { ok = false; break }
                bytes.append(b)
            }
            if ok { vocab[bytes] = UInt32(id) }
            maxID = max(maxID, id)
        }
        var byteIDs: [UInt32] = []
        for b in 0..<256 {
            guard let id = vocab[[UInt8(b)]] else { throw TokenizerError("vocab lacks byte \(b) (not a byte-level BPE vocabulary)") }
            byteIDs.append(id)
        }
        self.byteIDs = byteIDs

        // Merges: "a b" strings or [a, b] pairs, in rank order.
        var merges: [UInt64: (rank: UInt32, id: UInt32)] = [:]
        let list = model["merges"] as? [Any] ?? []
        merges.reserveCapacity(list.count)
        func bytes(_ t: String) -> [UInt8]? {
            var out: [UInt8] = []
            for s in t.unicodeScalars {
                guard let b = decode[s.value] else { return nil }
                out.append(b)
            }
            return out
        }
        for (rank, m) in list.enumerated() {
            let pair: [String]
            if let s = m as? String {
                pair = s.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
            } else if let a = m as? [String] {
                pair = a
            } else {
                throw TokenizerError("merge \(rank) is neither \"a b\" nor [a, b]")
            }
            guard pair.count == 2, let a = bytes(pair[0]), let b = bytes(pair[1]), let ia = vocab[a], let ib = vocab[b],
                  let merged = vocab[a + b] else {
                throw TokenizerError("merge \(rank) (\(pair)) names tokens not in the vocabulary")
            }
            let key = UInt64(ia) << 32 | UInt64(ib)
            if merges[key] == nil { merges[key] = (UInt32(rank), merged) }
        }
        self.merges = merges
        self.vocab = vocab

        var tokens: [AddedTokens.Token] = []
        for t in root["added_tokens"] as? [[String: Any]] ?? [] {
            guard let content = t["content"] as? String, !content.isEmpty, let id = (t["id"] as? NSNumber)?.intValue else { continue }
            tokens.append(.init(content: Array(content.unicodeScalars), id: UInt32(id), lstrip: t["lstrip"] as? Bool ?? false,
                                rstrip: t["rstrip"] as? Bool ?? false, singleWord: t["single_word"] as? Bool ?? false))
            maxID = max(maxID, id)
        }
        added = AddedTokens(tokens)
        vocabularySize = maxID + 1

        // Post-processor: TemplateProcessing's single template adds special tokens; ByteLevel adds none.
        var prefix: [UInt32] = [], suffix: [UInt32] = []
        func post(_ p: [String: Any]) throws(TokenizerError) {
            switch p["type"] as? String {
            case "ByteLevel": break
            case "Sequence": for q in p["processors"] as? [[String: Any]] ?? [] { try post(q) }
            case "TemplateProcessing":
                let specials = p["special_tokens"] as? [String: [String: Any]] ?? [:]
                var seenSequence = false
                for piece in p["single"] as? [[String: Any]] ?? [] {
                    if piece["Sequence"] != nil { seenSequence = true; continue }
                    guard let name = (piece["SpecialToken"] as? [String: Any])?["id"] as? String,
                          let ids = specials[name]?["ids"] as? [NSNumber] else {
                        throw TokenizerError("post_processor template names an unknown special token")
                    }
                    if seenSequence { suffix += ids.map { UInt32($0.intValue) } } else { prefix += ids.map { UInt32($0.intValue) } }
                }
            default:
                throw TokenizerError("post_processor \(p["type"] as? String ?? "?") is not supported (ByteLevel or TemplateProcessing)")
            }
        }
        if let p = root["post_processor"] as? [String: Any] { try post(p) }
        prefixIDs = prefix
        suffixIDs = suffix
    }

    /// The ids of `text`. `addSpecialTokens` adds the post-processor's
    /// tokens (the engine does for completions prompts, not for rendered
    /// chat templates).
    public func encode(_ text: String, addSpecialTokens: Bool = false) -> [UInt32] {
        var out: [UInt32] = addSpecialTokens ? prefixIDs : []
        out.reserveCapacity(text.utf8.count / 3 + 8)
        let scalars = Array(text.unicodeScalars)
        var start = 0
        added.scan(scalars) { range, id in
            // The text before an added token (or the end), then the token.
            if range.lowerBound > start { encodeSegment(scalars[start..<range.lowerBound], into: &out) }
            if let id { out.append(id) }
            start = range.upperBound
        }
        if addSpecialTokens { out += suffixIDs }
        return out
    }

    private func encodeSegment(_ segment: ArraySlice<Unicode.Scalar>, into out: inout [UInt32]) {
        var scalars = Array(segment)
        if nfc {
            var s = String.UnicodeScalarView()
            s.append(contentsOf: scalars)
            let normalized = String(s).precomposedStringWithCanonicalMapping
            scalars = Array(normalized.unicodeScalars)
        }
        if addPrefixSpace, let first = scalars.first, first != " " { scalars.insert(" ", at: 0) }
        let classes = scalars.map(SplitPattern.classify)
        var bytes: [UInt8] = []
        var local: [[UInt8]: [UInt32]] = [:]
        pattern.split(scalars, classes: classes) { r in
            bytes.removeAll(keepingCapacity: true)
            for s in scalars[r] { ByteLevel.appendUTF8(s, to: &bytes) }
            if let ids = local[bytes] {
                out += ids
                return
            }
            let ids = cached(bytes)
            if bytes.count <= 256 { local[bytes] = ids }
            out += ids
        }
    }

    private func cached(_ piece: [UInt8]) -> [UInt32] {
        if piece.count > 256 { return bpe(piece) }  // long runs: not worth a cache slot
        if let hit = cache.withLock({ $0[piece] }) { return hit }
        let ids = bpe(piece)
        cache.withLock { c in
            if c.count >= Self.cacheCapacity { c.removeAll(keepingCapacity: true) }
            c[piece] = ids
        }
        return ids
    }

    /// BPE over one piece's bytes: repeatedly merge the adjacent pair with
    /// the lowest rank (leftmost on ties). Short pieces by scanning; long
    /// ones (a run of letters or spaces can be a megabyte) with a heap of
    /// candidate pairs over a linked list, O(n log n), as `tokenizers` does.
    func bpe(_ piece: [UInt8]) -> [UInt32] {
        if piece.count == 1 { return [byteIDs[Int(piece[0])]] }
        if ignoreMerges, let id = vocab[piece] { return [id] }
        var ids = piece.map { byteIDs[Int($0)] }
        if ids.count > 48 { return bpeLong(ids) }
        while ids.count > 1 {
            var best = -1
            var bestRank = UInt32.max
            var bestID: UInt32 = 0
            for i in 0..<(ids.count - 1) {
                if let m = merges[UInt64(ids[i]) << 32 | UInt64(ids[i + 1])], m.rank < bestRank {
                    best = i
                    bestRank = m.rank
                    bestID = m.id
                }
            }
            if best < 0 { break }
            ids[best] = bestID
            ids.remove(at: best + 1)
        }
        return ids
    }

    private func bpeLong(_ start: [UInt32]) -> [UInt32] {
        var ids = start
        let n = ids.count
        var next = Array(1...n)  // n = none
        var prev = Array(-1..<(n - 1))
        var alive = [Bool](repeating: true, count: n)
        var heap = PairHeap()
        func push(_ i: Int) {
            let j = next[i]
            guard j < n, let m = merges[UInt64(ids[i]) << 32 | UInt64(ids[j])] else { return }
            heap.push(.init(rank: m.rank, position: Int32(i), left: ids[i], right: ids[j]))
        }
        for i in 0..<(n - 1) { push(i) }
        while let c = heap.pop() {
            let i = Int(c.position)
            guard alive[i], ids[i] == c.left, next[i] < n, ids[next[i]] == c.right,
                  let m = merges[UInt64(c.left) << 32 | UInt64(c.right)] else { continue }
            let j = next[i]
            ids[i] = m.id
            alive[j] = false
            next[i] = next[j]
            if next[j] < n { prev[next[j]] = i }
            if prev[i] >= 0 { push(prev[i]) }
            push(i)
        }
        var out: [UInt32] = []
        var i = 0
        while i < n {
            out.append(ids[i])
            i = next[i]
        }
        return out
    }
}

/// A binary min-heap of merge candidates ordered by (rank, position).
struct PairHeap {
    struct Candidate {
        let rank: UInt32
        let position: Int32
        let left: UInt32
        let right: UInt32
        @inline(__always) func less(_ o: Candidate) -> Bool { rank != o.rank ? rank < o.rank : position < o.position }
    }
    private var items: [Candidate] = []

    mutating func push(_ c: Candidate) {
        items.append(c)
        var i = items.count - 1
        while i > 0 {
            let p = (i - 1) / 2
            guard items[i].less(items[p]) else { break }
            items.swapAt(i, p)
            i = p
        }
    }

    mutating func pop() -> Candidate? {
        guard let top = items.first else { return nil }
        let last = items.removeLast()
        if !items.isEmpty {
            items[0] = last
            var i = 0
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < items.count && items[l].less(items[m]) { m = l }
                if r < items.count && items[r].less(items[m]) { m = r }
                if m == i { break }
                items.swapAt(i, m)
                i = m
            }
        }
        return top
    }
}

/// ByteLevel's byte ↔ printable-scalar alphabet (GPT-2's bytes_to_unicode).
enum ByteLevel {
    /// scalar value → byte.
    static let decodeTable: [UInt32: UInt8] = {
        var printable: [Int] = Array(0x21...0x7E) + Array(0xA1...0xAC) + Array(0xAE...0xFF)
        var scalars = printable
        var n = 0
        for b in 0..<256 where !printable.contains(b) {
            printable.append(b)
            scalars.append(256 + n)
            n += 1
        }
        var out: [UInt32: UInt8] = [:]
        for (b, s) in zip(printable, scalars) { out[UInt32(s)] = UInt8(b) }
        return out
    }()

    @inline(__always)
    static func appendUTF8(_ s: Unicode.Scalar, to bytes: inout [UInt8]) {
        let v = s.value
        if v < 0x80 {
            bytes.append(UInt8(v))
        } else if v < 0x800 {
            bytes.append(UInt8(0xC0 | (v >> 6)))
            bytes.append(UInt8(0x80 | (v & 0x3F)))
        } else if v < 0x10000 {
            bytes.append(UInt8(0xE0 | (v >> 12)))
            bytes.append(UInt8(0x80 | ((v >> 6) & 0x3F)))
            bytes.append(UInt8(0x80 | (v & 0x3F)))
        } else {
            bytes.append(UInt8(0xF0 | (v >> 18)))
            bytes.append(UInt8(0x80 | ((v >> 12) & 0x3F)))
            bytes.append(UInt8(0x80 | ((v >> 6) & 0x3F)))
            bytes.append(UInt8(0x80 | (v & 0x3F)))
        }
    }
}
