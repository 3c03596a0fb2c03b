import PodSnapshot
import Synchronization

/// `random`: a uniformly random endpoint among the fresh ones (scraped
/// recently and successfully) when any candidate is fresh, else among all
/// (before the first scrape, or when every pod's metrics are stale; its
/// rule needs no metric, so this is not a fallback). Signal: scrape health.
public struct RandomRouter: Router {
    public let name = "random"
    private let source: RandomSource

    /// `seed` makes choices reproducible (tests, benchmarks); nil uses the system generator.
    public init(seed: UInt64? = nil) {
        source = RandomSource(seed: seed)
    }

    public init(source: RandomSource) {
        self.source = source
    }

    public func decide(_ request: RoutingRequest, view: ModelView) throws(RoutingError) -> RoutingDecision {
        guard view.count > 0 else { throw .noCandidates(model: request.model) }
        if view.count == 1 { return RoutingDecision(pod: view.endpoints[0]) }
        return RoutingDecision(pod: view.endpoints[view.usableIndex(Int(source.next() % UInt64(view.usableCount)))])
    }
}

/// A thread-safe random source: SplitMix64 over an atomic counter
/// (lock-free; reproducible when seeded).
public final class RandomSource: Sendable {
    private let state: Atomic<UInt64>

    /// nil seeds once from the system generator (no system call per draw).
    public init(seed: UInt64?) {
        var g = SystemRandomNumberGenerator()
        state = Atomic(seed ?? g.next())
    }

    public func next() -> UInt64 {
        var z = state.wrappingAdd(0x9E37_79B9_7F4A_7C15, ordering: .relaxed).newValue
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
