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

    public init(name: String, parts: [(scorer: any Scorer, weight: Double)], fallback: any Scorer = LeastRequestScorer(),
                source: RandomSource) {
        self.name = name
        self.parts = parts
        self.scorers = parts.filter { $0.weight > 0 }.map(\.scorer)
        self.weights = parts.filter { $0.weight > 0 }.map(\.weight)
        self.fallback = fallback
        self.source = source
    }

    public func decide(_ request: RoutingRequest, view base: ModelView) throws(RoutingError) -> RoutingDecision {
        guard base.count > 0 else { throw .noCandidates(model: request.model) }
        var view = base  // copy-on-write arrays: only the scalar below changes
        if let t = request.maxTokens, t > 0 { view.outputTokens = t }
        var reason: String?
        if scorers.count == 1 {
            // The common case without the per-decision range arrays.
            let s = scorers[0]
            var low = Double.infinity, high = -Double.infinity
            for i in 0..<view.count where view.usable(i) {
                if let c = s.cost(at: i, in: view) { low = min(low, c); high = max(high, c) }
            }
            guard low <= high else {
                return RoutingDecision(pod: view.endpoints[pickCheapest(fallback, view)], fallback: s.unknownReason)
            }
            return RoutingDecision(pod: view.endpoints[pickBest(view) { i in s.cost(at: i, in: view) }])
        }
        // Pass 1: each part's cost range over usable pods, part by part (one
        // small array per decision, never per pod).
        let k2 = scorers.count
        var low = [Double](repeating: .infinity, count: k2)
        var high = [Double](repeating: -.infinity, count: k2)
        for p in 0..<k2 {
            let s = scorers[p]
            var lo = Double.infinity, hi = -Double.infinity
            for i in 0..<view.count where view.usable(i) {
                if let c = s.cost(at: i, in: view) { lo = min(lo, c); hi = max(hi, c) }
            }
            low[p] = lo
            high[p] = hi
            if lo > hi {
                let r = "\(s.name):\(s.unknownReason)"
                reason = reason.map { "\($0),\(r)" } ?? r
            }
        }
        guard low.indices.contains(where: { low[$0] <= high[$0] }) else {
            return RoutingDecision(pod: view.endpoints[pickCheapest(fallback, view)], fallback: reason)
        }
        // Pass 2: weighted normalized score; a pod missing a used part's signal is left out.
        let best = pickBest(view) { i in
            var score = 0.0
            for p in 0..<k2 where low[p] <= high[p] {
                guard let c = scorers[p].cost(at: i, in: view) else { return nil }
                score += weights[p] * (high[p] == low[p] ? 1 : (high[p] - c) / (high[p] - low[p]))
            }
            return -score  // pickBest takes the lowest
        }
        return RoutingDecision(pod: view.endpoints[best], fallback: reason)
    }

    /// The usable index with the lowest `cost` (nil: left out); ties at
    /// random. When no usable pod can be costed, the fallback scorer decides.
    private func pickBest(_ view: ModelView, cost: (Int) -> Double?) -> Int {
        var best = -1
        var bestCost = Double.infinity
        var ties = 0
        for i in 0..<view.count where view.usable(i) {
            guard let c = cost(i) else { continue }
            if best < 0 || c < bestCost - 1e-12 {
                best = i
                bestCost = c
                ties = 1
            } else if abs(c - bestCost) <= 1e-12 {
                ties += 1
                if source.next() % UInt64(ties) == 0 { best = i }
            }
        }
        return best >= 0 ? best : pickCheapest(fallback, view)
    }

    /// The usable index with the lowest fallback cost (ties at random).
    private func pickCheapest(_ scorer: any Scorer, _ view: ModelView) -> Int {
        var best = -1
        var bestCost = Double.infinity
        var ties = 0
        for i in 0..<view.count where view.usable(i) {
            let c = scorer.cost(at: i, in: view) ?? .infinity
            if best < 0 || c < bestCost {
                best = i
                bestCost = c
                ties = 1
            } else if c == bestCost {
                ties += 1
                if source.next() % UInt64(ties) == 0 { best = i }
            }
        }
        return max(best, 0)
    }
}
