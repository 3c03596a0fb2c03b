import Foundation
import Synchronization

/// N event loops, one thread each (one per core is the intended shape).
///
/// `start()` spawns the threads; `stopAll()` asks every loop to return and
/// `join()` waits for the threads.
public final class EventLoopGroup: Sendable {
    public let loops: [EventLoop]
    private let finished: Mutex<Int> = Mutex(0)
    private let done = DispatchSemaphore(value: 0)

    public init(count: Int) throws(SystemError) {
        var made: [EventLoop] = []
        for i in 0..<max(1, count) { made.append(try EventLoop(index: i)) }
        loops = made
    }

    /// Starts one thread per loop.
    public func start(name: String = "switchboard-loop") {
        for loop in loops {
            let t = Thread { [self] in
                loop.run()
                finished.withLock { $0 += 1 }
                done.signal()
            }
            t.name = "\(name)-\(loop.index)"
            t.stackSize = 1 << 20
            t.start()
        }
    }

    public func stopAll() {
        for l in loops { l.stop() }
    }

    /// Blocks until every started loop has returned.
    public func join() {
        for _ in loops { done.wait() }
    }
}

/// Facts about the machine.
public enum System {
    /// Online CPU cores (at least 1).
    public static var coreCount: Int { max(1, ProcessInfo.processInfo.activeProcessorCount) }
}

/// A relaxed atomic counter, readable from any thread.
public final class Counter: Sendable {
    private let v = Atomic<UInt64>(0)
    public init() {}
    public func add(_ n: UInt64) { v.add(n, ordering: .relaxed) }
    public var value: UInt64 { v.load(ordering: .relaxed) }
}

/// A Prometheus-style histogram with fixed upper bounds, updated with
/// relaxed atomics (no lock): cumulative counts are computed when read.
public final class Histogram: Sendable {
    public let bounds: [Double]
    private let counts: [Counter]
    private let sumNanos = Counter()
    private let total = Counter()

    /// `bounds` in seconds, ascending; +Inf is implied.
    public init(bounds: [Double]) {
        self.bounds = bounds
        self.counts = bounds.map { _ in Counter() }
    }

    /// Records one observation of `nanos` nanoseconds.
    public func observe(nanos: UInt64) {
        let seconds = Double(nanos) / 1e9
        if let i = bounds.firstIndex(where: { seconds <= $0 }) { counts[i].add(1) }
        sumNanos.add(nanos)
        total.add(1)
    }

    /// Cumulative counts per bound, the total and the sum in seconds.
    public var snapshot: (cumulative: [UInt64], count: UInt64, sum: Double) {
        var running: UInt64 = 0
        let cumulative = counts.map { c -> UInt64 in running += c.value; return running }
        return (cumulative, total.value, Double(sumNanos.value) / 1e9)
    }
}
