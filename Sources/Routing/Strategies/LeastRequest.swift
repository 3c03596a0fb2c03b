import PodSnapshot

/// `least-request`: the pod with the fewest requests in flight, taken as
/// the larger of the gateway's own count (requests it routed there and not
/// finished: exact and instant, but blind to other replicas and direct
/// clients) and the engine's scraped `num_requests_running` +
/// `num_requests_waiting` (everyone's requests, one scrape late). Signal:
/// gateway accounting, always known, plus the scrape when fresh; so this is
/// also every other strategy's fallback.
public struct LeastRequestScorer: Scorer {
    public let name = "least-request"
    public let unknownReason = "in_flight_unknown"
    public init() {}
    public func cost(at i: Int, in view: ModelView) -> Double? {
        let own = Double(view.inFlight(i))
        guard let m = view.metrics[i], let running = m.running else { return own }
        return max(own, running + (m.waiting ?? 0))
    }
}
