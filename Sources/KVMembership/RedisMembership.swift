import EventLoop
import Redis

/// L2 membership through Redis: cache servers register themselves in a
/// sorted set (`switchboard:kv:servers` by default; member = the address
/// agents dial, score = Redis's clock in ms at the last heartbeat), and node
/// agents list the members seen within a time-to-live. Every time is read
/// from Redis's own clock (`TIME` inside the scripts), so the machines'
/// clocks never need to agree. A server stopping cleanly removes itself; one
/// that dies drops out when its heartbeats stop (and its connections fail
/// sooner: the agents' health probes take it out of their rings first).
public enum RedisMembership {
    public static let defaultKey = "switchboard:kv:servers"

    /// ZADD with Redis's time.
    static let heartbeatScript = """
    local t = redis.call('TIME')
    redis.call('ZADD', KEYS[1], t[1] * 1000 + math.floor(t[2] / 1000), ARGV[1])
    return 1
    """

    /// Members seen within ARGV[1] ms; entries 10 TTLs old are removed.
    static let listScript = """
    local t = redis.call('TIME')
    local now = t[1] * 1000 + math.floor(t[2] / 1000)
    redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 10 * tonumber(ARGV[1]))
    return redis.call('ZRANGEBYSCORE', KEYS[1], now - tonumber(ARGV[1]), '+inf')
    """
}

/// One Redis connection and a periodic task on its loop: `tick` runs when
/// the connection comes up and every `intervalMillis`. Loop-confined.
final class RedisTicker {
    let redis: RedisConnection
    let loop: EventLoop
    let intervalMillis: UInt64
    private var timer: TimerID?

    init(redis: RedisConfiguration, intervalMillis: UInt64, loop: EventLoop) {
        self.redis = RedisConnection(configuration: redis, loop: loop)
        self.intervalMillis = intervalMillis
        self.loop = loop
    }

    /// Connects and starts ticking. Call on the loop.
    func start(_ tick: @escaping () -> Void) {
        redis.onStateChange = { up, _ in if up { tick() } }
        redis.start()
        schedule(tick)
    }

    private func schedule(_ tick: @escaping () -> Void) {
        timer = loop.schedule(afterNanos: intervalMillis * 1_000_000) { [weak self] in
            tick()
            self?.schedule(tick)
        }
    }

    /// Stops the ticks; the connection stays.
    func stop() {
        if let t = timer { loop.cancel(t) }
        timer = nil
    }

    func close() {
        stop()
        redis.close()
    }
}

/// A cache server's registration: a heartbeat every `intervalMillis` on its
/// loop. Loop-confined (the invariant behind `@unchecked Sendable`).
public final class RedisRegistration: @unchecked Sendable {
    public let address: String
    public let key: String
    private let ticker: RedisTicker
    private var redis: RedisConnection { ticker.redis }
    /// Called on the loop after each heartbeat (nil) or failure (why).
    public var onHeartbeat: ((String?) -> Void)?

    public init(redis: RedisConfiguration, address: String, key: String = RedisMembership.defaultKey,
                intervalMillis: UInt64 = 1_000, loop: EventLoop) {
        ticker = RedisTicker(redis: redis, intervalMillis: intervalMillis, loop: loop)
        self.address = address
        self.key = key
    }

    /// Connects and starts the heartbeats. Call on the loop.
    public func start() {
        ticker.start { [weak self] in self?.beat() }
    }

    private func beat() {
        guard redis.isConnected else {
            onHeartbeat?("redis not connected")
            return
        }
        redis.send(["EVAL", RedisMembership.heartbeatScript, "1", key, address]) { [weak self] r in
            switch r {
            case .success(.error(let e)): self?.onHeartbeat?(e)
            case .success: self?.onHeartbeat?(nil)
            case .failure(let e): self?.onHeartbeat?("\(e)")
            }
        }
    }

    /// Removes the registration (clean stop), then calls `done` on the loop.
    public func deregister(_ done: @escaping () -> Void) {
        ticker.stop()
        guard redis.isConnected else { return done() }
        redis.send(["ZREM", key, address]) { _ in done() }
    }

    public func close() { ticker.close() }
}

/// An agent's view of the registered servers: the member list every
/// `intervalMillis`, handed to `onMembers` when it changes. Loop-confined.
public final class RedisDiscovery: @unchecked Sendable {
    public let key: String
    let ttlMillis: UInt64
    private let ticker: RedisTicker
    private var redis: RedisConnection { ticker.redis }
    private var last: [String]?
    /// Called on the loop with the sorted member list when it changes.
    public var onMembers: (([String]) -> Void)?
    /// Called on the loop when a listing fails (the last list stands).
    public var onError: ((String) -> Void)?

    public init(redis: RedisConfiguration, key: String = RedisMembership.defaultKey, intervalMillis: UInt64 = 1_000,
                ttlMillis: UInt64 = 5_000, loop: EventLoop) {
        ticker = RedisTicker(redis: redis, intervalMillis: intervalMillis, loop: loop)
        self.key = key
        self.ttlMillis = ttlMillis
    }

    /// Connects and starts listing. Call on the loop.
    public func start() {
        ticker.start { [weak self] in self?.list() }
    }

    private func list() {
        guard redis.isConnected else { return }
        redis.send(["EVAL", RedisMembership.listScript, "1", key, "\(ttlMillis)"]) { [weak self] r in
            guard let self else { return }
            switch r {
            case .success(.array(let items)):
                let members = items.compactMap(\.text).sorted()
                if members != last {
                    last = members
                    onMembers?(members)
                }
            case .success(let other):
                onError?("unexpected reply \(other)")
            case .failure(let e):
                onError?("\(e)")
            }
        }
    }

    public func close() { ticker.close() }
}
