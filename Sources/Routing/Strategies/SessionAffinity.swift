import PodSnapshot
import Synchronization

/// `session-affinity`: a request carrying `x-session-id` goes to the pod its
/// session was placed on, while that pod is still a usable candidate (in the
/// model's endpoints, and fresh when any pod is fresh). A new session, or one
/// whose pod left or went stale, is placed by the inner strategy (default
/// `least-request`) and remembered. The gateway returns the id in
/// `x-session-id`, making one when the request had none. Sessions idle
/// longer than `ttl` are forgotten; past `capacity`, the least recently used
/// tenth is dropped. Signal: the gateway's own session table (per gateway
/// replica until shared state lands).
public final class SessionAffinityRouter: Router {
    public let name = "session-affinity"
    public var usesSessions: Bool { true }
    public var needsPrompt: Bool { inner.needsPrompt }
    private let inner: any Router
    private let ttl: Duration
    private let capacity: Int
    private let clock = ContinuousClock()
    private struct Entry {
        var address: String
        var lastUsed: ContinuousClock.Instant
    }
    private let table = Mutex<[String: Entry]>([:])

    public init(inner: any Router, ttl: Duration = .seconds(3600), capacity: Int = 100_000) {
        self.inner = inner
        self.ttl = ttl
        self.capacity = max(1, capacity)
    }

    /// Sessions remembered now.
    public var sessionCount: Int { table.withLock { $0.count } }

    public func decide(_ request: RoutingRequest, view: ModelView) throws(RoutingError) -> RoutingDecision {
        guard let sid = request.sessionID, !sid.isEmpty else { return try inner.decide(request, view: view) }
        let now = clock.now
        let key = request.model + "\u{0}" + sid
        if let address = table.withLock({ t -> String? in
            guard var e = t[key], now - e.lastUsed <= ttl else { return nil }
            e.lastUsed = now
            t[key] = e
            return e.address
        }) {
            for i in 0..<view.count where view.usable(i) && view.endpoints[i].address == address {
                return RoutingDecision(pod: view.endpoints[i])
            }
        }
        // New, expired, or its pod is gone: place it and remember.
        let d = try inner.decide(request, view: view)
        table.withLock { t in
            if t.count >= capacity && t[key] == nil {
                let drop = t.sorted { $0.value.lastUsed < $1.value.lastUsed }.prefix(max(1, capacity / 10)).map(\.key)
                for k in drop { t.removeValue(forKey: k) }
            }
            t[key] = Entry(address: d.pod.address, lastUsed: now)
        }
        return d
    }
}
