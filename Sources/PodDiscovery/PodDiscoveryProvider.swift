/// A source of model → endpoints: the static pods file or the Kubernetes
/// API. Providers publish every change as a whole map through the `onChange`
/// they were built with (the gateway publishes it to the registry and the
/// scraper); `start` begins watching.
public protocol PodDiscoveryProvider: AnyObject, Sendable {
    /// A short name for logs (`pods-file`, `kubernetes`).
    var kind: String { get }
    func start()
    /// Counters for the admin endpoint's `/debug/stats` (name → count).
    var debugCounters: [String: UInt64] { get }
}

extension StaticPodsFileProvider: PodDiscoveryProvider {
    public var kind: String { "pods-file" }
    /// Polling starts at init (the first load must succeed before serving).
    public func start() {}
    public var debugCounters: [String: UInt64] { [:] }
}

extension KubernetesPodsProvider: PodDiscoveryProvider {
    public var kind: String { "kubernetes" }
    public var debugCounters: [String: UInt64] {
        ["lists": stats.lists.value, "relists": stats.relists.value, "watches": stats.watches.value,
         "events": stats.events.value, "bookmarks": stats.bookmarks.value, "errors": stats.errors.value,
         "malformed": stats.malformed.value]
    }
}
