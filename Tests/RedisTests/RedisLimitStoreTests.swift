import EventLoop
import Foundation
import RateLimit
import Redis
import Synchronization
import Testing

@Suite(.serialized) struct RedisLimitStoreTests {
    @Test(arguments: LimitWindow.allCases)
    func twoHundredAdmissionsOverTwoConnectionsAdmitExactlyTheLimit(mode: LimitWindow) throws {
        let f = try RedisFixture(loops: 2)
        defer { f.close() }
        let conns = f.connections
        for c in conns { #expect(waitConnected(c)) }
        #expect(command(conns[0], ["SET", RedisLimitStore.userKey("alice"), #"{"name":"alice","rpm":50,"tpm":1000000}"#])
                == .success(.status("OK")))
        let store = RedisLimitStore(windowSeconds: 3600, mode: mode, prefix: "test:\(mode.rawValue):")
        // Two "replicas", 100 requests each, all in flight at once.
        let counts = conns.map { c in
            onLoop(c.loop, timeout: 20) { (done: @escaping @Sendable ([Int]) -> Void) in
                var admitted = 0, limited = 0, failed = 0
                for _ in 0..<100 {
                    store.admit(user: "alice", tokens: 10, on: c) { r in
                        switch r {
                        case .success(.admitted?): admitted += 1
                        case .success(.limited(let q, .requests, let retry)?):
                            if q.remainingRequests == 0 && retry != nil { limited += 1 } else { failed += 1 }
                        default: failed += 1
                        }
                        if admitted + limited + failed == 100 { done([admitted, limited, failed]) }
                    }
                }
            }
        }
        let admitted = counts.compactMap { $0?[0] }.reduce(0, +), limited = counts.compactMap { $0?[1] }.reduce(0, +)
        #expect(admitted == 50 && limited == 150, "\(counts)")
    }

    @Test func reservationsSettleAndUnknownUsersAreNotLimited() throws {
        let f = try RedisFixture()
        defer { f.close() }
        let c = f.first
        #expect(waitConnected(c))
        _ = command(c, ["SET", RedisLimitStore.userKey("bob"), #"{"name":"bob","rpm":10,"tpm":5000}"#])
        let store = RedisLimitStore(windowSeconds: 3600, mode: .fixed)
        let first = onLoop(c.loop) { (done: @escaping @Sendable (Result<Admission?, RedisError>) -> Void) in
            store.admit(user: "bob", tokens: 4000, on: c, done)
        }
        guard case .success(.admitted(let q, let res)?)? = first else {
            Issue.record("admitted: \(String(describing: first))")
            return
        }
        #expect(q.limitTokens == 5000 && q.remainingTokens == 1000 && q.remainingRequests == 9)
        // 2,000 more do not fit until the first settles to its real 500.
        let second = onLoop(c.loop) { (done: @escaping @Sendable (Result<Admission?, RedisError>) -> Void) in
            store.admit(user: "bob", tokens: 2000, on: c, done)
        }
        guard case .success(.limited(_, .tokens, _)?)? = second else {
            Issue.record("limited by tokens: \(String(describing: second))")
            return
        }
        c.loop.execute { store.settle(res, actualTokens: 500, on: c) }
        let third = onLoop(c.loop) { (done: @escaping @Sendable (Result<Admission?, RedisError>) -> Void) in
            store.admit(user: "bob", tokens: 2000, on: c, done)
        }
        guard case .success(.admitted(let q3, _)?)? = third else {
            Issue.record("admitted after the refund: \(String(describing: third))")
            return
        }
        #expect(q3.remainingTokens == 2500)
        let nobody = onLoop(c.loop) { (done: @escaping @Sendable (Result<Admission?, RedisError>) -> Void) in
            store.admit(user: "nobody", tokens: 1, on: c, done)
        }
        #expect(nobody == .success(nil))
    }
}
