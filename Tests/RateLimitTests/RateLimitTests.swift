import Testing

@testable import RateLimit

@Suite struct EmbeddedLimitStoreTests {
    let alice = UserLimits(name: "alice", rpm: 50, tpm: 10_000)

    @Test(arguments: LimitWindow.allCases)
    func twoHundredConcurrentRequestsAdmitExactlyTheLimit(mode: LimitWindow) async {
        let store = EmbeddedLimitStore(windowSeconds: 60, mode: mode)
        let user = alice
        let admitted = await withTaskGroup(of: Int.self) { g in
            for _ in 0..<200 {
                g.addTask {
                    switch store.admit(AdmissionRequest(user: user, tokens: 10, now: 1000.5)) {
                    case .admitted: return 1
                    case .limited(let q, let kind, let retry):
                        #expect(kind == .requests && q.remainingRequests == 0 && retry != nil && retry! >= 1)
                        return 0
                    }
                }
            }
            return await g.reduce(0, +)
        }
        #expect(admitted == 50)
    }

    @Test func fixedWindowsResetAtTheBoundarySlidingOnesDecay() {
        let fixed = EmbeddedLimitStore(windowSeconds: 60, mode: .fixed)
        let sliding = EmbeddedLimitStore(windowSeconds: 60, mode: .sliding)
        for s in [fixed, sliding] {
            for _ in 0..<50 { _ = s.admit(AdmissionRequest(user: alice, tokens: 1, now: 59)) }
        }
        // One second later, in the next window.
        if case .limited = fixed.admit(AdmissionRequest(user: alice, tokens: 1, now: 60)) { Issue.record("fixed should reset") }
        guard case .limited(_, .requests, let retry) = sliding.admit(AdmissionRequest(user: alice, tokens: 1, now: 60)) else {
            Issue.record("sliding should still count the previous window")
            return
        }
        // 50 × (1 − t/60) + 1 ≤ 50 → t ≥ 1.2 s.
        #expect(retry == 2)
        if case .limited = sliding.admit(AdmissionRequest(user: alice, tokens: 1, now: 61.3)) { Issue.record("decayed enough by 61.3 s") }
    }

    @Test func tokensAreReservedThenSettledToRealUsage() {
        let s = EmbeddedLimitStore(windowSeconds: 60, mode: .fixed)
        guard case .admitted(let q, let res) = s.admit(AdmissionRequest(user: alice, tokens: 4000, now: 10)) else {
            Issue.record("admitted")
            return
        }
        #expect(q.remainingTokens == 6000 && q.remainingRequests == 49)
        // The next one needs 7,000: over the 10,000 until the first settles.
        guard case .limited(_, .tokens, let retry) = s.admit(AdmissionRequest(user: alice, tokens: 7000, now: 11)) else {
            Issue.record("limited by tokens")
            return
        }
        #expect(retry == 49)  // the window's end
        s.settle(res, actualTokens: 900, now: 12)  // used far less: refund
        #expect(s.usage(of: "alice", now: 12) == (1, 900))
        if case .limited = s.admit(AdmissionRequest(user: alice, tokens: 7000, now: 12)) { Issue.record("fits after the refund") }
        // A request larger than the whole limit can never pass: no retry-after.
        guard case .limited(_, .tokens, nil) = s.admit(AdmissionRequest(user: alice, tokens: 20_000, now: 13)) else {
            Issue.record("too large")
            return
        }
    }

    @Test func releaseGivesBackAnUnservedRequest() {
        let s = EmbeddedLimitStore(windowSeconds: 60, mode: .fixed)
        guard case .admitted(_, let res) = s.admit(AdmissionRequest(user: alice, tokens: 100, now: 5)) else { return }
        s.release(res, now: 6)
        #expect(s.usage(of: "alice", now: 6) == (0, 0))
    }

    @Test func headersUseOpenAIsNamesAndDurations() {
        let q = Quota(limitRequests: 50, remainingRequests: 0, resetRequests: 0.25, limitTokens: 1000, remainingTokens: 10,
                      resetTokens: 75)
        let h = Dictionary(uniqueKeysWithValues: q.headers)
        #expect(h["x-ratelimit-limit-requests"] == "50" && h["x-ratelimit-remaining-requests"] == "0")
        #expect(h["x-ratelimit-reset-requests"] == "250ms" && h["x-ratelimit-reset-tokens"] == "1m15s")
        #expect(Quota.duration(6) == "6s")
    }

    @Test func zeroMeansTheReferencesDefaults() {
        let u = UserLimits(name: "b", rpm: 0, tpm: 0)
        #expect(u.requests == 100 && u.tokens == 100_000)
    }
}
