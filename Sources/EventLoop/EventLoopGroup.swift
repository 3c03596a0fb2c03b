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
