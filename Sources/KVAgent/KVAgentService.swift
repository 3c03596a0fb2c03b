import AdminHTTP
import EventLoop
import Foundation
import Logging
import RDMA

/// The node agent as a process runs it: one event loop with the agent, the
/// admin endpoint (`/metrics`, `/healthz`, `/stats`) when asked for, and
/// SIGTERM/SIGINT stopping both. `run()` blocks until stopped.
public final class KVAgentService {
    public let configuration: KVAgentConfiguration
    public let adminListen: SocketAddress?
    let logger: Logger

    public init(configuration: KVAgentConfiguration, adminListen: SocketAddress?, logger: Logger) {
        self.configuration = configuration
        self.adminListen = adminListen
        self.logger = logger
    }

    /// The admin pages of an agent.
    public static func adminRoutes(_ agent: KVAgent) -> [AdminRoute] {
        [
            AdminRoute("/metrics") { .prometheus(agent.prometheus()) },
            AdminRoute("/healthz") { .text("ok\n") },
            AdminRoute("/stats") { .json(agent.statsJSON()) },
        ]
    }

    public enum StartError: Error, CustomStringConvertible {
        case agent(String)
        case admin(String)
        public var description: String {
            switch self {
            case .agent(let why): return "cannot start: \(why)"
            case .admin(let why): return "cannot listen on the admin address: \(why)"
            }
        }
    }

    public func run() throws {
        let signals = try SignalWatcher(signals: [15, 2])
        let dir = (configuration.socketPath as NSString).deletingLastPathComponent
        if !dir.isEmpty { try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
        let group = try EventLoopGroup(count: 1)
        let loop = group.loops[0]
        let agent: KVAgent
        do { agent = try KVAgent(configuration: configuration, loop: loop) } catch {
            throw StartError.agent("\(error)")
        }
        var admin: AdminServer?
        if let a = adminListen {
            do { admin = try AdminServer(address: a, group: group, routes: Self.adminRoutes(agent)) } catch {
                throw StartError.admin("\(a): \(error)")
            }
        }
        let logger = self.logger
        try signals.attach(to: loop) { sig in
            logger.notice("kv.agent.stopping", metadata: ["signal": "\(sig)", "kv.stats": "\(agent.statsJSON())"])
            agent.close()
            loop.stop()
        }
        logger.notice("kv.agent.listening", metadata: [
            "kv.socket": "\(configuration.socketPath)", "kv.pages": "\(agent.pool.pages)",
            "kv.page_bytes": "\(configuration.pageSize)", "kv.capacity_bytes": "\(configuration.capacityBytes)",
            "kv.policy": "\(configuration.policy.rawValue)",
            "kv.rdma": "\(configuration.l2 == nil ? "n/a (no L2)" : "\(RDMAProbe.run()); L2 data path: tcp")",
            "kv.l2": "\(configuration.l2.map { "\($0.members.joined(separator: ",")) replicas=\($0.replicas) read_timeout_ms=\($0.readTimeoutMillis)" } ?? "off")",
            "kv.metrics": "\(admin.map { _ in "http://\(adminListen!)/metrics" } ?? "off")",
        ])
        group.start()
        group.join()
        _ = admin
    }
}
