import Yams

/// Line numbers for configuration errors: the YAML (or JSON) text is
/// composed once into nodes, and an error names the path of the value it
/// is about (`["models", 2, "endpoints", 0]`); the line is that node's,
/// or its nearest existing parent's when the value is missing.
public struct YAMLLocation {
    private let root: Node?

    public init(_ text: String) {
        root = try? Yams.compose(yaml: text)
    }

    /// 1-based line of the value at `path`, nil when the text did not parse.
    public func line(_ path: [any Sendable]) -> Int? {
        guard var node = root else { return nil }
        var line = node.mark?.line
        for step in path {
            let next: Node?
            switch (step, node) {
            case (let k as String, .mapping(let m)): next = m[k]
            case (let i as Int, .sequence(let s)): next = i >= 0 && i < s.count ? s[i] : nil
            default: next = nil
            }
            guard let n = next else { break }
            node = n
            line = n.mark?.line ?? line
        }
        return line
    }

    /// Where `text` stops parsing (JSON and YAML), nil when it parses.
    public static func errorLine(_ text: String) -> Int? {
        do {
            _ = try Yams.compose(yaml: text)
            return nil
        } catch {
            return line(of: error)
        }
    }

    /// The line a YAML parse error points at.
    public static func line(of error: any Error) -> Int? {
        guard let e = error as? YamlError else { return nil }
        switch e {
        case .scanner(_, _, let m, _), .parser(_, _, let m, _), .composer(_, _, let m, _): return m.line
        default: return nil
        }
    }
}
