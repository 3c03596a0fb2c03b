/// What discovery knows, published as a whole on every change: which
/// endpoints serve each model, and per-model settings (today the default
/// routing strategy from the pods file's `routingStrategy`).
public struct ModelTable: Sendable, Equatable {
    public var endpoints: [String: [PodEndpoint]]
    /// Strategy used for a model when a request names none (overrides the
    /// gateway-wide default).
    public var defaultStrategies: [String: String]

    public init(endpoints: [String: [PodEndpoint]], defaultStrategies: [String: String] = [:]) {
        self.endpoints = endpoints
        self.defaultStrategies = defaultStrategies
    }
}
