internal import CRdmaShim

/// Whether this machine can use RDMA (through `CRdmaShim`, which loads
/// libibverbs at run time). The KV server and agent report it at start; their
/// data path is TCP either way (the one-sided RDMA path is not wired yet).
public enum RDMAProbe {
    public enum Availability: Sendable, Equatable, CustomStringConvertible {
        case available(devices: [String])
        case unavailable(String)

        public var description: String {
            switch self {
            case .available(let d): return "available (\(d.joined(separator: ", ")))"
            case .unavailable(let why): return "unavailable: \(why)"
            }
        }
    }

    public static func run() -> Availability {
        var msg = [CChar](repeating: 0, count: 512)
        let n = msg.withUnsafeMutableBufferPointer { sbrdma_probe($0.baseAddress, $0.count) }
        let text = String(decoding: msg.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return n > 0 ? .available(devices: text.split(separator: ",").map(String.init)) : .unavailable(text)
    }
}
