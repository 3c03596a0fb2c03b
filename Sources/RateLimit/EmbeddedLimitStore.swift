import Synchronization

/// Per-user request and token counters in this process: the default when
/// no Redis is configured (one gateway replica), with the same semantics
/// as the shared store. Admission checks and reserves under one lock, so
/// concurrent requests never over-admit.
public final class EmbeddedLimitStore: Sendable {
    public let windowSeconds: Int
    public let mode: LimitWindow
    private let state = Mutex<[String: Counters]>([:])

    struct Counters {
        var window: Int64
        var requests = 0, tokens = 0
        var prevRequests = 0, prevTokens = 0

        /// Moves to window `w`: the current counts become the previous ones
        /// when `w` follows directly, else both reset.
        mutating func roll(to w: Int64) {
            guard w != window else { return }
            if w == window + 1 {
                prevRequests = requests
                prevTokens = tokens
            } else {
                prevRequests = 0
                prevTokens = 0
            }
            requests = 0
            tokens = 0
            window = w
        }
    }

    public init(windowSeconds: Int = 60, mode: LimitWindow = .sliding) {
        self.windowSeconds = max(1, windowSeconds)
        self.mode = mode
    }

    public func admit(_ r: AdmissionRequest) -> Admission {
        let w = LimitMath(windowSeconds: windowSeconds, mode: mode, now: r.now)
        return state.withLock { users in
            if users.count > 50_000 { Self.sweep(&users, current: w.window) }
            var c = users[r.user.name] ?? Counters(window: w.window)
            c.roll(to: w.window)
            let decision = w.decide(prevRequests: c.prevRequests, requests: c.requests, prevTokens: c.prevTokens,
                                    tokens: c.tokens, request: r)
            if case .admitted = decision {
                c.requests += 1
                c.tokens += r.tokens
            }
            users[r.user.name] = c
            return decision
        }
    }

    /// Replaces a reservation's tokens by the response's real usage (a
    /// refund when it used fewer), in the window it was charged to while
    /// that window still counts.
    public func settle(_ res: Reservation, actualTokens: Int, now: Double) {
        adjust(res, now: now, requests: 0, tokens: actualTokens - res.tokens)
    }

    /// Gives an admitted request's counts back (it was never served: no pod, routing failed).
    public func release(_ res: Reservation, now: Double) {
        adjust(res, now: now, requests: -1, tokens: -res.tokens)
    }

    private func adjust(_ res: Reservation, now: Double, requests: Int, tokens: Int) {
        let w = LimitMath(windowSeconds: windowSeconds, mode: mode, now: now).window
        state.withLock { users in
            guard var c = users[res.user] else { return }
            c.roll(to: w)
            if res.window == w {
                c.requests = max(0, c.requests + requests)
                c.tokens = max(0, c.tokens + tokens)
            } else if res.window == w - 1 {
                c.prevRequests = max(0, c.prevRequests + requests)
                c.prevTokens = max(0, c.prevTokens + tokens)
            }
            users[res.user] = c
        }
    }

    /// The counts a user has in the current window (tests, /debug).
    public func usage(of user: String, now: Double) -> (requests: Int, tokens: Int) {
        let w = LimitMath(windowSeconds: windowSeconds, mode: mode, now: now).window
        return state.withLock { users in
            guard var c = users[user] else { return (0, 0) }
            c.roll(to: w)
            return (c.requests, c.tokens)
        }
    }

    private static func sweep(_ users: inout [String: Counters], current: Int64) {
        for (k, v) in users where v.window < current - 1 { users.removeValue(forKey: k) }
    }
}

/// The window arithmetic both stores share: which window `now` is in, the
/// effective counts (sliding: the previous window weighted by its overlap),
/// the decision and the headers' numbers.
public struct LimitMath: Sendable {
    public let windowSeconds: Int
    public let mode: LimitWindow
    public let window: Int64
    /// Seconds into the current window.
    public let elapsed: Double

