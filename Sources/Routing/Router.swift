import PodSnapshot

/// What a router may know about a request. Routers never see the gRPC
/// layer, the proto codec or the raw body.
public struct RoutingRequest: Sendable {
    public var model: String
    public var stream: Bool
    public var bodyBytes: Int
    public var requestID: String
    /// The client's session (`x-session-id`), for session affinity.
    public var sessionID: String?
    /// The request's `max_tokens`, when it set one.
    public var maxTokens: Int?
    /// Who is asking (the API key's user, else the body's or header's `user`), for fairness.
    public var user: String?
    /// The prompt's text as UTF-8 (message contents in order, one per
    /// line), given only to routers that say they need it (`needsPrompt`).
    public var prompt: [UInt8]?
    /// The prompt is raw text the engine tokenizes as is, adding its
    /// special tokens (completions); false: rendered chat messages.
    public var promptIsRaw = false
    /// False for explanations (`/debug/route`): stateful strategies decide
    /// without remembering the decision.
    public var records = true
    public init(model: String, stream: Bool, bodyBytes: Int, requestID: String, sessionID: String? = nil, maxTokens: Int? = nil,
                user: String? = nil, prompt: [UInt8]? = nil) {
        self.user = user
        self.prompt = prompt
        self.model = model
        self.stream = stream
        self.bodyBytes = bodyBytes
        self.requestID = requestID
        self.sessionID = sessionID
        self.maxTokens = maxTokens
    }
}

/// Why no endpoint was chosen.
public enum RoutingError: Error, Sendable, Equatable, CustomStringConvertible {
    case noCandidates(model: String)
    case unknownStrategy(name: String, known: [String])
    case invalidBlend(header: String, why: String)
    case refused(name: String, why: String)

    public var description: String {
        switch self {
        case .noCandidates(let m): return "no ready endpoint serves model '\(m)'"
        case .unknownStrategy(let n, let known):
            return "unknown routing strategy '\(n)'; valid strategies: \(known.joined(separator: ", ")), "
                + "or a weighted blend such as 'least-request:1,least-kv-cache:2'"
        case .invalidBlend(let h, let why):
            return "invalid routing strategy blend '\(h)': \(why)"
        case .refused(let n, let why):
            return "routing strategy '\(n)' is not offered: \(why)"
        }
    }
}

/// Picks one endpoint among a model's candidates. Called synchronously on
/// the event loop for every request: no blocking, no task hops. The view
/// gives each candidate's scrape freshness, this model's scraped metrics
/// (nil unless fresh) and the gateway's load, aligned by index.
public protocol Router: Sendable {
    /// The name clients put in the `routing-strategy` header.
    var name: String { get }
    /// The pod, and the reason when the strategy could not use its own
    /// signals and fell back (reported to the client and on `/metrics`).
    func decide(_ request: RoutingRequest, view: ModelView) throws(RoutingError) -> RoutingDecision
    /// True when the strategy keys on `x-session-id` (the gateway then
    /// makes one for requests without it and returns it).
    var usesSessions: Bool { get }
    /// True when the strategy reads the prompt's text (prefix caching):
    /// the gateway then decodes it into `RoutingRequest.prompt`.
    var needsPrompt: Bool { get }
    /// Each candidate's inputs (and, for scoring strategies, costs and
    /// scores) and the decision, for `/debug/route`.
    func explain(_ request: RoutingRequest, view: ModelView) -> RoutingExplanation
}

extension Router {
    public var usesSessions: Bool { false }
    public var needsPrompt: Bool { false }

    public func explain(_ request: RoutingRequest, view: ModelView) -> RoutingExplanation {
        explainBasics(request, view: view)
    }

    /// A decision over any candidate list (builds its view: tests, tools).
    public func decide(_ request: RoutingRequest, candidates: [PodEndpoint], snapshot: PodSnapshot) throws(RoutingError) -> RoutingDecision {
        try decide(request, view: snapshot.view(for: request.model, candidates: candidates))
    }

    public func route(_ request: RoutingRequest, candidates: [PodEndpoint], snapshot: PodSnapshot) throws(RoutingError) -> PodEndpoint {
        try decide(request, candidates: candidates, snapshot: snapshot).pod
    }
}

/// A routing decision.
public struct RoutingDecision: Sendable, Equatable {
    public var pod: PodEndpoint
    /// Why the strategy's own rule was not applied (`kv_cache_usage_unknown`,
    /// `no_user`, …); nil when it was.
    public var fallback: String?
    /// Where the response's real usage goes when the strategy charged an
    /// estimate (fairness); the gateway then reads the response's usage.
    public var usage: (any UsageSink)?
    public init(pod: PodEndpoint, fallback: String? = nil, usage: (any UsageSink)? = nil) {
        self.pod = pod
        self.fallback = fallback
        self.usage = usage
    }

    public static func == (a: RoutingDecision, b: RoutingDecision) -> Bool {
        a.pod == b.pod && a.fallback == b.fallback && (a.usage == nil) == (b.usage == nil)
    }
}
