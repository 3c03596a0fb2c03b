import EventLoop
import Foundation
import RateLimit
import Redis
import Synchronization

/// `switchboard users`: edits the users file the gateway reloads.
public enum UsersTool {
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    /// The same actions on Redis's `aibrix-users/<name>` records (the shared store's users).
    public static func run(redis address: String, password: String?, username: String?, db: Int, action: String, name: String?,
                           rpm: Int?, tpm: Int?) throws -> String {
        guard var cfg = RedisConfiguration.parse(address: address) else { throw Failure(description: "bad Redis address \(address)") }
        cfg.password = password
        cfg.username = username
        cfg.database = db
        cfg.commandTimeoutNanos = 5_000_000_000
        let client = try BlockingRedis(cfg)
        defer { client.close() }
        func named() throws -> String {
            guard let n = name, !n.isEmpty else { throw Failure(description: "\(action) needs a user name") }
            return n
        }
        func record(_ u: UserLimits) throws -> String { String(decoding: try UsersFile.encode(u), as: UTF8.self) }
        func read(_ n: String) throws -> UserLimits? {
            guard case .string(let b) = try client.run(["GET", RedisLimitStore.userKey(n)]) else { return nil }
            return try UsersFile.parse(Data(("[" + String(decoding: b, as: UTF8.self) + "]").utf8), path: RedisLimitStore.userKey(n)).first
        }
        switch action {
        case "list":
            var cursor = "0", names: [String] = []
            repeat {
                guard case .array(let v) = try client.run(["SCAN", cursor, "MATCH", RedisLimitStore.userKey("*"), "COUNT", "500"]),
                      v.count == 2, let next = v[0].text, case .array(let keys) = v[1] else { throw Failure(description: "unexpected SCAN reply") }
                cursor = next
                names += keys.compactMap(\.text).map { String($0.dropFirst(RedisLimitStore.userKey("").count)) }
            } while cursor != "0"
            return try names.sorted().compactMap(read).map(listLine).joined()
        case "add", "set":
            let n = try named()
            let existing = try read(n)
            if action == "add", existing != nil { throw Failure(description: "user '\(n)' exists; use set") }
            if action == "set", existing == nil { throw Failure(description: "no user '\(n)'; use add") }
            if action == "set", rpm == nil, tpm == nil { throw Failure(description: "set needs --rpm or --tpm") }
            let u = UserLimits(name: n, rpm: rpm ?? existing?.rpm ?? 0, tpm: tpm ?? existing?.tpm ?? 0)
            _ = try client.run(["SET", RedisLimitStore.userKey(n), try record(u)])
            return "saved \(n) in \(address)\n"
        case "delete":
            let n = try named()
            guard case .integer(1) = try client.run(["DEL", RedisLimitStore.userKey(n)]) else { throw Failure(description: "no user '\(n)'") }
            return "deleted \(n) in \(address)\n"
        default:
            throw Failure(description: "unknown action '\(action)': use add, set, delete or list")
        }
    }

    /// One `list` line: the limits in force, marked where they are the defaults.
    static func listLine(_ u: UserLimits) -> String {
        "\(u.name)\trpm \(u.requests)\(u.rpm == 0 ? " (default)" : "")\ttpm \(u.tokens)\(u.tpm == 0 ? " (default)" : "")\n"
    }

    /// Runs one action and returns what to print.
    public static func run(file: String, action: String, name: String?, rpm: Int?, tpm: Int?) throws -> String {
        if let r = rpm, r < 0 { throw Failure(description: "--rpm must be non-negative") }
        if let t = tpm, t < 0 { throw Failure(description: "--tpm must be non-negative") }
        let exists = FileManager.default.fileExists(atPath: file)
        var users = exists ? try UsersFile.load(path: file) : []
        func named() throws -> String {
            guard let n = name, !n.isEmpty else { throw Failure(description: "\(action) needs a user name") }
            return n
        }
        switch action {
        case "list":
            guard exists else { throw Failure(description: "no users file at \(file)") }
            return users.sorted { $0.name < $1.name }.map(listLine).joined()
        case "add":
            let n = try named()
            guard !users.contains(where: { $0.name == n }) else { throw Failure(description: "user '\(n)' exists; use set") }
            users.append(UserLimits(name: n, rpm: rpm ?? 0, tpm: tpm ?? 0))
        case "set":
            let n = try named()
            guard let i = users.firstIndex(where: { $0.name == n }) else { throw Failure(description: "no user '\(n)'; use add") }
            guard rpm != nil || tpm != nil else { throw Failure(description: "set needs --rpm or --tpm") }
            if let r = rpm { users[i].rpm = r }
            if let t = tpm { users[i].tpm = t }
        case "delete":
            let n = try named()
            guard let i = users.firstIndex(where: { $0.name == n }) else { throw Failure(description: "no user '\(n)'") }
            users.remove(at: i)
        default:
            throw Failure(description: "unknown action '\(action)': use add, set, delete or list")
        }
        try UsersFile.write(users, path: file)
        return "\(action == "delete" ? "deleted" : "saved") \(name ?? "") in \(file) (\(users.count) users)\n"
    }
}

/// A Redis connection for a command-line tool: its own event loop thread,
/// each command waited for (bounded by the command timeout).
final class BlockingRedis {
    let group: EventLoopGroup
    let connection: RedisConnection

    init(_ cfg: RedisConfiguration) throws {
        group = try EventLoopGroup(count: 1)
        group.start(name: "switchboard-users")
        connection = RedisConnection(configuration: cfg, loop: group.loops[0])
        let c = connection
        group.loops[0].execute { c.start() }
        let deadline = Date().addingTimeInterval(Double(cfg.connectTimeoutNanos) / 1e9 + 1)
        while Date() < deadline {
            if (try? run(["PING"])) == .status("PONG") { return }
            usleep(20_000)  // pacing between connection checks; the deadline bounds the wait
        }
        group.stopAll()
        throw UsersTool.Failure(description: "cannot reach Redis at \(cfg.host):\(cfg.port): \((try? run(["PING"])).map { "\($0)" } ?? "no answer")")
    }

    func run(_ args: [String]) throws -> RedisValue {
        let result = Mutex<Result<RedisValue, RedisError>?>(nil)
        let done = DispatchSemaphore(value: 0)
        let c = connection
        c.loop.execute {
            c.send(args) { r in
                result.withLock { $0 = r }
                done.signal()
            }
        }
        guard done.wait(timeout: .now() + 10) == .success, let r = result.withLock({ $0 }) else {
            throw UsersTool.Failure(description: "Redis did not answer \(args.first ?? "")")
        }
        switch r {
        case .success(.error(let e)): throw UsersTool.Failure(description: "Redis refused \(args.first ?? ""): \(e)")
        case .success(let v): return v
        case .failure(let e): throw UsersTool.Failure(description: "\(e)")
        }
    }

    func close() {
        let c = connection
        c.loop.execute { c.close() }
        group.stopAll()
    }
}
