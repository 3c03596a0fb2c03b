/// The strategies a gateway offers, by name.
public struct RouterRegistry: Sendable {
    private let routers: [String: any Router]
    public let defaultStrategy: String?

    /// `defaultStrategy` is used when a request names none; nil makes the
    /// `routing-strategy` header mandatory.
    public init(routers: [any Router], defaultStrategy: String?) {
        var m: [String: any Router] = [:]
        for r in routers { m[r.name] = r }
        self.routers = m
        self.defaultStrategy = defaultStrategy
    }

    /// The registry this build ships (more strategies arrive with their issues).
    public static func standard(defaultStrategy: String? = "random", seed: UInt64? = nil) -> RouterRegistry {
        RouterRegistry(routers: [RandomRouter(seed: seed)], defaultStrategy: defaultStrategy)
    }

    public var names: [String] { routers.keys.sorted() }

    /// Resolves a header value (trimmed; nil or empty means the default).
    public func router(named header: String?) throws(RoutingError) -> any Router {
        let trimmed = header.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
        let name = trimmed.isEmpty ? (defaultStrategy ?? "") : trimmed
        guard let r = routers[name] else { throw .unknownStrategy(name: name, known: names) }
        return r
    }
}

extension String {
    fileprivate func trimmingCharacters(in _: WhitespaceSet) -> String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" { s = s.dropLast() }
        return String(s)
    }
}

private enum WhitespaceSet { case whitespaces }
