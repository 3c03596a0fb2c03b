import Synchronization

/// Holds the current `PodSnapshot`. Discovery publishes endpoints, the
/// scraper publishes pod states; each publish builds a new snapshot and bumps
/// an atomic version so readers (`PodSnapshotReader`) only take the lock when
/// something changed.
public final class PodRegistry: Sendable {
    private let current: Mutex<PodSnapshot>
    private let versions = Atomic<UInt64>(0)

    public init(_ initial: PodSnapshot = .empty) {
        current = Mutex(initial)
    }

    /// The snapshot in force now (takes the lock; hot paths use a reader).
    public var snapshot: PodSnapshot { current.withLock { $0 } }

    /// Bumped by every publish.
    public var version: UInt64 { versions.load(ordering: .acquiring) }

    /// Replaces the endpoints (models with no endpoints are kept: they answer 503).
    /// Load counters of endpoints that stay are kept; new endpoints get new ones.
    public func publish(models: [String: [PodEndpoint]], strategies: [String: String]? = nil) {
        current.withLock { s in
            var loads: [String: PodLoad] = [:]
            var pods: [String: PodState] = [:]
            for eps in models.values {
                for e in eps {
                    loads[e.address] = s.loads[e.address] ?? PodLoad()
                    pods[e.address] = s.pods[e.address] ?? PodState(health: .unknown)
                }
            }
            s = PodSnapshot(models: models, pods: pods, loads: loads, defaultStrategies: strategies ?? s.defaultStrategies,
                            version: s.version + 1)
        }
        versions.add(1, ordering: .releasing)
    }

    /// Replaces the scraped states (only for endpoints still known).
    public func publish(pods: [String: PodState]) {
        current.withLock { s in
            var merged = s.pods
            for (k, v) in pods where merged[k] != nil { merged[k] = v }
            s = PodSnapshot(models: s.models, pods: merged, loads: s.loads, defaultStrategies: s.defaultStrategies,
                            version: s.version + 1)
        }
        versions.add(1, ordering: .releasing)
    }
}
