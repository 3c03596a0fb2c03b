import PodSnapshot
import Synchronization

/// Settles a decision's estimated charge with the response's real usage.
public protocol UsageSink: Sendable {
    func settle(promptTokens: Int?, completionTokens: Int)
}

/// `vtc-basic`: virtual-token-counter fairness, the reference's rule with
/// real usage. Each user's weighted tokens (input × 1 + output × 2) over a
/// sliding window (5 minutes, in one-second buckets) place them on the
/// candidate list: bucket = max(1,000, (min + max of users' totals) / 2),
/// norm = min(tokens / bucket, pods − 1); pod i scores |i − norm| + its load
/// (gateway in-flight / 100, at most 1) + U(0, 0.1); the lowest wins. Light
/// users land on the first pods and heavy users are pushed along the list,
/// so a heavy user cannot crowd the pods light users get.
///
/// Charging: at routing the user is charged an estimate (prompt ≈ body
/// bytes / 4, output = `max_tokens` or 1.5 × prompt, as the reference);
/// when the response's usage is read (usage accounting), the estimate is
/// replaced by the real tokens. Signal: the `user` (the API key's user, or
/// the body's `user`, or the `user` header); without one the decision is
/// `least-request`'s, reported as `no_user`.
public final class VTCBasicRouter: Router {
    public let name = "vtc-basic"
    public static let inputWeight = 1.0, outputWeight = 2.0
    public static let minBucket = 1000.0, maxPodLoad = 100.0
    public let windowSeconds: Int
    private let fallback: any Router
    private let source: RandomSource
    private let clock = ContinuousClock()
    private let origin: ContinuousClock.Instant
    private let state: Mutex<Tracker>

    /// One user's weighted tokens per second over the window.
    typealias Window = SlidingSum

    /// Every user's window, and the smallest and largest user totals: swept
    /// (expired, emptied users dropped, min and max recomputed) at most once
    /// a second, kept up to date by each charge in between.
    struct Tracker {
        var users: [String: Window] = [:]
        var swept = -1
        var lo = Double.infinity, hi = -Double.infinity

        mutating func sweep(now: Int) {
            guard now > swept else { return }
            swept = now
            lo = .infinity
            hi = -.infinity
            for name in Array(users.keys) {
                users[name]!.expire(now: now)
                let total = users[name]!.total
                if total <= 0 {
                    users.removeValue(forKey: name)
                } else {
                    lo = min(lo, total)
                    hi = max(hi, total)
                }
            }
        }
    }

    /// Other replicas' view of this one's charges (shared state); nil: not shared.
    private let sink: (any RoutingStateSink)?

    public init(fallback: any Router, source: RandomSource, windowSeconds: Int = 300, sink: (any RoutingStateSink)? = nil) {
        self.sink = sink
        self.fallback = fallback
        self.source = source
        self.windowSeconds = max(1, windowSeconds)
        origin = clock.now
        state = Mutex(Tracker())
    }

    private var second: Int { Int((clock.now - origin).components.seconds) }

    /// Every user's weighted tokens in the window (for /debug/vtc).
    public var userTokens: [String: Double] {
        let now = second
        return state.withLock { st in
            st.sweep(now: now)
            return st.users.mapValues(\.total)
        }
    }

    /// The user's weighted tokens in the window (tests, /debug).
    public func tokens(of user: String) -> Double {
        let now = second
        return state.withLock { st in
            st.sweep(now: now)
            return st.users[user]?.total ?? 0
        }
    }

    public func decide(_ request: RoutingRequest, view: ModelView) throws(RoutingError) -> RoutingDecision {
        guard let user = request.user, !user.isEmpty else {
            var d = try fallback.decide(request, view: view)
            d.fallback = d.fallback ?? "no_user"
            return d
        }
        guard view.count > 0 else { throw .noCandidates(model: request.model) }
        let now = second
        let (mine, lo, hi) = state.withLock { st -> (Double, Double, Double) in
            st.sweep(now: now)
            return (st.users[user]?.total ?? 0, st.lo, st.hi)
        }
        let bucket = lo <= hi ? max(Self.minBucket, (lo + hi) / 2) : Self.minBucket
        let norm = min(mine / bucket, Double(view.count - 1))
        var best = -1
        var bestScore = Double.infinity
        for i in 0..<view.count where view.usable(i) {
            let fairness = abs(Double(i) - norm)
            let util = min(Double(view.inFlight(i)) / Self.maxPodLoad, 1)
            let jitter = Double(source.next() % 1000) / 10_000  // U(0, 0.1)
            let score = fairness + util + jitter
            if score < bestScore {
                best = i
                bestScore = score
            }
        }
        let pod = view.endpoints[max(best, 0)]
        let prompt = Double(max(1, request.bodyBytes / 4))
        let output = Double(request.maxTokens ?? Int(1.5 * prompt))
        let estimate = Self.inputWeight * prompt + Self.outputWeight * output
        charge(user, estimate, at: now)
        return RoutingDecision(pod: pod, usage: Charge(router: self, user: user, promptEstimate: prompt, estimate: estimate))
    }

    fileprivate func charge(_ user: String, _ tokens: Double, at second: Int) {
        sink?.charged(user: user, tokens: tokens)
        add(user, tokens, at: second)
    }

    /// Another replica charged `user` (shared state): counted here as if
    /// this replica had, in the current second.
    public func chargePeer(_ user: String, _ tokens: Double) {
        add(user, tokens, at: second)
    }

    private func add(_ user: String, _ tokens: Double, at second: Int) {
        let size = windowSeconds
        state.withLock { st in
            if st.users[user] == nil { st.users[user] = Window(size: size, now: second) }
            st.users[user]!.add(tokens, at: second)
            let total = st.users[user]!.total
            st.lo = min(st.lo, total)
            st.hi = max(st.hi, total)
        }
    }

    /// One decision's charge: the estimate, replaced by real usage once
    /// (the difference lands in the current second's bucket).
    final class Charge: UsageSink {
        let router: VTCBasicRouter
        let user: String
        let promptEstimate: Double
        let estimate: Double
        private let settled = Atomic<Bool>(false)

        init(router: VTCBasicRouter, user: String, promptEstimate: Double, estimate: Double) {
            self.router = router
            self.user = user
            self.promptEstimate = promptEstimate
            self.estimate = estimate
        }

        func settle(promptTokens: Int?, completionTokens: Int) {
            guard !settled.exchange(true, ordering: .relaxed) else { return }
            // A stream without a usage chunk reports completion tokens only: keep the prompt estimate.
            let prompt = promptTokens.map(Double.init) ?? promptEstimate
            let real = VTCBasicRouter.inputWeight * prompt + VTCBasicRouter.outputWeight * Double(completionTokens)
            router.charge(user, real - estimate, at: router.second)
        }
    }
}
