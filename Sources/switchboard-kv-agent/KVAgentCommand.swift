import ArgumentParser
import EventLoop
import Foundation
import KVAgent
import HTTP1
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

    @Option(help: "host:port for /metrics (Prometheus) and /healthz over HTTP; empty to disable.")
    var metricsListen = "127.0.0.1:9103"

    static func bytes(_ text: String) -> Int? {
        let t = text.trimmingCharacters(in: .whitespaces).uppercased()
        let mult: [Character: Int] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40]
        if let last = t.last, let m = mult[last] { return Int(t.dropLast()).map { $0 * m } }
        return Int(t)
    }

    func validate() throws {
        guard blockBytes > 0 else { throw ValidationError("--block-bytes must be positive") }
        guard let c = Self.bytes(capacity), c >= blockBytes else {
            throw ValidationError("--capacity must be a byte count (e.g. 8G) of at least one block")
        }
        guard EvictionPolicyKind(rawValue: policy) != nil else {
            throw ValidationError("unknown --policy \(policy); choose \(EvictionPolicyKind.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard defaultLeaseMs > 0 else { throw ValidationError("--default-lease-ms must be positive") }
    }

    func run() throws {
        let signals = try SignalWatcher(signals: [15, 2])
        var c = KVAgentConfiguration()
        c.socketPath = socket
        c.pageSize = blockBytes
        c.capacityBytes = Self.bytes(capacity)!
        c.policy = EvictionPolicyKind(rawValue: policy)!
        c.defaultLeaseMillis = defaultLeaseMs
        let dir = (socket as NSString).deletingLastPathComponent
        if !dir.isEmpty { try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
        let group = try EventLoopGroup(count: 1)
        let loop = group.loops[0]
        let agent: KVAgent
        do { agent = try KVAgent(configuration: c, loop: loop) } catch {
            throw ValidationError("cannot start: \(error)")
        }
        var metricsServer: HTTP1Server?
        if !metricsListen.isEmpty {
            do {
                metricsServer = try HTTP1Server(address: try SocketAddress(parsing: metricsListen), group: group) { req, w in
                    switch req.path {
                    case "/metrics":
                        w.respond(status: 200, headers: [("content-type", "text/plain; version=0.0.4")], body: Array(agent.prometheus().utf8))
                    case "/healthz":
                        w.respond(status: 200, headers: [("content-type", "text/plain")], body: Array("ok\n".utf8))
                    case "/stats":
                        w.respond(status: 200, headers: [("content-type", "application/json")], body: Array(agent.statsJSON().utf8))
                    default:
                        w.respond(status: 404, headers: [("content-type", "text/plain")], body: Array("not found\n".utf8))
                    }
                }
            } catch {
                throw ValidationError("cannot listen on --metrics-listen \(metricsListen): \(error)")
            }
        }
        try signals.attach(to: loop) { sig in
            FileHandle.standardError.write(Data("kv-agent: signal \(sig), stopping; stats \(agent.statsJSON())\n".utf8))
            agent.close()
            loop.stop()
        }
        FileHandle.standardError.write(Data("kv-agent: listening on \(socket); \(agent.pool.pages) pages of \(blockBytes) bytes (\(capacity)), policy \(policy)\(metricsServer != nil ? "; metrics on http://\(metricsListen)/metrics" : "")\n".utf8))
        group.start()
        group.join()
        _ = metricsServer
    }
}
