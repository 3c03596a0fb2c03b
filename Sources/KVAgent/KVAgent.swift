import EventLoop
import Foundation
import HostMemory
import KVCache
import KVL2Client
import KVMembership
import Redis
import KVProtocol
import Metrics
import Synchronization

/// The KV-cache node agent: one L1 pool in shared memory, served to the
/// engines of a node over a Unix socket (see `AgentProtocol`). Engines copy
/// block data through their own mapping of the pool; the agent only keeps
/// the index, hands out pages under reservations and leases, and reclaims
/// what a dead or slow client held. Everything runs on one event loop.
public final class KVAgent: Sendable {
    public let configuration: KVAgentConfiguration
    public let pool: SharedPages
    let listener: Listener
    let core: AgentCore

    public init(configuration: KVAgentConfiguration, loop: EventLoop) throws {
        precondition(configuration.pageSize > 0)
        guard configuration.capacityBytes >= configuration.pageSize else {
            throw SharedPages.Failure(description: "capacity \(configuration.capacityBytes) bytes is less than one \(configuration.pageSize)-byte page")
        }
        self.configuration = configuration
        let pages = configuration.capacityBytes / configuration.pageSize
        pool = try SharedPages(name: "switchboard-kv-l1", pageSize: configuration.pageSize, pages: pages)
        // A live agent on this path keeps it: binding would unlink its socket.
        if (try? BlockingSocket(path: configuration.socketPath)) != nil {
            throw SharedPages.Failure(description: "another agent is already serving \(configuration.socketPath)")
        }
        listener = try Listener(address: .unix(path: configuration.socketPath))
        core = AgentCore(configuration: configuration, pool: pool, loop: loop)
        if let l2c = configuration.l2 {
            let store = core.store, pool = self.pool
            let tier = try L2Tier(configuration: l2c, loop: loop) { keys in
                // Committed pages stay put while this runs on the loop.
                keys.compactMap { k in
                    guard let p = store.page(of: k) else { return nil }
                    return (k, CacheProtocol.Block(checksum: UInt64(pool.crc32c(page: Int(p))), bytes: pool.read(page: Int(p))))
                }
            }
            tier.onRingChange = { member, up, why in
                FileHandle.standardError.write(Data("kv-agent: L2 member \(member) \(up ? "joined the ring" : "left the ring"): \(why)\n".utf8))
            }
            let c = core
            tier.onStatsChange = { [weak c] in c?.publishStats() }
            core.l2 = tier
            loop.execute { tier.start() }
            if let address = configuration.l2RedisAddress {
                guard var rc = RedisConfiguration.parse(address: address) else {
                    throw SharedPages.Failure(description: "L2 Redis address '\(address)' is not host:port")
                }
                rc.password = configuration.l2RedisPassword
                let discovery = RedisDiscovery(redis: rc, key: configuration.l2RedisKey, loop: loop)
                discovery.onMembers = { members in
                    FileHandle.standardError.write(Data("kv-agent: L2 members registered in Redis: \(members.isEmpty ? "none" : members.joined(separator: ","))\n".utf8))
                    tier.setDiscovered(members)
                }
                discovery.onError = { why in
                    FileHandle.standardError.write(Data("kv-agent: L2 member listing failed (the last list stands): \(why)\n".utf8))
                }
                core.discovery = discovery
                loop.execute { discovery.start() }
            }
        }
        core.publishStats()
        let core = self.core
        try listener.attach(to: loop) { fd, loop in
            guard let sock = try? StreamSocket(fd: fd, loop: loop) else { return }
            core.accept(sock)
        }
    }

    /// Stops accepting; existing connections stay until closed.
    public func close() { listener.close() }

    /// The agent's counters as JSON (also what STATS returns). Thread-safe.
    public func statsJSON() -> String { core.statsSnapshot.withLock { $0 }.json }

    /// The agent's counters as a Prometheus page. Thread-safe.
    public func prometheus() -> String { core.statsSnapshot.withLock { $0 }.prometheus }
}
