import PodSnapshot

/// One signal turned into a cost per endpoint (lower is better), or nil
/// when the signal is unknown for that endpoint (not scraped, stale, no
/// requests in the window). Scorers are pure array lookups: no allocation,
/// no hashing.
public protocol Scorer: Sendable {
    /// The strategy name it is offered under (`least-request`, …).
    var name: String { get }
    /// Why a decision fell back when no candidate has this signal
    /// (`kv_cache_usage_unknown`, …).
    var unknownReason: String { get }
    func cost(at i: Int, in view: ModelView) -> Double?
    /// True when `prepare` needs `RoutingRequest.prompt`.
    var needsPrompt: Bool { get }
    /// Computes request-scoped signals into the view before any cost is
    /// asked (prefix matching); most scorers need none.
    func prepare(_ request: RoutingRequest, view: inout ModelView)
    /// Told which candidate won (a prefix scorer records the prompt there).
    func chosen(_ i: Int, request: RoutingRequest, view: ModelView)
}

extension Scorer {
    public var needsPrompt: Bool { false }
    public func prepare(_ request: RoutingRequest, view: inout ModelView) {}
    public func chosen(_ i: Int, request: RoutingRequest, view: ModelView) {}
}

/// The router model every scoring strategy shares:
///
/// 1. **Filter**: pods whose scrape is fresh, when any candidate is fresh
///    (never a stale or unscraped pod while a fresh one exists); otherwise
///    all candidates (scraped parts then know nothing and are reported).
/// 2. **Score**: each part's costs normalized over the remaining pods to
///    [0, 1] (1 = the cheapest; all equal → 1), weighted, summed. A pod a
///    part cannot score is left out while another pod can be scored; a part
///    no pod can score is dropped and reported (`<part>:<reason>`, or just
///    the reason for a single-part strategy); when every part is dropped the
///    decision is the fallback scorer's (`least-request`, gateway
///    accounting, always known).
/// 3. **Pick**: the highest score; ties broken at random (seeded source).
///    Two passes over the candidates, no allocation per pod.
public struct ScoringRouter: Router {
    public let name: String
    public let parts: [(scorer: any Scorer, weight: Double)]
    /// The parts with a positive weight, flattened for the decision loops.
    private let scorers: [any Scorer]
    private let weights: [Double]
    private let fallback: any Scorer
    private let source: RandomSource
    /// Some part reads the prompt (and prepares and records per request).
    private let preparing: Bool

    public var needsPrompt: Bool { scorers.contains { $0.needsPrompt } }

    public init(name: String, parts: [(scorer: any Scorer, weight: Double)], fallback: any Scorer = LeastRequestScorer(),
                source: RandomSource) {
        self.name = name
        self.parts = parts
        self.scorers = parts.filter { $0.weight > 0 }.map(\.scorer)
        self.weights = parts.filter { $0.weight > 0 }.map(\.weight)
        self.fallback = fallback
        self.source = source
        self.preparing = parts.contains { $0.weight > 0 && $0.scorer.needsPrompt }
    }

    public func decide(_ request: RoutingRequest, view base: ModelView) throws(RoutingError) -> RoutingDecision {
        guard base.count > 0 else { throw .noCandidates(model: request.model) }
        var view = base  // copy-on-write arrays: only the scalars below change
        if let t = request.maxTokens, t > 0 { view.outputTokens = t }
        guard preparing else { return pick(request, view) }
        for s in scorers { s.prepare(request, view: &view) }
        let d = pick(request, view)
        if request.records, let i = view.endpoints.firstIndex(of: d.pod) {
            for s in scorers { s.chosen(i, request: request, view: view) }
        }
        return d
    }

    private func pick(_ request: RoutingRequest, _ view: ModelView) -> RoutingDecision {
        if scorers.count == 1 {
            // One part: the cheapest pod is the best-scored one, no normalization needed.
            let s = scorers[0]
            guard let i = cheapest(view, cost: { s.cost(at: $0, in: view) }) else {
                return RoutingDecision(pod: view.endpoints[byFallback(view)], fallback: s.unknownReason)
            }
            return RoutingDecision(pod: view.endpoints[i])
        }
        // Pass 1: each part's cost range over usable pods (one small array per decision, never per pod).
        var reason: String?
        let ranges = scorers.map { s in
            let r = Self.range(of: s, in: view)
            if r == nil {
                let why = "\(s.name):\(s.unknownReason)"
                reason = reason.map { "\($0),\(why)" } ?? why
            }
            return r
        }
        guard ranges.contains(where: { $0 != nil }) else {
            return RoutingDecision(pod: view.endpoints[byFallback(view)], fallback: reason)
        }
        // Pass 2: weighted normalized score; a pod missing a used part's signal is left out.
        let best = cheapest(view) { i in
            var score = 0.0
            for p in ranges.indices {
                guard let r = ranges[p] else { continue }
                guard let c = scorers[p].cost(at: i, in: view) else { return nil }
                score += weights[p] * Self.normalized(c, r)
            }
            return -score  // the highest score is the lowest cost
        }
        return RoutingDecision(pod: view.endpoints[best ?? byFallback(view)], fallback: reason)
    }

    /// A part's lowest and highest cost over the usable pods; nil when no usable pod has it.
    static func range(of s: any Scorer, in view: ModelView) -> (low: Double, high: Double)? {
        var low = Double.infinity, high = -Double.infinity
        for i in 0..<view.count where view.usable(i) {
            if let c = s.cost(at: i, in: view) { low = min(low, c); high = max(high, c) }
        }
        return low <= high ? (low, high) : nil
    }

    /// A cost mapped to [0, 1] over its range: 1 for the cheapest (and for all when equal).
    static func normalized(_ c: Double, _ r: (low: Double, high: Double)) -> Double {
        r.high == r.low ? 1 : (r.high - c) / (r.high - r.low)
    }

    /// The usable index with the lowest `cost` (nil: left out), ties at
    /// random; nil when no usable pod could be costed.
    private func cheapest(_ view: ModelView, cost: (Int) -> Double?) -> Int? {
        var best: Int?
        var bestCost = Double.infinity
        var ties = 0
        for i in 0..<view.count where view.usable(i) {
            guard let c = cost(i) else { continue }
            if best == nil || c < bestCost - 1e-12 {
                best = i
                bestCost = c
                ties = 1
            } else if abs(c - bestCost) <= 1e-12 {
                ties += 1
                if source.next() % UInt64(ties) == 0 { best = i }
            }
        }
        return best
    }

    /// The fallback scorer's pick (`least-request`: always known).
    private func byFallback(_ view: ModelView) -> Int {
        cheapest(view) { fallback.cost(at: $0, in: view) ?? .infinity } ?? 0
    }
}
