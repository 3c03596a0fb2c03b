import PodSnapshot

/// `least-request`: the pod with the fewest requests the gateway routed to
/// it and not yet finished (its own accounting, exact and instant; the
/// scraped running/waiting counts lag by a scrape and miss requests in
/// flight between gateway and engine). Signal: gateway accounting, always
/// known, so this is also every other strategy's fallback.
public struct LeastRequestScorer: Scorer {
    public let name = "least-request"
    public let unknownReason = "in_flight_unknown"
    public init() {}
    public func cost(at i: Int, in view: ModelView) -> Double? {
        Double(view.inFlight(i))
    }
}
