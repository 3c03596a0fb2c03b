import EventLoop
import Foundation
import Logging
import PodSnapshot

/// Discovery from the static pods file: loads it, then watches it (by
/// polling its size, modification time and content) and publishes every
/// good edit. A bad edit is rejected with a log line naming the file and the
/// reason, and the last good set stays in force.
public final class StaticPodsFileProvider: Sendable {
    public let path: String
    let pollNanos: UInt64
    let loop: EventLoop
    let logger: Logger
    let onChange: @Sendable (ModelTable) -> Void

    /// Loads the file now (throws on a bad file: start-up must not guess).
    public init(path: String, pollNanos: UInt64, loop: EventLoop, logger: Logger,
                onChange: @escaping @Sendable (ModelTable) -> Void) throws(StaticPodsFile.LoadError) {
        self.path = path
        self.pollNanos = pollNanos
        self.loop = loop
        self.logger = logger
        self.onChange = onChange
        onChange(try StaticPodsFile.load(path: path))
        let first = Self.fingerprint(path)
        loop.execute { [self] in
            let state = WatchState(last: first)
            if pollNanos > 0 { poll(state) }
        }
    }

    private func poll(_ state: WatchState) {
        loop.schedule(afterNanos: pollNanos) { [self] in
            let now = Self.fingerprint(path)
            if now != state.last {
                state.last = now
                do {
                    let table = try StaticPodsFile.load(path: path)
                    let models = table.endpoints
                    onChange(table)
                    logger.notice("pods.file.reloaded", metadata: [
                        "pods.file": "\(path)", "pods.models": "\(models.keys.sorted().joined(separator: ","))",
                        "pods.endpoints": "\(models.values.reduce(0) { $0 + $1.count })",
                    ])
                } catch {
                    logger.error("pods.file.rejected", metadata: ["pods.file": "\(path)", "error": "\(error)",
                                                                 "action": "keeping the last good set"])
                }
            }
            poll(state)
        }
    }

    /// Size, mtime and a hash of the content: edits within one mtime tick
    /// still show. Shared by every file the gateway reloads on change.
    public static func fingerprint(_ path: String) -> [Int] {
        guard let data = FileManager.default.contents(atPath: path) else { return [-1] }
        let attrs = try? FileManager.default.attributesOfItem(atPath: path)
        let mtime = (attrs?[.modificationDate] as? Date).map { Int($0.timeIntervalSince1970 * 1e6) } ?? 0
        var h = Hasher()
        h.combine(data)
        return [data.count, mtime, h.finalize()]
    }
}

/// Loop-confined poll state.
final class WatchState {
    var last: [Int]
    init(last: [Int]) { self.last = last }
}
