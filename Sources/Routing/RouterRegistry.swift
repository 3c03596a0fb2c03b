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
        if let h = header, let r = routers[h] { return r }  // the common, exact case
        let trimmed = header.map(Self.trimBlanks) ?? ""
        let name = trimmed.isEmpty ? (defaultStrategy ?? "") : trimmed
        guard let r = routers[name] else { throw .unknownStrategy(name: name, known: names) }
        return r
    }

    private static func trimBlanks(_ s: String) -> String {
        var t = Substring(s)
        while let f = t.first, f == " " || f == "\t" { t = t.dropFirst() }
        while let l = t.last, l == " " || l == "\t" { t = t.dropLast() }
        return String(t)
    }
}
