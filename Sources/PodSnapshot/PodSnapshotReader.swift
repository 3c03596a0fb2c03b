/// A per-thread cache of the registry's snapshot: one atomic load per read,
/// the lock only when a publish happened since. Not Sendable: keep one per
/// event loop.
public final class PodSnapshotReader {
    private let registry: PodRegistry
    private var seen: UInt64 = .max
    private var cached: PodSnapshot = .empty

    public init(registry: PodRegistry) {
        self.registry = registry
    }

    public var current: PodSnapshot {
        let v = registry.version
        if v != seen {
            cached = registry.snapshot
            seen = v
        }
        return cached
    }
}
