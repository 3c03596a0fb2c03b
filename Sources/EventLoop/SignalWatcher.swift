internal import CSystem
import Glibc

/// Delivers SIGTERM/SIGINT (or any set) to a loop through a signalfd.
///
/// Create it on the main thread before any other thread starts: it blocks the
/// signals in the calling thread so that threads created later inherit the mask
/// and the signals are only seen through the descriptor.
public final class SignalWatcher: FDHandler {
    private let fd: Int32
    private var onSignal: ((Int32) -> Void)?

    public init(signals: [Int32]) throws(SystemError) {
        let f = signals.withUnsafeBufferPointer { csys_signalfd($0.baseAddress, Int32($0.count)) }
        guard f >= 0 else { throw SystemError("signalfd", errno) }
        fd = f
    }

    /// Starts reporting signals on `loop`'s thread.
    public func attach(to loop: EventLoop, _ onSignal: @escaping (Int32) -> Void) throws(SystemError) {
        self.onSignal = onSignal
        try loop.register(fd: fd, events: .readable, handler: self)
    }

    public func handleEvents(_ events: IOEvents) {
        while true {
            let s = csys_signalfd_read(fd)
            if s < 0 { return }
            onSignal?(s)
        }
    }
}
