internal import CSystem
import Glibc
import Synchronization

/// Something registered on an event loop for readiness events of one file descriptor.
/// Called on the loop's thread only.
public protocol FDHandler: AnyObject {
    func handleEvents(_ events: IOEvents)
}

/// Readiness reported by epoll.
public struct IOEvents: OptionSet, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let readable = IOEvents(rawValue: UInt32(CSYS_EV_IN))
    public static let writable = IOEvents(rawValue: UInt32(CSYS_EV_OUT))
    public static let error = IOEvents(rawValue: UInt32(CSYS_EV_ERR))
    public static let hangup = IOEvents(rawValue: UInt32(CSYS_EV_HUP) | UInt32(CSYS_EV_RDHUP))
    /// Wake only one of the loops waiting on a shared listening socket.
    public static let exclusive = IOEvents(rawValue: UInt32(CSYS_EV_EXCLUSIVE))
}

/// Handle for a scheduled timer; pass it to `EventLoop.cancel(_:)`.
public struct TimerID: Hashable, Sendable {
    let raw: UInt64
}

/// Monotonic time in nanoseconds.
@inline(__always) public func monotonicNanos() -> UInt64 { csys_monotonic_ns() }

/// A single-threaded epoll loop with timers and a cross-thread task queue.
///
/// Threading: every method except `execute(_:)` and `stop()` must be called on
/// the loop's own thread (inside a handler, a timer or an executed task).
/// That invariant is what makes the `@unchecked Sendable` below sound: the
/// mutable state is touched by one thread only, and the task queue is guarded
/// by a `Mutex`.
public final class EventLoop: @unchecked Sendable {
    public let index: Int
    private let epfd: Int32
    private let wakeFD: Int32
    private var handlers: [Int32: any FDHandler] = [:]
    private var timerHeap: [(deadline: UInt64, id: UInt64)] = []
    private var timerCallbacks: [UInt64: () -> Void] = [:]
    private var nextTimerID: UInt64 = 1
    private let queue = Mutex<[@Sendable () -> Void]>([])
    private let stopFlag = Atomic<Bool>(false)
    private var threadID: pthread_t?
    /// Loop-confined storage for components that keep per-loop state (for
    /// example a server's connections on this loop). Touch only on the loop.
    public var loopLocal: [String: AnyObject] = [:]
    /// The read buffer every `StreamSocket` on this loop reads into.
    var readBuffer = [UInt8](repeating: 0, count: 64 * 1024)
    private static let wakeToken: UInt64 = UInt64.max

    public init(index: Int = 0) throws(SystemError) {
        self.index = index
        let ep = csys_epoll_create()
        guard ep >= 0 else { throw SystemError("epoll_create1", errno) }
        let wake = csys_eventfd()
        guard wake >= 0 else { close(ep); throw SystemError("eventfd", errno) }
        epfd = ep
        wakeFD = wake
        _ = csys_epoll_ctl(ep, 1, wake, UInt32(CSYS_EV_IN), Self.wakeToken)
    }

    deinit {
        close(wakeFD)
        close(epfd)
    }

    /// True when called on the loop's thread (or before the loop runs).
    public var inLoop: Bool {
        guard let t = threadID else { return true }
        return pthread_equal(t, pthread_self()) != 0
    }

    /// Starts watching `fd`. The loop keeps `handler` alive until `unregister`.
    public func register(fd: Int32, events: IOEvents, handler: any FDHandler) throws(SystemError) {
        handlers[fd] = handler
        // EPOLLEXCLUSIVE may not be combined with EPOLLRDHUP (EINVAL).
        let mask = events.contains(.exclusive) ? events.rawValue : events.rawValue | UInt32(CSYS_EV_RDHUP)
        if csys_epoll_ctl(epfd, 1, fd, mask, UInt64(UInt32(bitPattern: fd))) != 0 {
            handlers[fd] = nil
            throw SystemError("epoll_ctl(add)", errno)
        }
    }

    /// Changes the readiness events watched for `fd`.
    public func modify(fd: Int32, events: IOEvents) {
        _ = csys_epoll_ctl(epfd, 3, fd, events.rawValue | UInt32(CSYS_EV_RDHUP), UInt64(UInt32(bitPattern: fd)))
    }

