import ArgumentParser
import CommandOptions
import EventLoop
import KVAgent
import KVCache

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

    @OptionGroup var log: LogOptions

    func validate() throws {
        guard blockBytes > 0 else { throw ValidationError("--block-bytes must be positive") }
        guard let c = ByteCount.parse(capacity), c >= blockBytes else {
            throw ValidationError("--capacity must be a byte count (e.g. 8G) of at least one block")
        }
        guard EvictionPolicyKind(rawValue: policy) != nil else {
            throw ValidationError("unknown --policy \(policy); choose \(EvictionPolicyKind.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard defaultLeaseMs > 0 else { throw ValidationError("--default-lease-ms must be positive") }
    }

    func run() throws {
        let logger = try log.bootstrap(label: "switchboard-kv-agent")
        var c = KVAgentConfiguration()
        c.socketPath = socket
        c.pageSize = blockBytes
        c.capacityBytes = ByteCount.parse(capacity)!
        c.policy = EvictionPolicyKind(rawValue: policy)!
        c.defaultLeaseMillis = defaultLeaseMs
        let admin: SocketAddress?
        do { admin = metricsListen.isEmpty ? nil : try SocketAddress(parsing: metricsListen) } catch {
            throw ValidationError("--metrics-listen: \(error)")
        }
        do { try KVAgentService(configuration: c, adminListen: admin, logger: logger).run() } catch let e as KVAgentService.StartError {
            throw ValidationError("\(e)")
        }
    }
}
