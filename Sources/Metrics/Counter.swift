import Synchronization

/// A monotonically increasing count, updated with relaxed atomics from any
/// thread (no lock). Rendered as a Prometheus counter.
public final class Counter: Sendable {
    private let v = Atomic<UInt64>(0)
    public init() {}
    public func add(_ n: UInt64 = 1) { v.add(n, ordering: .relaxed) }
    public var value: UInt64 { v.load(ordering: .relaxed) }
}
