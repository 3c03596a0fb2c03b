/// An immutable view of every model, its endpoints, their scraped state and
/// gateway-side load, published as a whole.
public struct PodSnapshot: Sendable {
    public let models: [String: [PodEndpoint]]
    /// Model names in a stable order (for `/v1/models`).
    public let modelNames: [String]
    /// By endpoint address.
    public let pods: [String: PodState]
    public let loads: [String: PodLoad]
    /// Per-model default strategy (the pods file's `routingStrategy`).
    public let defaultStrategies: [String: String]
    public let version: UInt64
    /// Per model, its endpoints' routing inputs aligned by index.
    public let views: [String: ModelView]

    public init(models: [String: [PodEndpoint]], pods: [String: PodState] = [:], loads: [String: PodLoad] = [:],
                defaultStrategies: [String: String] = [:], version: UInt64 = 0) {
        self.models = models
        self.defaultStrategies = defaultStrategies
        self.modelNames = models.keys.sorted()
        self.pods = pods
        self.loads = loads
        self.version = version
        var views: [String: ModelView] = [:]
        for (m, eps) in models { views[m] = ModelView(model: m, candidates: eps, pods: pods, loads: loads) }
        self.views = views
    }

    /// The routing view of `model`'s endpoints, nil for an unknown model.
    public func view(for model: String) -> ModelView? { views[model] }

    /// A routing view of an arbitrary candidate list (a subset of a model's endpoints).
    public func view(for model: String, candidates: [PodEndpoint]) -> ModelView {
        ModelView(model: model, candidates: candidates, pods: pods, loads: loads)
    }

    public static let empty = PodSnapshot(models: [:])

    public func endpoints(for model: String) -> [PodEndpoint]? { models[model] }

    /// Metrics for `model` on `endpoint`, or nil when unknown or stale.
    public func metrics(for endpoint: PodEndpoint, model: String) -> ModelMetrics? {
        guard let p = pods[endpoint.address], p.health.isFresh else { return nil }
        return p.models[model]
    }

    /// Every distinct endpoint (scrape targets).
    public var allEndpoints: [PodEndpoint] {
        var seen = Set<String>()
        var out: [PodEndpoint] = []
        for name in modelNames {
            for e in models[name]! where seen.insert(e.address).inserted { out.append(e) }
        }
        return out
    }
}
