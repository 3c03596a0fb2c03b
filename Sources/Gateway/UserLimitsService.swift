import EventLoop
import Foundation
import Logging
import Metrics
import PodDiscovery
import RateLimit
import Redis
import Routing
import Synchronization

/// Per-user limits as `serve` applies them (`--users-file`).
public struct LimitsConfiguration: Sendable {
    /// JSON array of the reference's user records: `[{"name": "alice", "rpm": 50, "tpm": 10000}]`
    /// (the in-process store); empty with `redis`.
    public var usersFile: String
    /// The shared store: users are Redis's `aibrix-users/<name>` records and
    /// counters live there, shared by every replica. nil: in process.
    public var redis: RedisConfiguration?
    /// Redis slow or down (after its command timeout): admit without
    /// counting (`true`, fail-open) or answer 503 (`false`, fail-closed).
    public var failOpen = true
    public var window: LimitWindow = .sliding
    public var windowSeconds = 60
    /// Output tokens reserved for a request that sets no `max_tokens`
    /// (the reservation is settled to the real usage when the response ends).
    public var defaultMaxTokens = 256
    public init(usersFile: String) { self.usersFile = usersFile }

    /// A Redis address (`host:port`) as a configuration; throws when malformed.
    public static func redis(address: String) throws -> RedisConfiguration {
        guard let r = RedisConfiguration.parse(address: address) else { throw UsersFile.LoadError(description: "bad Redis address \(address)") }
        return r
    }

    /// Sets the window kind by name (`sliding`, `fixed`); false when unknown.
    public mutating func setWindow(named name: String) -> Bool {
        guard let w = LimitWindow(rawValue: name) else { return false }
        window = w
        return true
    }
}

/// Admission against the users' limits: in process (the embedded store, a
/// users file), or shared through Redis (`RedisLimitStore`, one
/// connection per event loop).
public final class Limiter: Sendable {
    let configuration: LimitsConfiguration
    let store: EmbeddedLimitStore
    let shared: RedisLimitStore?
    private let users: Mutex<[String: UserLimits]>
    let logger: Logger
    /// Users the shared store said have no record, until when (monotonic
    /// ns): their requests skip the round trip for `unknownUserTTLNanos`
    /// (many SDK clients send a `user` for abuse tracking, not for limits).
    private let unknownUsers = Mutex<[String: UInt64]>([:])
    static let unknownUserTTLNanos: UInt64 = 2_000_000_000
    /// Admissions that found the shared store unavailable, by policy outcome.
    let storeErrorsAdmitted = Counter()
    let storeErrorsRefused = Counter()

    init(configuration: LimitsConfiguration, loop: EventLoop?, pollNanos: UInt64, logger: Logger) throws(UsersFile.LoadError) {
        self.configuration = configuration
        self.logger = logger
        store = EmbeddedLimitStore(windowSeconds: configuration.windowSeconds, mode: configuration.window)
        if configuration.redis != nil {
            shared = RedisLimitStore(windowSeconds: configuration.windowSeconds, mode: configuration.window)
            users = Mutex([:])
            return
        }
        shared = nil
        let list = try UsersFile.load(path: configuration.usersFile)
        users = Mutex(Dictionary(uniqueKeysWithValues: list.map { ($0.name, $0) }))
        if let loop { FileWatch.start(path: configuration.usersFile, every: pollNanos, loop: loop) { [self] in reload() } }
    }

    var userCount: Int { users.withLock { $0.count } }

    /// True while `user` is remembered as having no record in the shared store.
    func knownUnlimited(_ user: String) -> Bool {
        let now = monotonicNanos()
        return unknownUsers.withLock { ($0[user] ?? 0) > now }
    }

    /// Remembers that `user` has no record (bounded: cleared when large).
    func rememberUnlimited(_ user: String) {
        let until = monotonicNanos() &+ Self.unknownUserTTLNanos
        unknownUsers.withLock { m in
            if m.count >= 100_000 { m.removeAll(keepingCapacity: true) }
            m[user] = until
        }
    }

