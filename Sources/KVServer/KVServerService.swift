import AdminHTTP
import EventLoop
import Foundation
import KVProtocol
import KVMembership
import Logging
import Redis

/// A cache server as a process runs it: one event loop with the server, the
/// admin endpoint when asked for, SIGTERM/SIGINT stopping both.
public final class KVServerService {
    public let configuration: KVServerConfiguration
    public let adminListen: SocketAddress?
    let logger: Logger

    public init(configuration: KVServerConfiguration, adminListen: SocketAddress?, logger: Logger) {
        self.configuration = configuration
        self.adminListen = adminListen
        self.logger = logger
    }

    /// `/metrics`, `/healthz`, `/stats`, and with `debugEndpoints`
    /// `POST /debug/corrupt?key=<32 hex digits>` (flips one stored byte).
    public static func adminRoutes(_ server: KVCacheServer) -> [AdminRoute] {
        var routes = [
            AdminRoute("/metrics") { .prometheus(server.prometheus()) },
            AdminRoute("/healthz") { .text("ok\n") },
            AdminRoute("/stats") { .json(server.statsJSON()) },
        ]
        if server.configuration.debugEndpoints {
            routes.append(AdminRoute("/debug/corrupt", method: "POST") { q in
                guard let hex = q["key"], let key = BlockKey(hex: hex) else {
                    return .json(#"{"error":"key must be 32 hex digits"}"#, status: 400)
                }
                return server.store.corrupt(key, offset: Int(q["offset"] ?? "0") ?? 0)
                    ? .json(#"{"corrupted":"\#(key)"}"#) : .json(#"{"error":"key not stored"}"#, status: 404)
            })
        }
        return routes
    }

    public enum StartError: Error, CustomStringConvertible {
        case server(String)
        case admin(String)
        public var description: String {
            switch self {
            case .server(let why): return "cannot start: \(why)"
            case .admin(let why): return "cannot listen on the admin address: \(why)"
            }
        }
    }

    public func run() throws {
        let signals = try SignalWatcher(signals: [15, 2])
        let group = try EventLoopGroup(count: 1)
        let loop = group.loops[0]
        let server: KVCacheServer
        do { server = try KVCacheServer(configuration: configuration, loop: loop) } catch {
            throw StartError.server("\(configuration.listen): \(error)")
        }
        var admin: AdminServer?
        if let a = adminListen {
            do { admin = try AdminServer(address: a, group: group, routes: Self.adminRoutes(server)) } catch {
                throw StartError.admin("\(a): \(error)")
            }
        }
        let logger = self.logger
        var registration: RedisRegistration?
        if let address = configuration.registerRedisAddress, let advertise = configuration.advertise {
            guard var rc = RedisConfiguration.parse(address: address) else { throw StartError.server("Redis address '\(address)' is not host:port") }
            rc.password = configuration.redisPassword
            let key = configuration.registerKey
            let r = RedisRegistration(redis: rc, address: advertise, key: key, loop: loop)
            var failing: String? = "not yet registered"
            r.onHeartbeat = { why in
                // Log changes only: the first success, the first failure of a run.
                if let why, failing == nil {
                    logger.warning("kv.server.registration.failing", metadata: ["kv.redis": "\(address)", "error": "\(why)"])
                } else if why == nil, failing != nil {
                    logger.notice("kv.server.registered", metadata: ["kv.redis": "\(address)", "kv.key": "\(key)", "kv.advertise": "\(advertise)"])
                }
                failing = why
            }
            loop.execute { r.start() }
            registration = r
        }
        try signals.attach(to: loop) { sig in
            logger.notice("kv.server.stopping", metadata: ["signal": "\(sig)", "kv.stats": "\(server.statsJSON())"])
            server.stop()
            // A clean stop leaves the member list at once (a dead server ages out of it).
            guard let r = registration else { return loop.stop() }
            r.deregister {
                r.close()
                loop.stop()
            }
        }
        let c = configuration
        logger.notice("kv.server.listening", metadata: [
            "kv.listen": "\(server.boundPort.map { p -> String in if case .tcp(let h, _) = c.listen { return "\(h):\(p)" }; return "\(c.listen)" } ?? "\(c.listen)")", "kv.slots": "\(server.store.slots)", "kv.slot_bytes": "\(c.slotBytes)",
            "kv.capacity_bytes": "\(server.store.slots * c.slotBytes)", "kv.policy": "\(c.policy)",
            "kv.watermarks": "\(c.lowWatermark)-\(c.highWatermark)",
            "kv.metrics": "\(admin.map { _ in "http://\(adminListen!)/metrics" } ?? "off")",
            "kv.debug_endpoints": "\(c.debugEndpoints)",
            "kv.data_path": "tcp", "kv.rdma": "\(server.rdma)",
        ])
        group.start()
        group.join()
        _ = admin
    }
}
