import Synchronization

/// A Prometheus histogram with fixed upper bounds (+Inf implied), updated
/// with relaxed atomics from any thread (no lock). Per-bucket counts are
/// stored; cumulative `le` counts are computed when read, so an observation
/// costs one bucket search and three atomic adds. The sum is kept as a
/// `Double` bit pattern updated by compare-and-swap (exact for the integer
/// and nanosecond values recorded here).
public final class Histogram: Sendable {
    /// Upper bounds, ascending, in the unit of the observations.
    public let bounds: [Double]
    private let counts: [Counter]
    private let sumBits = Atomic<UInt64>(0.0.bitPattern)
    private let total = Atomic<UInt64>(0)

    public init(bounds: [Double]) {
        precondition(zip(bounds, bounds.dropFirst()).allSatisfy { $0 < $1 }, "histogram bounds must ascend")
        self.bounds = bounds
        self.counts = bounds.map { _ in Counter() }
    }

    /// Records one observation (`value <= bound` falls in that bucket).
    public func observe(_ value: Double) {
        var lo = 0, hi = bounds.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if value <= bounds[mid] { hi = mid } else { lo = mid + 1 }
        }
        if lo < bounds.count { counts[lo].add(1) }
        total.add(1, ordering: .relaxed)
        var old = sumBits.load(ordering: .relaxed)
        while true {
            let new = (Double(bitPattern: old) + value).bitPattern
            let (done, seen) = sumBits.compareExchange(expected: old, desired: new, ordering: .relaxed)
            if done { break }
            old = seen
        }
    }

    /// Records a duration given in nanoseconds, for bounds in seconds.
    public func observe(nanos: UInt64) { observe(Double(nanos) / 1e9) }

    /// A consistent-enough copy for rendering: cumulative count per bound,
    /// the total (the `+Inf` bucket) and the sum.
    public var snapshot: Snapshot {
        var running: UInt64 = 0
        var cumulative: [UInt64] = []
        cumulative.reserveCapacity(counts.count)
        for c in counts {
            running += c.value
            cumulative.append(running)
        }
        let n = total.load(ordering: .relaxed)
        return Snapshot(bounds: bounds, cumulative: cumulative, count: max(n, running),
                        sum: Double(bitPattern: sumBits.load(ordering: .relaxed)))
    }

    public struct Snapshot: Sendable, Equatable {
        public let bounds: [Double]
        public let cumulative: [UInt64]
        public let count: UInt64
        public let sum: Double
    }
}
