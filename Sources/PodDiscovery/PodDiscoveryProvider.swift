/// A source of model → endpoints: the static pods file or the Kubernetes
/// API. Providers publish every change as a whole map through the `onChange`
/// they were built with (the gateway publishes it to the registry and the
/// scraper); `start` begins watching.
public protocol PodDiscoveryProvider: AnyObject, Sendable {
    /// A short name for logs (`pods-file`, `kubernetes`).
    var kind: String { get }
    func start()
}

extension StaticPodsFileProvider: PodDiscoveryProvider {
    public var kind: String { "pods-file" }
    /// Polling starts at init (the first load must succeed before serving).
    public func start() {}
}

extension KubernetesPodsProvider: PodDiscoveryProvider {
    public var kind: String { "kubernetes" }
}
