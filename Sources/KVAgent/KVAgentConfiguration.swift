import Foundation
import KVCache

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
    public init() {}
}

extension KVAgentConfiguration {
    /// Parses a byte count as operators write it: `8G`, `512M`, `64K`, `1T`
    /// (binary multiples) or a plain number; nil when it is none of these.
    public static func parseBytes(_ text: String) -> Int? {
        let t = text.trimmingCharacters(in: .whitespaces).uppercased()
        let mult: [Character: Int] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40]
        if let last = t.last, let m = mult[last] {
            guard let n = Int(t.dropLast()), n >= 0 else { return nil }
            let (v, overflow) = n.multipliedReportingOverflow(by: m)
            return overflow ? nil : v
        }
        return Int(t).flatMap { $0 >= 0 ? $0 : nil }
    }
}