    /// Stops watching `fd` and drops the loop's reference to its handler. Does not close it.
    public func unregister(fd: Int32) {
        _ = csys_epoll_ctl(epfd, 2, fd, 0, 0)
        handlers[fd] = nil
    }

    /// Runs `callback` on this loop after `nanoseconds`.
    @discardableResult
    public func schedule(afterNanos nanoseconds: UInt64, _ callback: @escaping () -> Void) -> TimerID {
        let id = nextTimerID
        nextTimerID &+= 1
        timerCallbacks[id] = callback
        heapPush((monotonicNanos() &+ nanoseconds, id))
        return TimerID(raw: id)
    }

    /// Cancels a timer; a no-op when it already ran.
    public func cancel(_ timer: TimerID) {
        timerCallbacks[timer.raw] = nil
    }

    /// Queues `task` to run on the loop's thread. Safe from any thread.
    public func execute(_ task: @escaping @Sendable () -> Void) {
        queue.withLock { $0.append(task) }
        var one: UInt64 = 1
        _ = write(wakeFD, &one, 8)
    }

    /// Asks the loop to return from `run()`. Safe from any thread.
    public func stop() {
        stopFlag.store(true, ordering: .releasing)
        var one: UInt64 = 1
        _ = write(wakeFD, &one, 8)
    }

    /// Runs until `stop()`. Call on the thread that owns the loop.
    public func run() {
        threadID = pthread_self()
        var events = [UInt32](repeating: 0, count: 256)
        var tokens = [UInt64](repeating: 0, count: 256)
        while !stopFlag.load(ordering: .acquiring) {
            let timeout = nextTimeoutNanos()
            let n = events.withUnsafeMutableBufferPointer { ev in
                tokens.withUnsafeMutableBufferPointer { tk in
                    csys_epoll_wait_ns(epfd, ev.baseAddress, tk.baseAddress, 256, timeout)
                }
            }
            if n < 0 {
                if errno == EINTR { continue }
                fatalError("epoll_wait failed: errno \(errno)")
            }
            var i = 0
            while i < Int(n) {
                let token = tokens[i]
                if token == Self.wakeToken {
                    var buf: UInt64 = 0
                    _ = read(wakeFD, &buf, 8)
                } else if let h = handlers[Int32(bitPattern: UInt32(truncatingIfNeeded: token))] {
                    h.handleEvents(IOEvents(rawValue: events[i]))
                }
                i += 1
            }
            runDueTimers()
            runQueuedTasks()
        }
    }

    private func runQueuedTasks() {
        let tasks = queue.withLock { q -> [@Sendable () -> Void] in
            if q.isEmpty { return [] }
            let t = q
            q.removeAll(keepingCapacity: true)
            return t
        }
        for t in tasks { t() }
    }

    private func nextTimeoutNanos() -> Int64 {
        if !queue.withLock({ $0.isEmpty }) { return 0 }
        while let top = timerHeap.first, timerCallbacks[top.id] == nil { _ = heapPop() }
        guard let top = timerHeap.first else { return -1 }
        let now = monotonicNanos()
        if top.deadline <= now { return 0 }
        return Int64(min(top.deadline - now, 60_000_000_000))
    }

    private func runDueTimers() {
        let now = monotonicNanos()
        while let top = timerHeap.first, top.deadline <= now {
            _ = heapPop()
            if let cb = timerCallbacks.removeValue(forKey: top.id) { cb() }
        }
    }

    private func heapPush(_ e: (deadline: UInt64, id: UInt64)) {
        timerHeap.append(e)
        var i = timerHeap.count - 1
        while i > 0 {
            let p = (i - 1) / 2
            if timerHeap[p].deadline <= timerHeap[i].deadline { break }
            timerHeap.swapAt(p, i)
            i = p
        }
    }

    private func heapPop() -> (deadline: UInt64, id: UInt64)? {
        guard !timerHeap.isEmpty else { return nil }
        let top = timerHeap[0]
        let last = timerHeap.removeLast()
        if !timerHeap.isEmpty {
            timerHeap[0] = last
            var i = 0
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < timerHeap.count && timerHeap[l].deadline < timerHeap[m].deadline { m = l }
                if r < timerHeap.count && timerHeap[r].deadline < timerHeap[m].deadline { m = r }
                if m == i { break }
                timerHeap.swapAt(m, i)
                i = m
            }
        }
        return top
    }
}