    /// This loop's Redis connection (made and started on first use; loop-confined).
    func connection(on loop: EventLoop) -> RedisConnection? {
        guard let cfg = configuration.redis else { return nil }
        if let c = loop.loopLocal["limits.redis"] as? RedisConnection { return c }
        let c = RedisConnection(configuration: cfg, loop: loop)
        let logger = self.logger
        c.onStateChange = { up, why in
            if up {
                logger.notice("limits.redis.connected", metadata: ["redis.address": "\(cfg.host):\(cfg.port)", "loop": "\(loop.index)"])
            } else {
                logger.warning("limits.redis.lost", metadata: ["redis.address": "\(cfg.host):\(cfg.port)", "loop": "\(loop.index)",
                                                               "error": "\(why)"])
            }
        }
        loop.loopLocal["limits.redis"] = c
        c.start()
        return c
    }

    func limits(for user: String) -> UserLimits? { users.withLock { $0[user] } }

    var allUsers: [UserLimits] { users.withLock { Array($0.values) }.sorted { $0.name < $1.name } }

    /// Seconds on the wall clock (windows line up across restarts and, with
    /// a shared store, across replicas).
    static var now: Double { Date().timeIntervalSince1970 }

    private func reload() {
        let path = configuration.usersFile
        do {
            let list = try UsersFile.load(path: path)
            users.withLock { $0 = Dictionary(uniqueKeysWithValues: list.map { ($0.name, $0) }) }
            logger.notice("limits.users.reloaded", metadata: ["limits.file": "\(path)", "limits.users": "\(list.count)"])
        } catch {
            logger.error("limits.users.rejected", metadata: ["limits.file": "\(path)", "error": "\(error)",
                                                            "action": "keeping the last good users"])
        }
    }
}

/// An admitted request's reservation: settled to the response's real
/// usage (prompt + completion tokens) once, in the store that made it.
final class LimitCharge: UsageSink {
    enum Store {
        case embedded(EmbeddedLimitStore)
        /// Adjusted on the admitting loop's connection (usage may be read on another loop).
        case shared(RedisLimitStore, RedisConnection)
    }
    let store: Store
    let reservation: Reservation
    let promptEstimate: Int
    private let done = Atomic<Bool>(false)

    init(store: Store, reservation: Reservation, promptEstimate: Int) {
        self.store = store
        self.reservation = reservation
        self.promptEstimate = promptEstimate
    }

    func settle(promptTokens: Int?, completionTokens: Int) {
        guard !done.exchange(true, ordering: .relaxed) else { return }
        let actual = (promptTokens ?? promptEstimate) + completionTokens
        let res = reservation
        switch store {
        case .embedded(let s): s.settle(res, actualTokens: actual, now: Limiter.now)
        case .shared(let s, let c): c.loop.execute { s.settle(res, actualTokens: actual, on: c) }
        }
    }

    /// The request was never served: give its counts back.
    func release() {
        guard !done.exchange(true, ordering: .relaxed) else { return }
        let res = reservation
        switch store {
        case .embedded(let s): s.release(res, now: Limiter.now)
        case .shared(let s, let c): c.loop.execute { s.release(res, on: c) }
        }
    }
}

/// Several sinks for one response's usage (a strategy's and the limits').
struct UsageSinks: UsageSink {
    let sinks: [any UsageSink]
    func settle(promptTokens: Int?, completionTokens: Int) {
        for s in sinks { s.settle(promptTokens: promptTokens, completionTokens: completionTokens) }
    }

    /// One sink, or both joined.
    static func join(_ a: (any UsageSink)?, _ b: (any UsageSink)?) -> (any UsageSink)? {
        switch (a, b) {
        case (nil, nil): return nil
        case (let x?, nil), (nil, let x?): return x
        case (let x?, let y?): return UsageSinks(sinks: [x, y])
        }
    }
}
