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

    public init(host: String, port: Int, metricsPort: Int? = nil, engine: String = "vllm") {
        self.host = host
        self.port = port
        self.metricsPort = metricsPort ?? port
        self.engine = engine
        self.address = host.utf8.contains(UInt8(ascii: ":")) ? "[\(host)]:\(port)" : "\(host):\(port)"
    }
    public var description: String { address }
}

/// An immutable view of every model and its ready endpoints, published as a
/// whole so routers read it without locks.
public struct PodSnapshot: Sendable {
    public let models: [String: [PodEndpoint]]
    /// Model names in a stable order (for `/v1/models`).
    public let modelNames: [String]
    public let version: UInt64

    public init(models: [String: [PodEndpoint]], version: UInt64 = 0) {
        self.models = models
        self.modelNames = models.keys.sorted()
        self.version = version
    }

    public static let empty = PodSnapshot(models: [:])

    public func endpoints(for model: String) -> [PodEndpoint]? { models[model] }
}
