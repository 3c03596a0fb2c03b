import EventLoop
import Foundation
import Logging
import PodDiscovery
import Synchronization

/// Bearer-token authentication at the gateway: the keys of a key file,
/// reloaded when the file changes, compared in constant time. Each key may
/// be bound to a user name, which then is the request's user (the limits
/// read it, so one user cannot spend another's budget by sending a
/// different `user`).
///
/// Key file: one key per line, optionally followed by whitespace and a user
/// name; `#` starts a comment; blank lines are ignored.
///
///     sk-team-a-3f9c  alice
///     sk-ci-77d1      ci-bot
///     sk-anonymous-1
///
/// Lookups run on the I/O loops (a lock-free snapshot read); reloads on the
/// control loop. A file that fails to parse keeps the last good key set.
public final class APIKeyStore: Sendable {
    public struct Entry: Sendable, Equatable {
        let key: [UInt8]
        public let user: String?
    }

    public struct LoadError: Error, CustomStringConvertible, Sendable {
        public let description: String
    }

    let path: String
    private let entries: Mutex<[Entry]>
    let logger: Logger

    /// Loads now (a bad or empty file stops start-up), then polls every `pollNanos` on `loop`.
    public init(path: String, pollNanos: UInt64, loop: EventLoop, logger: Logger) throws(LoadError) {
        self.path = path
        self.logger = logger
        entries = Mutex(try Self.load(path))
        FileWatch.start(path: path, every: pollNanos, loop: loop) { [self] in reload() }
    }

    /// A store over fixed entries (tests).
    init(entries: [Entry], logger: Logger) {
        path = ""
        self.logger = logger
        self.entries = Mutex(entries)
    }

    public var count: Int { entries.withLock { $0.count } }

    /// The entry whose key equals `token`, comparing every key in full (no
    /// early exit, no length shortcut), so timing does not say how much of
    /// a guess matched.
    public func authenticate(_ token: Substring.UTF8View) -> Entry? {
        entries.withLock { list in
            var found = -1
            for (i, e) in list.enumerated() {
                let lengths = e.key.count ^ token.count
                var diff: UInt8 = 0
                var k = token.startIndex
                for j in 0..<e.key.count {
                    let t: UInt8 = k < token.endIndex ? token[k] : 0
                    diff |= e.key[j] ^ t
                    if k < token.endIndex { k = token.index(after: k) }
                }
                // Branch-free select of the first match.
                let isMatch = diff == 0 && lengths == 0 && found < 0
                found = isMatch ? i : found
            }
            return found >= 0 ? list[found] : nil
        }
    }

    /// Reads the token from `authorization: Bearer …` or Anthropic's `x-api-key`.
    public static func token(authorization: String?, apiKey: String?) -> Substring? {
        if let a = authorization {
            let t = a.drop { $0 == " " }
            if t.count > 7, t.prefix(7).lowercased() == "bearer " { return t.dropFirst(7).drop { $0 == " " } }
            return nil
        }
        if let k = apiKey, !k.isEmpty { return Substring(k) }
        return nil
    }

    static func parse(_ text: String, path: String) throws(LoadError) -> [Entry] {
        var out: [Entry] = []
        var seen = Set<String>()
        for (n, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" })
            guard !fields.isEmpty else { continue }
            guard fields.count <= 2 else {
                throw LoadError(description: "key file \(path) line \(n + 1): expected 'KEY [USER]'")
            }
            let key = String(fields[0])
            guard key.count >= 8 else { throw LoadError(description: "key file \(path) line \(n + 1): a key must be at least 8 characters") }
            guard seen.insert(key).inserted else { throw LoadError(description: "key file \(path) line \(n + 1): key listed twice") }
            out.append(Entry(key: Array(key.utf8), user: fields.count == 2 ? String(fields[1]) : nil))
        }
        guard !out.isEmpty else { throw LoadError(description: "key file \(path) has no keys: every request would be refused") }
        return out
    }

    static func load(_ path: String) throws(LoadError) -> [Entry] {
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw LoadError(description: "cannot read key file \(path): \(error.localizedDescription)")
        }
        return try parse(text, path: path)
    }

    private func reload() {
        do {
            let fresh = try Self.load(path)
            entries.withLock { $0 = fresh }
            logger.notice("auth.keys.reloaded", metadata: ["auth.file": "\(path)", "auth.keys": "\(fresh.count)"])
        } catch {
            logger.error("auth.keys.rejected", metadata: ["auth.file": "\(path)", "error": "\(error)",
                                                         "action": "keeping the last good keys"])
        }
    }
}
