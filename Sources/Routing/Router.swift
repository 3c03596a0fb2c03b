import PodSnapshot

/// What a router may know about a request. Routers never see the gRPC
/// layer, the proto codec or the raw body.
public struct RoutingRequest: Sendable {
    public var model: String
    public var stream: Bool
    public var bodyBytes: Int
    public var requestID: String
    public init(model: String, stream: Bool, bodyBytes: Int, requestID: String) {
        self.model = model
        self.stream = stream
        self.bodyBytes = bodyBytes
        self.requestID = requestID
    }
}

/// Why no endpoint was chosen.
public enum RoutingError: Error, Sendable, Equatable, CustomStringConvertible {
    case noCandidates(model: String)
    case unknownStrategy(name: String, known: [String])

    public var description: String {
        switch self {
        case .noCandidates(let m): return "no ready endpoint serves model '\(m)'"
        case .unknownStrategy(let n, let known):
            return "unknown routing strategy '\(n)'; valid strategies: \(known.joined(separator: ", "))"
        }
    }
}

/// Picks one endpoint among ready candidates. Called synchronously on the
/// event loop for every request: no blocking, no task hops. `snapshot` gives
/// scraped metrics (`snapshot.metrics(for:model:)`, nil when unknown or
/// stale) and gateway-side load (`snapshot.loads`) for routers that use them.
public protocol Router: Sendable {
    /// The name clients put in the `routing-strategy` header.
    var name: String { get }
    func route(_ request: RoutingRequest, candidates: [PodEndpoint], snapshot: PodSnapshot) throws(RoutingError) -> PodEndpoint
}
