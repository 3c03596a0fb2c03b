/// Parses a weighted blend from the `routing-strategy` header:
/// `least-request:1,least-kv-cache:2` (a missing weight is 1). Each part must
/// be a scoring strategy; weights are finite and ≥ 0, at least one > 0.
enum BlendSpec {
    static func parse(_ header: String, scorers: [String: any Scorer]) throws(RoutingError) -> [(scorer: any Scorer, weight: Double)] {
        var parts: [(scorer: any Scorer, weight: Double)] = []
        for raw in header.split(separator: ",", omittingEmptySubsequences: false) {
            let piece = raw.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
            let name = piece[0].trimmingBlanks()
            guard let scorer = scorers[name] else {
                throw .invalidBlend(header: header, why: name.isEmpty
                    ? "an empty part"
                    : "'\(name)' cannot be blended (blendable: \(scorers.keys.sorted().joined(separator: ", ")))")
            }
            var weight = 1.0
            if piece.count == 2 {
                let text = piece[1].trimmingBlanks()
                guard let w = Double(text), w.isFinite, w >= 0 else {
                    throw .invalidBlend(header: header, why: "weight '\(text)' of \(name) is not a number ≥ 0")
                }
                weight = w
            }
            guard !parts.contains(where: { $0.scorer.name == name }) else {
                throw .invalidBlend(header: header, why: "\(name) appears twice")
            }
            parts.append((scorer, weight))
        }
        guard parts.contains(where: { $0.weight > 0 }) else { throw .invalidBlend(header: header, why: "every weight is 0") }
        return parts
    }
}

extension StringProtocol {
    /// Without leading and trailing spaces and tabs (header values).
    func trimmingBlanks() -> String {
        var t = self[...]
        while let f = t.first, f == " " || f == "\t" { t = t.dropFirst() }
        while let l = t.last, l == " " || l == "\t" { t = t.dropLast() }
        return String(t)
    }
}
