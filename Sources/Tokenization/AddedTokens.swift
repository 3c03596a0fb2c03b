/// Added tokens (special or not), matched in the raw text before anything
/// else, leftmost-longest as Hugging Face's added-vocabulary split does.
struct AddedTokens: Sendable {
    struct Token: Sendable {
        let content: [Unicode.Scalar]
        let id: UInt32
        /// Also take the whitespace before (lstrip) or after (rstrip) it.
        let lstrip: Bool
        let rstrip: Bool
        /// Only as a whole word (no word character on either side).
        let singleWord: Bool
    }

    /// Tokens by first scalar, longest first.
    private let byFirst: [UInt32: [Token]]

    init(_ tokens: [Token]) {
        var m: [UInt32: [Token]] = [:]
        for t in tokens { m[t.content[0].value, default: []].append(t) }
        byFirst = m.mapValues { $0.sorted { $0.content.count > $1.content.count } }
    }

    var isEmpty: Bool { byFirst.isEmpty }

    /// Calls `found` with each added token's range (stripped whitespace
    /// included) and id, in order, then once with the end (nil id).
    func scan(_ s: [Unicode.Scalar], _ found: (Range<Int>, UInt32?) -> Void) {
        let n = s.count
        var i = 0
        var emittedUpTo = 0
        if !byFirst.isEmpty {
            while i < n {
                guard let candidates = byFirst[s[i].value] else { i += 1; continue }
                var hit: Token?
                for t in candidates where i + t.content.count <= n {
                    var k = 1
                    while k < t.content.count && s[i + k] == t.content[k] { k += 1 }
                    if k == t.content.count {
                        if t.singleWord && (Self.isWordChar(i > 0 ? s[i - 1] : nil) || Self.isWordChar(i + k < n ? s[i + k] : nil)) {
                            continue
                        }
                        hit = t
                        break
                    }
                }
                guard let t = hit else { i += 1; continue }
                var lo = i, hi = i + t.content.count
                if t.lstrip { while lo > emittedUpTo && s[lo - 1].properties.isWhitespace { lo -= 1 } }
                if t.rstrip { while hi < n && s[hi].properties.isWhitespace { hi += 1 } }
                found(lo..<hi, t.id)
                emittedUpTo = hi
                i = hi
            }
        }
        found(n..<n, nil)
    }

    static func isWordChar(_ s: Unicode.Scalar?) -> Bool {
        guard let s else { return false }
        return s == "_" || s.properties.isAlphabetic || s.properties.numericType != nil
    }
}
