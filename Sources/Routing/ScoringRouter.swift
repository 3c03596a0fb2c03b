import PodSnapshot

/// One signal turned into a cost per endpoint (lower is better), or nil
/// when the signal is unknown for that endpoint (not scraped, stale, no
/// requests in the window). Scorers are pure lookups: no allocation.
public protocol Scorer: Sendable {
    /// The strategy name it is offered under (`least-request`, …).
    var name: String { get }
    /// Why a decision fell back when no candidate has this signal
    /// (`kv_cache_usage_unknown`, …).
    var unknownReason: String { get }
    func cost(of pod: PodEndpoint, model: String, snapshot: PodSnapshot) -> Double?
}

/// The router model every scoring strategy shares:
///
/// 1. **Filter**: pods whose scrape is fresh, when any candidate is fresh
///    (never a stale or unscraped pod while a fresh one exists); otherwise
///    all candidates (scraped parts then know nothing and are reported).
/// 2. **Score**: each part's costs normalized over the remaining pods to
///    [0, 1] (1 = the cheapest; all equal → 1), weighted, summed. A pod a
///    part cannot score is left out while another pod can be scored; a part
///    no pod can score is dropped and reported (`<part>:<reason>`); when
///    every part is dropped the decision is the fallback scorer's
///    (`least-request`, gateway accounting, always known).
/// 3. **Pick**: the highest score; ties broken at random (seeded source),
///    one pass, no allocation per pod.
public struct ScoringRouter: Router {
    public let name: String
    public let parts: [(scorer: any Scorer, weight: Double)]
    private let fallback: any Scorer
    private let source: RandomSource

    public init(name: String, parts: [(scorer: any Scorer, weight: Double)], fallback: any Scorer = LeastRequestScorer(),
                source: RandomSource) {
        self.name = name
        self.parts = parts
        self.fallback = fallback
        self.source = source
    }

    public func route(_ request: RoutingRequest, candidates: [PodEndpoint], snapshot: PodSnapshot) throws(RoutingError) -> PodEndpoint {
        try decide(request, candidates: candidates, snapshot: snapshot).pod
    }

    public func decide(_ request: RoutingRequest, candidates: [PodEndpoint], snapshot: PodSnapshot) throws(RoutingError) -> RoutingDecision {
        guard !candidates.isEmpty else { throw .noCandidates(model: request.model) }
        let model = request.model
        let freshOnly = candidates.contains { snapshot.pods[$0.address]?.health.isFresh == true }
        var reason: String?
        @inline(__always) func eligible(_ p: PodEndpoint) -> Bool {
            !freshOnly || snapshot.pods[p.address]?.health.isFresh == true
        }
        if candidates.count == 1 { return RoutingDecision(pod: candidates[0], fallback: reason) }

        // Pass 1: each part's cost range over eligible pods (one small array per decision, never per pod).
        var low = [Double](repeating: .infinity, count: parts.count)
        var high = [Double](repeating: -.infinity, count: parts.count)
        for p in candidates where eligible(p) {
            for i in parts.indices {
                if let c = parts[i].scorer.cost(of: p, model: model, snapshot: snapshot) {
                    low[i] = min(low[i], c)
                    high[i] = max(high[i], c)
                }
            }
        }
        var used = 0
        for i in parts.indices where parts[i].weight > 0 {
            if low[i] <= high[i] {
                used += 1
            } else {
                let r = parts.count == 1 ? parts[i].scorer.unknownReason : "\(parts[i].scorer.name):\(parts[i].scorer.unknownReason)"
                reason = reason.map { "\($0),\(r)" } ?? r
            }
        }
        if used == 0 {
            return RoutingDecision(pod: pickCheapest(fallback, candidates, model: model, snapshot: snapshot, eligible: eligible),
                                   fallback: reason)
        }
        // Pass 2: weighted normalized score; argmax with reservoir tie-breaking.
        var best: PodEndpoint?
        var bestScore = -Double.infinity
        var ties = 0
        for p in candidates where eligible(p) {
            var score = 0.0
            var scored = true
            for i in parts.indices where parts[i].weight > 0 && low[i] <= high[i] {
                guard let c = parts[i].scorer.cost(of: p, model: model, snapshot: snapshot) else { scored = false; break }
                score += parts[i].weight * (high[i] == low[i] ? 1 : (high[i] - c) / (high[i] - low[i]))
            }
            guard scored else { continue }
            if score > bestScore + 1e-12 {
                best = p
                bestScore = score
                ties = 1
            } else if abs(score - bestScore) <= 1e-12 {
                ties += 1
                if source.next() % UInt64(ties) == 0 { best = p }
            }
        }
        // Every eligible pod lacked some part's signal: cannot happen when
        // used > 0 (the pod that set the range is scorable for that part),
        // but a pod may lack another part's; fall back rather than fail.
        guard let pod = best else {
            return RoutingDecision(pod: pickCheapest(fallback, candidates, model: model, snapshot: snapshot, eligible: eligible),
                                   fallback: reason ?? "no_pod_has_every_signal")
        }
        return RoutingDecision(pod: pod, fallback: reason)
    }

    /// The eligible pod with the lowest fallback cost (ties at random).
    private func pickCheapest(_ scorer: any Scorer, _ candidates: [PodEndpoint], model: String, snapshot: PodSnapshot,
                              eligible: (PodEndpoint) -> Bool) -> PodEndpoint {
        var best = candidates[0]
        var bestCost = Double.infinity
        var ties = 0
        for p in candidates where eligible(p) {
            let c = scorer.cost(of: p, model: model, snapshot: snapshot) ?? .infinity
            if c < bestCost {
                best = p
                bestCost = c
                ties = 1
            } else if c == bestCost {
                ties += 1
                if source.next() % UInt64(ties) == 0 { best = p }
            }
        }
        return best
    }
}
