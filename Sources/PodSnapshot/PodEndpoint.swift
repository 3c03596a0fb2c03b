import Synchronization

/// One serving endpoint of a model (a vLLM pod, or one port of it).
public struct PodEndpoint: Sendable, Hashable, CustomStringConvertible {
    /// IP address or host name as Envoy's ORIGINAL_DST cluster will dial it.
    public let host: String
    public let port: Int
    /// Where `/metrics` is scraped (defaults to the serving port).
    public let metricsPort: Int
    /// Engine kind (`vllm`, `sglang`, …); selects metric names later.
    public let engine: String
    /// `host:port`, the value of the `target-pod` header (IPv6 bracketed).
    /// Built once: routing reads it on every request.
    public let address: String
    /// A small process-wide number for `address` (the same address always
    /// gets the same id), so per-pod tables can be arrays indexed by it.
    public let id: Int32

    public init(host: String, port: Int, metricsPort: Int? = nil, engine: String = "vllm") {
        self.host = host
        self.port = port
        self.metricsPort = metricsPort ?? port
        self.engine = engine
        let address = host.utf8.contains(UInt8(ascii: ":")) ? "[\(host)]:\(port)" : "\(host):\(port)"
        self.address = address
        self.id = PodEndpoint.ids.withLock { t in
            if let id = t[address] { return id }
            let id = Int32(t.count)
            t[address] = id
            return id
        }
    }

    /// Every address seen, and its id. Endpoints are made by discovery, not
    /// per request; the table grows by one entry per distinct address.
    private static let ids = Mutex<[String: Int32]>([:])
    public var description: String { address }
}

