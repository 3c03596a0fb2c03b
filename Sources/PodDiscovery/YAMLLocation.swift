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

    /// Parses YAML (or JSON) into plain values like `Yams.load`, but first
    /// refuses what Yams's constructor would trap on: a mapping key that is
    /// itself a list or a mapping (`{[a]: 1}`, `? [a]`). Configuration files
    /// are operator input, so bad ones get an error with a line, never a crash.
    public static func load(_ text: String) throws -> Any? {
        guard let node = try Yams.compose(yaml: text) else { return nil }
        try checkKeys(node)
        return node.any
    }

    /// A mapping key that is not a plain scalar.
    public struct KeyError: Error, CustomStringConvertible {
        public let line: Int?
        public var description: String { "mapping keys must be plain names, not lists or mappings" + (line.map { " (line \($0))" } ?? "") }
    }

    private static func checkKeys(_ root: Node) throws {
        var stack = [root]
        while let node = stack.popLast() {
            switch node {
            case .mapping(let m):
                for (k, v) in m {
                    guard case .scalar = k else { throw KeyError(line: k.mark?.line) }
                    stack.append(v)
                }
            case .sequence(let s): stack.append(contentsOf: s)
            default: break
            }
        }
    }

    /// The line a YAML parse error points at.
    public static func line(of error: any Error) -> Int? {
        if let k = error as? KeyError { return k.line }
        guard let e = error as? YamlError else { return nil }
        switch e {
        case .scanner(_, _, let m, _), .parser(_, _, let m, _), .composer(_, _, let m, _): return m.line
        default: return nil
        }
    }
}