    public init(windowSeconds: Int, mode: LimitWindow, now: Double) {
        self.windowSeconds = windowSeconds
        self.mode = mode
        let w = Double(windowSeconds)
        window = Int64((now / w).rounded(.down))
        elapsed = now - Double(window) * w
    }

    var length: Double { Double(windowSeconds) }

    /// The previous window's weight now (0 in fixed mode).
    var previousWeight: Double { mode == .sliding ? max(0, 1 - elapsed / length) : 0 }

    func effective(_ prev: Int, _ cur: Int) -> Double { Double(prev) * previousWeight + Double(cur) }

    /// Seconds until `need` more fits under `limit` if nothing else arrives;
    /// nil when it never can (`need` > `limit`).
    func secondsUntil(need: Int, fitsIn limit: Int, prev: Int, cur: Int) -> Double? {
        guard need <= limit else { return nil }
        if effective(prev, cur) + Double(need) <= Double(limit) { return 0 }
        let toBoundary = length - elapsed
        guard mode == .sliding else { return toBoundary }
        if cur + need <= limit, prev > 0 {
            // prev × (1 − t / W) + cur + need ≤ limit → t ≥ W (1 − (limit − cur − need) / prev)
            let t = length * (1 - Double(limit - cur - need) / Double(prev))
            return max(0, t - elapsed)
        }
        // Next window: cur becomes the previous count and decays.
        guard cur > 0 else { return toBoundary }
        let f = max(0, 1 - Double(limit - need) / Double(cur))
        return toBoundary + f * length
    }

    /// Seconds until the counts are back to zero.
    func secondsToReset(prev: Int, cur: Int) -> Double {
        let toBoundary = length - elapsed
        if mode == .sliding && cur > 0 { return toBoundary + length }
        return cur > 0 || (mode == .sliding && prev > 0 && previousWeight > 0) ? toBoundary : 0
    }

    public func decide(prevRequests: Int, requests: Int, prevTokens: Int, tokens: Int, request r: AdmissionRequest) -> Admission {
        let kind: LimitKind?
        if effective(prevRequests, requests) + 1 > Double(r.user.requests) {
            kind = .requests
        } else if effective(prevTokens, tokens) + Double(r.tokens) > Double(r.user.tokens) {
            kind = .tokens
        } else {
            kind = nil
        }
        return outcome(refusedBy: kind, prevRequests: prevRequests, requests: requests, prevTokens: prevTokens, tokens: tokens, request: r)
    }

    /// The admission for a decision already taken (by `decide`, or by the
    /// shared store's script from the same counts): the quota after it, or
    /// the refusal with its retry-after.
    public func outcome(refusedBy kind: LimitKind?, prevRequests: Int, requests: Int, prevTokens: Int, tokens: Int,
                        request r: AdmissionRequest) -> Admission {
        let limitR = r.user.requests, limitT = r.user.tokens
        func quota(_ addR: Int, _ addT: Int) -> Quota {
            Quota(limitRequests: limitR,
                  remainingRequests: limitR - Int(effective(prevRequests, requests + addR).rounded(.up)),
                  resetRequests: secondsToReset(prev: prevRequests, cur: requests + addR),
                  limitTokens: limitT,
                  remainingTokens: limitT - Int(effective(prevTokens, tokens + addT).rounded(.up)),
                  resetTokens: secondsToReset(prev: prevTokens, cur: tokens + addT))
        }
        switch kind {
        case .requests:
            let wait = secondsUntil(need: 1, fitsIn: limitR, prev: prevRequests, cur: requests)
            return .limited(quota(0, 0), .requests, retryAfter: wait.map { max(1, Int($0.rounded(.up))) })
        case .tokens:
            let wait = secondsUntil(need: r.tokens, fitsIn: limitT, prev: prevTokens, cur: tokens)
            return .limited(quota(0, 0), .tokens, retryAfter: wait.map { max(1, Int($0.rounded(.up))) })
        case nil:
            return .admitted(quota(1, r.tokens), Reservation(user: r.user.name, window: window, tokens: r.tokens))
        }
    }
}
