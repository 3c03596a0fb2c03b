import Foundation
import KVCache
import KVL2Client
import KVMembership

/// Settings of a node agent.
public struct KVAgentConfiguration: Sendable {
    /// Unix socket engines connect to.
    public var socketPath = "/run/switchboard/kv.sock"
    /// Bytes per KV block (one page); every engine on this agent uses it.
    public var pageSize = 2 << 20
    /// Host memory for the L1 tier (rounded down to whole pages).
    public var capacityBytes = 8 << 30
    public var policy: EvictionPolicyKind = .s3fifo
    /// Lease (and reservation) lifetime when a call does not give one.
    public var defaultLeaseMillis: UInt32 = 10_000
    /// The longest lease a client may ask for.
    public var maxLeaseMillis: UInt32 = 600_000
    /// The remote tier (cache servers on a ring); nil keeps blocks on this node only.
    public var l2: L2Configuration?
    /// L2 members registered in Redis (`host:port` of Redis), with the
    /// password from `REDIS_PASSWORD`; nil: the static list only.
    public var l2RedisAddress: String?
    public var l2RedisKey = RedisMembership.defaultKey
    public var l2RedisPassword: String?
    public init() {}
}
