/// The split patterns of the byte-level BPE families, hand-compiled: each
/// is the regex Hugging Face `tokenizers` runs (Oniguruma, over Unicode
/// scalars, leftmost alternative first), as a scanner over precomputed
/// character classes. Recognized by their exact pattern text in
/// `tokenizer.json`; any other pattern is refused at load with a clear error
/// (a guessed split would silently misalign every block).
public enum SplitPattern: Sendable, Equatable {
    /// GPT-2 (ByteLevel's built-in regex):
    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
    case gpt2
    /// Llama-3 (`digits` 3) and Qwen2 (`digits` 1):
    /// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
    case llama3(digits: Int)

    static let gpt2Text = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#
    static let llama3Text = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    static let qwen2Text = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#

    /// The pattern for a `Split` pre-tokenizer's regex text; nil if unknown.
    public static func recognizing(_ regex: String) -> SplitPattern? {
        switch regex {
        case gpt2Text: return .gpt2
        case llama3Text: return .llama3(digits: 3)
        case qwen2Text: return .llama3(digits: 1)
        default: return nil
        }
    }

    /// Character classes, one byte per scalar.
    static let letter: UInt8 = 1, number: UInt8 = 2, space: UInt8 = 4, newline: UInt8 = 8

    @inline(__always)
    static func classify(_ s: Unicode.Scalar) -> UInt8 {
        let v = s.value
        if v < 128 { return asciiClass[Int(v)] }
        let p = s.properties
        if p.isWhitespace { return v == 0x85 ? space : space }
        switch p.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return letter
        case .decimalNumber, .letterNumber, .otherNumber: return number
        default: return 0
        }
    }

    static let asciiClass: [UInt8] = (0..<128).map { (v: Int) -> UInt8 in
        let c = UInt8(v)
        if c == 0x0A || c == 0x0D { return space | newline }
        if c == 0x20 || (0x09...0x0C).contains(c) { return space }
        if (0x41...0x5A).contains(c) || (0x61...0x7A).contains(c) { return letter }
        if (0x30...0x39).contains(c) { return number }
        return 0
    }

    /// Calls `piece` with each piece's scalar range, in order, covering `scalars`.
    func split(_ scalars: [Unicode.Scalar], classes: [UInt8], _ piece: (Range<Int>) -> Void) {
        let n = scalars.count
        var i = 0
        while i < n {
            let end: Int
            switch self {
            case .gpt2: end = gpt2(scalars, classes, i, n)
            case .llama3(let digits): end = llama3(scalars, classes, i, n, digits: digits)
            }
            piece(i..<end)
            i = end
        }
    }

    @inline(__always) static func isOther(_ c: UInt8) -> Bool { c & (letter | number | space) == 0 }

    /// `'s|'t|'re|'ve|'m|'ll|'d` at i: its end, or nil.
    @inline(__always)
    static func contraction(_ s: [Unicode.Scalar], _ i: Int, _ n: Int, caseless: Bool) -> Int? {
        guard s[i] == "'", i + 1 < n else { return nil }
        func low(_ x: Unicode.Scalar) -> UInt32 {
            guard caseless else { return x.value }
            if x.value == 0x17F { return 0x73 }  // ſ folds to s
            if x.value == 0x212A { return 0x6B }  // Kelvin sign folds to k
            return (0x41...0x5A).contains(x.value) ? x.value + 32 : x.value
        }
        let a = low(s[i + 1])
        if a == 0x73 || a == 0x74 || a == 0x6D || a == 0x64 { return i + 2 }  // s t m d
        guard i + 2 < n else { return nil }
        let b = low(s[i + 2])
        if (a == 0x72 && b == 0x65) || (a == 0x76 && b == 0x65) || (a == 0x6C && b == 0x6C) { return i + 3 }  // re ve ll
        return nil
    }

    /// `\s+(?!\S)|\s+` at a whitespace scalar i.
    @inline(__always)
    static func whitespace(_ c: [UInt8], _ i: Int, _ n: Int) -> Int {
        var k = i
        while k < n && c[k] & space != 0 { k += 1 }
        if k == n || k - i < 2 { return k }
        return k - 1  // leave the last one to prefix the next word
    }

    private func gpt2(_ s: [Unicode.Scalar], _ c: [UInt8], _ i: Int, _ n: Int) -> Int {
        if let e = Self.contraction(s, i, n, caseless: false) { return e }
        // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`: an optional ASCII space, then a run of one class.
        var j = i
        if s[i] == " " && i + 1 < n && c[i + 1] & Self.space == 0 { j = i + 1 }
        let k = c[j]
        if k & Self.space == 0 {
            let want: (UInt8) -> Bool
            if k & Self.letter != 0 { want = { $0 & Self.letter != 0 } }
            else if k & Self.number != 0 { want = { $0 & Self.number != 0 } }
            else { want = Self.isOther }
            var e = j + 1
            while e < n && want(c[e]) { e += 1 }
            return e
        }
        return Self.whitespace(c, i, n)
    }

    private func llama3(_ s: [Unicode.Scalar], _ c: [UInt8], _ i: Int, _ n: Int, digits: Int) -> Int {
        if let e = Self.contraction(s, i, n, caseless: true) { return e }
        let k = c[i]
        // `[^\r\n\p{L}\p{N}]?\p{L}+`
        if k & Self.letter != 0 || (k & (Self.newline | Self.letter | Self.number) == 0 && i + 1 < n && c[i + 1] & Self.letter != 0) {
            var e = i + 1
            while e < n && c[e] & Self.letter != 0 { e += 1 }
            return e
        }
        // `\p{N}{1,3}`
        if k & Self.number != 0 {
            var e = i + 1
            while e < n && e - i < digits && c[e] & Self.number != 0 { e += 1 }
            return e
        }
        // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
        var j = i
        if s[i] == " " && i + 1 < n && Self.isOther(c[i + 1]) { j = i + 1 }
        if Self.isOther(c[j]) {
            var e = j + 1
            while e < n && Self.isOther(c[e]) { e += 1 }
            while e < n && (s[e] == "\r" || s[e] == "\n") { e += 1 }
            return e
        }
        // `\s*[\r\n]+`: the whitespace run up to its last CR or LF.
        var run = i
        var lastNewline = -1
        while run < n && c[run] & Self.space != 0 {
            if s[run] == "\r" || s[run] == "\n" { lastNewline = run }
            run += 1
        }
        if lastNewline >= 0 { return lastNewline + 1 }
        return Self.whitespace(c, i, n)
    }
}
