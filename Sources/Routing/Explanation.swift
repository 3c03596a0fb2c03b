import PodSnapshot

/// Why a router chose what it chose, for `/debug/route`: each candidate's
/// inputs, its cost per scoring part and its score, and the decision.
public struct RoutingExplanation: Sendable {
    public struct Row: Sendable {
        public var address: String
        /// Fresh scrape (routers use only fresh pods while any is fresh).
        public var fresh: Bool
        public var usable: Bool
        public var inFlight: Int
        public var metrics: ModelMetrics?
        /// Each scoring part's raw cost (nil: unknown for this pod).
        public var costs: [(part: String, cost: Double?)] = []
        /// Prompt blocks the prefix index says the pod holds (prefix strategies).
        public var cachedBlocks: Int?
        /// The weighted normalized score (higher wins); nil when not scored.
        public var score: Double?
    }
    public var strategy: String
    public var rows: [Row]
    public var decision: RoutingDecision?
    public var error: String?
}

extension Router {
    /// The inputs every router sees, and its decision.
    public func explainBasics(_ request: RoutingRequest, view: ModelView) -> RoutingExplanation {
        var rows: [RoutingExplanation.Row] = []
        for i in 0..<view.count {
            rows.append(.init(address: view.endpoints[i].address, fresh: view.fresh[i], usable: view.usable(i),
                              inFlight: view.inFlight(i), metrics: view.metrics[i]))
        }
        var out = RoutingExplanation(strategy: name, rows: rows)
        var dry = request
        dry.records = false
        do {
            out.decision = try decide(dry, view: view)
        } catch {
            out.error = "\(error)"
        }
        return out
    }
}

extension ScoringRouter {
    /// Adds each part's cost and the score the decision compares.
    public func explain(_ request: RoutingRequest, view: ModelView) -> RoutingExplanation {
        var out = explainBasics(request, view: view)
        var v = view
        if let t = request.maxTokens, t > 0 { v.outputTokens = t }
        for part in parts where part.scorer.needsPrompt { part.scorer.prepare(request, view: &v) }
        let ranges = parts.map { Self.range(of: $0.scorer, in: v) }
        for i in 0..<v.count {
            var score: Double? = v.usable(i) ? 0 : nil
            for (p, part) in parts.enumerated() {
                let c = part.scorer.cost(at: i, in: v)
                out.rows[i].costs.append((part.scorer.name, c))
                guard part.weight > 0, let r = ranges[p] else { continue }
                if let c, let s = score {
                    score = s + part.weight * Self.normalized(c, r)
                } else {
                    score = nil
                }
            }
            out.rows[i].score = score
        }
        return out
    }
}
