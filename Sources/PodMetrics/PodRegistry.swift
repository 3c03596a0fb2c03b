import Synchronization

/// Scraped state of one endpoint, as routers and the debug endpoint see it.
public struct PodState: Sendable {
    public var health: ScrapeTargetStateMachine.Health
    /// Per `model_name`; empty unless `health` is fresh.
    public var models: [String: ModelMetrics]
    public var lastError: String?
    public var lastScrapeNanos: UInt64?
    public var scrapes: Int
    public var failures: Int

    public init(health: ScrapeTargetStateMachine.Health, models: [String: ModelMetrics] = [:], lastError: String? = nil,
                lastScrapeNanos: UInt64? = nil, scrapes: Int = 0, failures: Int = 0) {
        self.health = health
        self.models = models
        self.lastError = lastError
        self.lastScrapeNanos = lastScrapeNanos
        self.scrapes = scrapes
        self.failures = failures
    }
}

/// Gateway-side load of one endpoint: requests and prompt tokens routed to it
/// and not yet finished. Incremented when a request is routed, decremented
/// exactly once when its stream ends (however it ends).
public final class PodLoad: Sendable {
    private let requestsInFlight = Atomic<Int>(0)
    private let tokensInFlight = Atomic<Int>(0)
    private let routedTotal = Atomic<Int>(0)
    public init() {}

    public var requests: Int { requestsInFlight.load(ordering: .relaxed) }
    public var tokens: Int { tokensInFlight.load(ordering: .relaxed) }
    public var routed: Int { routedTotal.load(ordering: .relaxed) }

    public func start(tokens: Int) {
        requestsInFlight.add(1, ordering: .relaxed)
        tokensInFlight.add(tokens, ordering: .relaxed)
        routedTotal.add(1, ordering: .relaxed)
    }

    public func finish(tokens: Int) {
        requestsInFlight.subtract(1, ordering: .relaxed)
        tokensInFlight.subtract(tokens, ordering: .relaxed)
    }
}

/// An immutable view of every model, its endpoints, their scraped state and
/// gateway-side load, published as a whole.
public struct PodSnapshot: Sendable {
    public let models: [String: [PodEndpoint]]
    /// Model names in a stable order (for `/v1/models`).
    public let modelNames: [String]
    /// By endpoint address.
    public let pods: [String: PodState]
    public let loads: [String: PodLoad]
    public let version: UInt64

    public init(models: [String: [PodEndpoint]], pods: [String: PodState] = [:], loads: [String: PodLoad] = [:],
                version: UInt64 = 0) {
        self.models = models
        self.modelNames = models.keys.sorted()
        self.pods = pods
        self.loads = loads
        self.version = version
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

/// Holds the current `PodSnapshot`. Discovery publishes endpoints, the
/// scraper publishes pod states; each publish builds a new snapshot and bumps
/// an atomic version so readers (`PodSnapshotReader`) only take the lock when
/// something changed.
public final class PodRegistry: Sendable {
    private let current: Mutex<PodSnapshot>
    private let versions = Atomic<UInt64>(0)

    public init(_ initial: PodSnapshot = .empty) {
        current = Mutex(initial)
    }

    /// The snapshot in force now (takes the lock; hot paths use a reader).
    public var snapshot: PodSnapshot { current.withLock { $0 } }

    /// Bumped by every publish.
    public var version: UInt64 { versions.load(ordering: .acquiring) }

    /// Replaces the endpoints (models with no endpoints are kept: they answer 503).
    /// Load counters of endpoints that stay are kept; new endpoints get new ones.
    public func publish(models: [String: [PodEndpoint]]) {
        current.withLock { s in
            var loads: [String: PodLoad] = [:]
            var pods: [String: PodState] = [:]
            for eps in models.values {
                for e in eps {
                    loads[e.address] = s.loads[e.address] ?? PodLoad()
                    pods[e.address] = s.pods[e.address] ?? PodState(health: .unknown)
                }
            }
            s = PodSnapshot(models: models, pods: pods, loads: loads, version: s.version + 1)
        }
        versions.add(1, ordering: .releasing)
    }

    /// Replaces the scraped states (only for endpoints still known).
    public func publish(pods: [String: PodState]) {
        current.withLock { s in
            var merged = s.pods
            for (k, v) in pods where merged[k] != nil { merged[k] = v }
            s = PodSnapshot(models: s.models, pods: merged, loads: s.loads, version: s.version + 1)
        }
        versions.add(1, ordering: .releasing)
    }
}

/// A per-thread cache of the registry's snapshot: one atomic load per read,
/// the lock only when a publish happened since. Not Sendable: keep one per
/// event loop.
public final class PodSnapshotReader {
    private let registry: PodRegistry
    private var seen: UInt64 = .max
    private var cached: PodSnapshot = .empty

    public init(registry: PodRegistry) {
        self.registry = registry
    }

    public var current: PodSnapshot {
        let v = registry.version
        if v != seen {
            cached = registry.snapshot
            seen = v
        }
        return cached
    }
}
