import ArgumentParser
import Foundation
import CommandOptions
import EventLoop
import KVCache
import KVServer

@main
struct KVServerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "switchboard-kv-server",
        abstract: "Switchboard's L2 KV-cache server: block storage that the node agents of many nodes share.",
        discussion: """
        Node agents (switchboard-kv-agent --l2 ...) place blocks on a consistent-hash ring of these \
        servers and talk to them over TCP (--listen) with batched PUT/GET/EXISTS/DELETE requests; a \
        block read on one node can then be reused on another. Every block carries a CRC-32C the \
        writer computed: a PUT that does not match is refused, and a block that no longer matches \
        when read is dropped and answered as a miss.

        Memory: --capacity bytes of sparse slots of --block-bytes each (a slot costs RAM once \
        written). When more than --high-watermark of the slots are used, the eviction policy frees \
        blocks down to --low-watermark. The server holds no durable state: a restarted server \
        starts empty and the agents' reads miss until it is refilled.

        RDMA: not in this build; agents reach servers over TCP.

        SIGTERM or SIGINT stops the server; agents see their connections close and fail over.
        """)

    @Option(help: "host:port agents connect to.")
    var listen = "0.0.0.0:7480"

    @Option(help: "Bytes per slot: the largest block stored (the agents' --block-bytes).")
    var blockBytes: Int = 2 << 20

    @Option(help: "Memory for blocks, in bytes; suffixes K, M, G, T allowed.")
    var capacity = "16G"

    @Option(help: "Eviction policy: \(EvictionPolicyKind.allCases.map(\.rawValue).joined(separator: ", ")).")
    var policy = "s3fifo"

    @Option(help: "Start evicting when more than this fraction of the slots is used.")
    var highWatermark = 0.95

    @Option(help: "Evict down to this fraction of the slots.")
    var lowWatermark = 0.90

    @Option(help: "How long a request may wait in the server when it gives no timeout (ms).")
    var defaultTimeoutMs: UInt64 = 1_000

    @Option(help: "host:port for /metrics (Prometheus), /healthz and /stats over HTTP; empty to disable.")
    var metricsListen = "127.0.0.1:9104"

    @Option(help: "Register in this Redis (host:port; password from $REDIS_PASSWORD) so agents with --l2-redis find this server.")
    var registerRedis: String?

    @Option(help: "The Redis sorted set to register in.")
    var registerKey = KVServerConfiguration().registerKey

    @Option(help: "host:port agents dial, as registered (default: --listen when it names a host).")
    var advertise: String?

    @Flag(help: "Serve POST /debug/corrupt?key=<hex> on the metrics address (flips a stored byte; fault-injection tests only).")
    var debugEndpoints = false

    @OptionGroup var log: LogOptions

    func validate() throws {
        guard blockBytes > 0, blockBytes <= 16 << 20 else { throw ValidationError("--block-bytes must be between 1 and 16 MiB") }
        guard let c = ByteCount.parse(capacity), c >= blockBytes else {
            throw ValidationError("--capacity must be a byte count (e.g. 16G) of at least one block")
        }
        guard EvictionPolicyKind(rawValue: policy) != nil else {
            throw ValidationError("unknown --policy \(policy); choose \(EvictionPolicyKind.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard lowWatermark > 0, lowWatermark <= highWatermark, highWatermark <= 1 else {
            throw ValidationError("watermarks must satisfy 0 < --low-watermark <= --high-watermark <= 1")
        }
        guard defaultTimeoutMs > 0 else { throw ValidationError("--default-timeout-ms must be positive") }
        if let r = registerRedis {
            guard case .tcp(_, let port)? = try? SocketAddress(parsing: r), port > 0 else {
                throw ValidationError("--register-redis \(r): expected host:port of Redis")
            }
            guard let a = advertisedAddress, case .tcp(let host, let port)? = try? SocketAddress(parsing: a), port > 0, host != "0.0.0.0" else {
                throw ValidationError("--register-redis needs --advertise HOST:PORT (the address agents dial) when --listen is 0.0.0.0 or unparsable")
            }
            _ = host
        }
    }

    /// What to register: --advertise, else --listen when it names a host.
    var advertisedAddress: String? {
        if let a = advertise { return a }
        guard case .tcp(let host, _)? = try? SocketAddress(parsing: listen), host != "0.0.0.0" else { return nil }
        return listen
    }

    func run() throws {
        let logger = try log.bootstrap(label: "switchboard-kv-server")
        var c = KVServerConfiguration()
        do { c.listen = try SocketAddress(parsing: listen) } catch { throw ValidationError("--listen: \(error)") }
        c.slotBytes = blockBytes
        c.capacityBytes = ByteCount.parse(capacity)!
        c.policy = policy
        c.highWatermark = highWatermark
        c.lowWatermark = lowWatermark
        c.defaultTimeoutMillis = defaultTimeoutMs
        c.debugEndpoints = debugEndpoints
        c.registerRedisAddress = registerRedis
        c.registerKey = registerKey
        c.advertise = advertisedAddress
        c.redisPassword = SecretEnvironment.value("REDIS_PASSWORD")
        let admin: SocketAddress?
        do { admin = metricsListen.isEmpty ? nil : try SocketAddress(parsing: metricsListen) } catch {
            throw ValidationError("--metrics-listen: \(error)")
        }
        do { try KVServerService(configuration: c, adminListen: admin, logger: logger).run() } catch let e as KVServerService.StartError {
            throw ValidationError("\(e)")
        }
    }
}
