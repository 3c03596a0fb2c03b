import ArgumentParser
import CommandOptions
import EventLoop
import KVAgent
import Foundation
import KVCache
import KVL2Client

@main
struct KVAgentCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "switchboard-kv-agent",
        abstract: "Switchboard's KV-cache node agent: a shared host-memory tier for the engines of one node.",
        discussion: """
        Engines connect over a Unix socket (--socket) and receive the pool's memfd, which they map: \
        block data is copied by the engine straight into and out of shared memory, and the socket \
        carries only keys and page numbers. Puts are reserved, written, then committed (nothing is \
        visible half-written); gets pin the longest stored prefix until released. Reservations and \
        leases expire (--default-lease-ms) and are reclaimed when a client disconnects, so a crashed \
        engine leaks nothing.

        Memory: --capacity bytes of sparse shared memory; a page costs RAM only once written. Every \
        engine on one agent must use the same block size in bytes (--block-bytes); a HELLO with \
        another size is refused with a clear error.

        L2 (optional): --l2 HOST:PORT (repeatable or comma-separated) names switchboard-kv-server \
        instances. Blocks are placed on a consistent-hash ring of the members that answer health \
        probes, each on --l2-replicas of them. Committed blocks are written behind (bounded queue, \
        drops counted; never on the engine's path); EXISTS counts blocks L2 holds after L1's, GET and \
        PREFETCH read missing blocks through into L1. A read takes at most --l2-read-timeout-ms (or \
        the engine's own deadline), fails over to the next replica, and treats any timeout, error \
        or checksum mismatch as a miss: the engine recomputes.

        SIGTERM or SIGINT stops the agent; engines then see the socket close and recompute.
        """)

    @Option(help: "Unix socket path engines connect to.")
    var socket = "/run/switchboard/kv.sock"

    @Option(help: "Bytes per KV block (one page); engines must use the same size.")
    var blockBytes: Int = 2 << 20

    @Option(help: "Host memory for the L1 tier, in bytes; suffixes K, M, G allowed.")
    var capacity = "8G"

    @Option(help: "Eviction policy: \(EvictionPolicyKind.allCases.map(\.rawValue).joined(separator: ", ")).")
    var policy = "s3fifo"

    @Option(help: "Lifetime of a reservation or lease when a call gives none (ms).")
    var defaultLeaseMs: UInt32 = 10_000

    @Option(help: "host:port for /metrics (Prometheus), /healthz and /stats over HTTP; empty to disable.")
    var metricsListen = "127.0.0.1:9103"

    @Option(name: .customLong("l2"), help: "An L2 cache server, host:port (an IPv4 address or a name, resolved every 5 s off the request path); repeat or separate with commas.")
    var l2Members: [String] = []

    @Option(help: "Also take L2 members from the servers registered in this Redis (host:port; password from $REDIS_PASSWORD).")
    var l2Redis: String?

    @Option(help: "The Redis sorted set L2 servers register in.")
    var l2RedisKey = KVAgentConfiguration().l2RedisKey

    @Option(help: "Copies of each block on the L2 ring.")
    var l2Replicas = 2

    @Option(help: "Longest an L2 read may take, failover included (ms).")
    var l2ReadTimeoutMs: UInt64 = 100

    @Option(help: "Longest an L2 write may take (ms).")
    var l2WriteTimeoutMs: UInt64 = 2_000

    @Option(help: "L2 health probe period (ms).")
    var l2HealthIntervalMs: UInt64 = 500

    @Option(help: "Blocks that may wait to be written to L2; more are dropped (counted).")
    var l2WriteQueue = 4_096

    @OptionGroup var log: LogOptions

    var l2List: [String] {
        l2Members.flatMap { $0.split(separator: ",") }.map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    func validate() throws {
        guard blockBytes > 0 else { throw ValidationError("--block-bytes must be positive") }
        guard let c = ByteCount.parse(capacity), c >= blockBytes else {
            throw ValidationError("--capacity must be a byte count (e.g. 8G) of at least one block")
        }
        guard EvictionPolicyKind(rawValue: policy) != nil else {
            throw ValidationError("unknown --policy \(policy); choose \(EvictionPolicyKind.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard defaultLeaseMs > 0 else { throw ValidationError("--default-lease-ms must be positive") }
        for m in l2List {
            guard case .tcp(_, let port)? = try? SocketAddress(parsing: m), port > 0 else {
                throw ValidationError("--l2 \(m): expected host:port of a switchboard-kv-server")
            }
        }
        if let r = l2Redis {
            guard case .tcp(_, let port)? = try? SocketAddress(parsing: r), port > 0 else {
                throw ValidationError("--l2-redis \(r): expected host:port of Redis")
            }
        }
        guard l2Replicas >= 1 else { throw ValidationError("--l2-replicas must be at least 1") }
        guard l2ReadTimeoutMs > 0, l2WriteTimeoutMs > 0, l2HealthIntervalMs > 0 else {
            throw ValidationError("--l2-read-timeout-ms, --l2-write-timeout-ms and --l2-health-interval-ms must be positive")
        }
        guard l2WriteQueue >= 1 else { throw ValidationError("--l2-write-queue must be at least 1") }
    }

    func run() throws {
        let logger = try log.bootstrap(label: "switchboard-kv-agent")
        var c = KVAgentConfiguration()
        c.socketPath = socket
        c.pageSize = blockBytes
        c.capacityBytes = ByteCount.parse(capacity)!
        c.policy = EvictionPolicyKind(rawValue: policy)!
        c.defaultLeaseMillis = defaultLeaseMs
        if !l2List.isEmpty || l2Redis != nil {
            var l2 = L2Configuration()
            l2.members = l2List
            l2.dynamicMembers = l2Redis != nil
            l2.replicas = l2Replicas
            l2.readTimeoutMillis = l2ReadTimeoutMs
            l2.writeTimeoutMillis = l2WriteTimeoutMs
            l2.healthIntervalMillis = l2HealthIntervalMs
            l2.writeQueueBlocks = l2WriteQueue
            c.l2 = l2
            c.l2RedisAddress = l2Redis
            c.l2RedisKey = l2RedisKey
            c.l2RedisPassword = SecretEnvironment.value("REDIS_PASSWORD")
        }
        let admin: SocketAddress?
        do { admin = metricsListen.isEmpty ? nil : try SocketAddress(parsing: metricsListen) } catch {
            throw ValidationError("--metrics-listen: \(error)")
        }
        do { try KVAgentService(configuration: c, adminListen: admin, logger: logger).run() } catch let e as KVAgentService.StartError {
            throw ValidationError("\(e)")
        }
    }
}
