import EventLoop
import PodDiscovery

/// Polls a file on the control loop and calls `changed` after each edit
/// (size, mtime or content differ). The reloadable files (API keys, users)
/// share it; the pods file has its own provider in PodDiscovery.
enum FileWatch {
    static func start(path: String, every nanos: UInt64, loop: EventLoop, _ changed: @escaping @Sendable () -> Void) {
        guard nanos > 0 else { return }
        let first = StaticPodsFileProvider.fingerprint(path)
        loop.execute { poll(path: path, every: nanos, last: first, loop: loop, changed) }
    }

    private static func poll(path: String, every nanos: UInt64, last: [Int], loop: EventLoop,
                             _ changed: @escaping @Sendable () -> Void) {
        loop.schedule(afterNanos: nanos) {
            let now = StaticPodsFileProvider.fingerprint(path)
            if now != last { changed() }
            poll(path: path, every: nanos, last: now, loop: loop, changed)
        }
    }
}
