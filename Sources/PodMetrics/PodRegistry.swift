import Synchronization

/// Holds the current `PodSnapshot`. Discovery providers publish whole new
/// snapshots; readers take the current one (a short lock and a retain).
public final class PodRegistry: Sendable {
    private let current: Mutex<PodSnapshot>
    private let versions = Atomic<UInt64>(0)

    public init(_ initial: PodSnapshot = .empty) {
        current = Mutex(initial)
    }

    /// The snapshot in force now.
    public var snapshot: PodSnapshot { current.withLock { $0 } }

    /// Replaces the snapshot (models with no endpoints are kept: they answer 503).
    public func publish(models: [String: [PodEndpoint]]) {
        let v = versions.add(1, ordering: .relaxed).newValue
        let s = PodSnapshot(models: models, version: v)
        current.withLock { $0 = s }
    }
}
