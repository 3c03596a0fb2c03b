import PodSnapshot
import Routing
import Testing

/// Synthetic snapshots: `fresh` pods with the given KV usage and token
/// rates, gateway in-flight counts, and stale pods.
struct World {
    var pods: [PodEndpoint] = []
    var states: [String: PodState] = [:]
    var loads: [String: PodLoad] = [:]

    mutating func add(_ i: Int, fresh: Bool = true, kv: Double? = nil, rate: Double? = nil, inFlight: Int = 0) {
        let p = PodEndpoint(host: "10.0.\(i / 250).\(i % 250 + 1)", port: 8000)
        pods.append(p)
        var m = ModelMetrics(scrapedAtNanos: 1)
        m.kvCacheUsage = kv
        m.promptTokensPerSecond = rate
        m.generationTokensPerSecond = rate.map { _ in 0 }
        states[p.address] = fresh ? PodState(health: .fresh, models: ["m": m]) : PodState(health: .stale("scrape failed"))
        let load = PodLoad()
        for _ in 0..<inFlight { load.start(tokens: 1) }
        loads[p.address] = load
    }

    var snapshot: PodSnapshot { PodSnapshot(models: ["m": pods], pods: states, loads: loads) }
}

@Suite struct ScoringRouterTests {
    let req = RoutingRequest(model: "m", stream: false, bodyBytes: 10, requestID: "r")

    func reg(seed: UInt64 = 7) -> RouterRegistry { .standard(seed: seed) }

    @Test func leastRequestPicksTheFewestInFlightAndBreaksTiesAtRandom() throws {
        var w = World()
        w.add(0, inFlight: 3); w.add(1, inFlight: 1); w.add(2, inFlight: 1); w.add(3, inFlight: 5)
        let r = try reg().router(named: "least-request")
        var seen = Set<String>()
        for _ in 0..<200 {
            let d = try r.decide(req, candidates: w.pods, snapshot: w.snapshot)
            #expect(d.fallback == nil)
            seen.insert(d.pod.address)
        }
        #expect(seen == [w.pods[1].address, w.pods[2].address])
    }

    @Test func leastKVCacheUsesTheScrapedUsageAndFallsBackVisiblyWhenNoneIsKnown() throws {
        var w = World()
        w.add(0, kv: 0.9); w.add(1, kv: 0.2); w.add(2, kv: nil)
        let r = try reg().router(named: "least-kv-cache")
        for _ in 0..<50 {
            let d = try r.decide(req, candidates: w.pods, snapshot: w.snapshot)
            #expect(d.pod == w.pods[1] && d.fallback == nil)  // the pod without a value is left out
        }
        var blind = World()
        blind.add(0, kv: nil, inFlight: 4); blind.add(1, kv: nil, inFlight: 1)
        let d = try r.decide(req, candidates: blind.pods, snapshot: blind.snapshot)
        #expect(d.fallback == "kv_cache_usage_unknown")
        #expect(d.pod == blind.pods[1])  // least-request decided
        #expect(try reg().router(named: "least-gpu-cache").decide(req, candidates: w.pods, snapshot: w.snapshot).pod == w.pods[1])
    }

    @Test func neverAStalePodWhileAFreshOneExists() throws {
        let names = ["random", "power-of-two", "least-request", "least-kv-cache", "throughput", "least-request:1,least-kv-cache:3"]
        for seed in 0..<20 as Range<UInt64> {
            var w = World()
            var g = SplitMix(seed)
            for i in 0..<12 {
                w.add(i, fresh: g.next() % 3 != 0, kv: Double(g.next() % 100) / 100, rate: Double(g.next() % 500),
                      inFlight: Int(g.next() % 4))
            }
            let fresh = Set(w.pods.filter { w.states[$0.address]!.health.isFresh }.map(\.address))
            for n in names {
                let r = try reg(seed: seed).router(named: n)
                for _ in 0..<20 {
                    let d = try r.decide(req, candidates: w.pods, snapshot: w.snapshot)
                    #expect(fresh.isEmpty || fresh.contains(d.pod.address), "\(n) chose a stale pod")
                }
            }
        }
    }

    @Test func allStaleStillRoutesAndSaysWhyForScrapedSignals() throws {
        var w = World()
        w.add(0, fresh: false, inFlight: 2); w.add(1, fresh: false, inFlight: 0)
        let d = try reg().router(named: "least-kv-cache").decide(req, candidates: w.pods, snapshot: w.snapshot)
        #expect(d.fallback == "kv_cache_usage_unknown" && d.pod == w.pods[1])
        let lr = try reg().router(named: "least-request").decide(req, candidates: w.pods, snapshot: w.snapshot)
        #expect(lr.fallback == nil && lr.pod == w.pods[1])
        #expect(try reg().router(named: "random").decide(req, candidates: w.pods, snapshot: w.snapshot).fallback == nil)
    }

    @Test func onePodAndNoPod() throws {
        var w = World()
        w.add(0, kv: 0.5)
        for n in ["random", "power-of-two", "least-request", "least-kv-cache", "throughput"] {
            let r = try reg().router(named: n)
            #expect(try r.route(req, candidates: w.pods, snapshot: w.snapshot) == w.pods[0])
            #expect(throws: RoutingError.noCandidates(model: "m")) { try r.route(req, candidates: [], snapshot: w.snapshot) }
        }
    }

    @Test func aPodLeavingMidDecisionIsStillAnAnswerNotACrash() throws {
        // The candidate list names a pod the snapshot no longer knows.
        var w = World()
        w.add(0, kv: 0.7, inFlight: 1); w.add(1, kv: 0.1)
        let gone = PodEndpoint(host: "10.9.9.9", port: 8000)
        for n in ["random", "power-of-two", "least-request", "least-kv-cache", "throughput"] {
            let d = try reg().router(named: n).decide(req, candidates: w.pods + [gone], snapshot: w.snapshot)
            #expect(d.pod != gone, "\(n) chose a pod with no state while fresh ones exist")
        }
    }

    @Test func aBlendPicksTheArgmaxOfItsWeightedParts() throws {
        for seed in 0..<30 as Range<UInt64> {
            var w = World()
            var g = SplitMix(seed &+ 100)
            for i in 0..<8 { w.add(i, kv: Double(g.next() % 1000) / 1000, inFlight: Int(g.next() % 6)) }
            let snap = w.snapshot
            let reqs = w.pods.map { Double(snap.loads[$0.address]!.requests) }
            let kvs = w.pods.map { snap.pods[$0.address]!.models["m"]!.kvCacheUsage! }
            func norm(_ xs: [Double], _ x: Double) -> Double {
                let lo = xs.min()!, hi = xs.max()!
                return hi == lo ? 1 : (hi - x) / (hi - lo)
            }
            let expected = w.pods.indices.map { 1 * norm(reqs, reqs[$0]) + 2 * norm(kvs, kvs[$0]) }
            let best = expected.max()!
            let winners = Set(w.pods.indices.filter { abs(expected[$0] - best) < 1e-9 }.map { w.pods[$0] })
            let d = try reg(seed: seed).router(named: "least-request:1, least-kv-cache:2").decide(req, candidates: w.pods, snapshot: snap)
            #expect(winners.contains(d.pod))
            #expect(d.fallback == nil)
        }
    }

    @Test func blendsAreValidatedWithClearErrors() throws {
        let r = reg()
        #expect(throws: RoutingError.self) { try r.router(named: "least-request:1,random:2") }
        #expect(throws: RoutingError.self) { try r.router(named: "least-request:-1") }
        #expect(throws: RoutingError.self) { try r.router(named: "least-request:0,least-kv-cache:0") }
        #expect(throws: RoutingError.self) { try r.router(named: "least-request,least-request") }
        do {
            _ = try r.router(named: "least-request:x")
        } catch {
            #expect("\(error)".contains("weight 'x' of least-request is not a number"))
        }
        // A part no pod can score is dropped and named; the rest decides.
        var w = World()
        w.add(0, kv: nil, inFlight: 3); w.add(1, kv: nil, inFlight: 0)
        let d = try r.router(named: "least-request:1,least-kv-cache:5").decide(req, candidates: w.pods, snapshot: w.snapshot)
        #expect(d.pod == w.pods[1] && d.fallback == "least-kv-cache:kv_cache_usage_unknown")
    }

    @Test func seededRunsAreReproducible() throws {
        var w = World()
        for i in 0..<16 { w.add(i, kv: 0.5, inFlight: i % 2) }  // many ties
        for n in ["random", "power-of-two", "least-request", "least-kv-cache", "least-request:1,least-kv-cache:1"] {
            let a = try reg(seed: 99).router(named: n), b = try reg(seed: 99).router(named: n)
            for _ in 0..<100 {
                #expect(try a.route(req, candidates: w.pods, snapshot: w.snapshot) == (try b.route(req, candidates: w.pods, snapshot: w.snapshot)))
            }
        }
    }

    @Test func leastLatencyEstimatesFromTheWindowAndTreatsIdlePodsAsFree() throws {
        func world(_ specs: [(ttft: Double?, tpot: Double?, queue: Double?, running: Double, waiting: Double)]) -> World {
            var w = World()
            for (i, s) in specs.enumerated() {
                w.add(i)
                var m = ModelMetrics(scrapedAtNanos: 1)
                (m.ttftMean, m.tpotMean, m.queueTimeMean, m.running, m.waiting) = (s.ttft, s.tpot, s.queue, s.running, s.waiting)
                w.states[w.pods[i].address] = PodState(health: .fresh, models: ["m": m])
            }
            return w
        }
        let r = try reg().router(named: "least-latency")
        // 0.1 + 0.02×100 = 2.1 s against 0.5 + 0.01×100 = 1.5 s: the second, for a 100-token request.
        var w = world([(0.1, 0.02, 0, 3, 0), (0.5, 0.01, 0, 3, 0), (nil, nil, nil, 4, 2)])
        let long = RoutingRequest(model: "m", stream: false, bodyBytes: 1, requestID: "r", maxTokens: 100)
        #expect(try r.decide(long, candidates: w.pods, snapshot: w.snapshot) == RoutingDecision(pod: w.pods[1]))
        // For a 1-token request the first is quicker (0.12 against 0.51).
        let short = RoutingRequest(model: "m", stream: false, bodyBytes: 1, requestID: "r", maxTokens: 1)
        #expect(try r.decide(short, candidates: w.pods, snapshot: w.snapshot).pod == w.pods[0])
        // An idle pod with no recent request costs nothing.
        w = world([(0.1, 0.02, 0, 3, 0), (nil, nil, nil, 0, 0)])
        #expect(try r.decide(long, candidates: w.pods, snapshot: w.snapshot).pod == w.pods[1])
        // Busy pods without estimates: the fallback, said.
        w = world([(nil, nil, nil, 2, 1), (nil, nil, nil, 1, 0)])
        #expect(try r.decide(long, candidates: w.pods, snapshot: w.snapshot).fallback == "latency_unknown")
    }

    @Test func leastBusyTimeIsRefusedWithTheReason() {
        do {
            _ = try reg().router(named: "least-busy-time")
            Issue.record("accepted")
        } catch {
            #expect("\(error)".contains("routing strategy 'least-busy-time' is not offered: the reference reads a busy-time metric"))
        }
    }

    @Test func powerOfTwoPrefersTheLessLoadedOfItsPair() throws {
        var w = World()
        w.add(0, inFlight: 9); w.add(1, inFlight: 0)
        for _ in 0..<50 {
            #expect(try reg().router(named: "power-of-two").route(req, candidates: w.pods, snapshot: w.snapshot) == w.pods[1])
        }
    }

    @Test func thousandPods() throws {
        var w = World()
        for i in 0..<1000 { w.add(i, kv: Double(i % 97) / 97, rate: Double(1000 - i), inFlight: i % 5) }
        w.loads[w.pods[500].address] = PodLoad()  // 0 in flight, kv 15/97
        let d = try reg().router(named: "throughput").decide(req, candidates: w.pods, snapshot: w.snapshot)
        #expect(d.pod == w.pods[999])  // the lowest token rate
        let kv = try reg().router(named: "least-kv-cache").decide(req, candidates: w.pods, snapshot: w.snapshot)
        #expect(w.states[kv.pod.address]!.models["m"]!.kvCacheUsage == 0)
    }
}

/// A tiny deterministic generator for building worlds.
struct SplitMix {
    var s: UInt64
    init(_ seed: UInt64) { s = seed }
    mutating func next() -> UInt64 {
        s &+= 0x9E37_79B9_7F4A_7C15
        var z = s
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

@Suite struct SessionAffinityTests {
    let reg = RouterRegistry.standard(seed: 3)

    func req(_ s: String?) -> RoutingRequest {
        RoutingRequest(model: "m", stream: false, bodyBytes: 10, requestID: "r", sessionID: s)
    }

    @Test func aSessionStaysOnItsPodAndIsReHomedWhenThePodLeaves() throws {
        var w = World()
        for i in 0..<4 { w.add(i, inFlight: i == 2 ? 0 : 5) }
        let r = try reg.router(named: "session-affinity")
        #expect(r.usesSessions)
        let first = try r.decide(req("s1"), view: w.snapshot.view(for: "m")!).pod
        #expect(first == w.pods[2])  // placed by least-request
        // Load moves elsewhere; the session stays.
        w.loads[w.pods[2].address] = { let l = PodLoad(); for _ in 0..<9 { l.start(tokens: 1) }; return l }()
        for _ in 0..<50 { #expect(try r.decide(req("s1"), view: w.snapshot.view(for: "m")!).pod == first) }
        // Another session is placed on its own.
        #expect(try r.decide(req("s2"), view: w.snapshot.view(for: "m")!).pod != first)
        // The pod leaves the model: the session is re-homed, then stays there.
        let remaining = w.pods.filter { $0 != first }
        let moved = try r.decide(req("s1"), candidates: remaining, snapshot: w.snapshot).pod
        #expect(moved != first)
        for _ in 0..<10 { #expect(try r.decide(req("s1"), candidates: w.pods, snapshot: w.snapshot).pod == moved) }
    }

    @Test func aStalePodLosesItsSessionsWhileFreshOnesExist() throws {
        var w = World()
        w.add(0); w.add(1)
        let r = SessionAffinityRouter(inner: try reg.router(named: "least-request"))
        let p = try r.decide(req("s"), view: w.snapshot.view(for: "m")!).pod
        w.states[p.address] = PodState(health: .stale("scrape failed"))
        #expect(try r.decide(req("s"), view: w.snapshot.view(for: "m")!).pod != p)
        #expect(r.sessionCount == 1)
    }

    @Test func theTableIsBoundedAndExpires() throws {
        var w = World()
        w.add(0); w.add(1)
        let r = SessionAffinityRouter(inner: try reg.router(named: "random"), ttl: .zero, capacity: 10)
        for i in 0..<25 { _ = try r.decide(req("s\(i)"), view: w.snapshot.view(for: "m")!) }
        #expect(r.sessionCount <= 10)
        // Without a session id it is the inner strategy.
        _ = try r.decide(req(nil), view: w.snapshot.view(for: "m")!)
    }
}

@Suite struct VTCBasicTests {
    func req(_ user: String?, bytes: Int = 400, maxTokens: Int? = 50) -> RoutingRequest {
        RoutingRequest(model: "m", stream: false, bodyBytes: bytes, requestID: "r", maxTokens: maxTokens, user: user)
    }

    @Test func aHeavyUserIsPushedAlongThePodListAndALightOneStaysAtItsHead() throws {
        var w = World()
        for i in 0..<4 { w.add(i) }
        let view = w.snapshot.view(for: "m")!
        let vtc = VTCBasicRouter(fallback: try RouterRegistry.standard(seed: 1).router(named: "least-request"),
                                 source: RandomSource(seed: 5))
        // heavy sends 10x the tokens of light.
        var heavyPods: [Int] = [], lightPods: [Int] = []
        for round in 0..<40 {
            for _ in 0..<10 {
                let d = try vtc.decide(req("heavy", bytes: 4000, maxTokens: 500), view: view)
                if round > 5 { heavyPods.append(w.pods.firstIndex(of: d.pod)!) }
            }
            let d = try vtc.decide(req("light", bytes: 4000, maxTokens: 500), view: view)
            if round > 5 { lightPods.append(w.pods.firstIndex(of: d.pod)!) }
        }
        let heavyMean = Double(heavyPods.reduce(0, +)) / Double(heavyPods.count)
        let lightMean = Double(lightPods.reduce(0, +)) / Double(lightPods.count)
        #expect(heavyMean > lightMean + 1, "heavy \(heavyMean) light \(lightMean)")
        #expect(vtc.tokens(of: "heavy") > 9 * vtc.tokens(of: "light"))
    }

    @Test func realUsageReplacesTheEstimateOnce() throws {
        var w = World()
        w.add(0); w.add(1)
        let vtc = VTCBasicRouter(fallback: try RouterRegistry.standard(seed: 1).router(named: "least-request"),
                                 source: RandomSource(seed: 5))
        let d = try vtc.decide(req("u", bytes: 400, maxTokens: 50), view: w.snapshot.view(for: "m")!)
        #expect(vtc.tokens(of: "u") == 100 + 2 * 50)  // estimate: 400/4 prompt + 2 × max_tokens
        let sink = try #require(d.usage)
        sink.settle(promptTokens: 30, completionTokens: 7)
        #expect(vtc.tokens(of: "u") == 30 + 2 * 7)
        sink.settle(promptTokens: 999, completionTokens: 999)  // once
        #expect(vtc.tokens(of: "u") == 44)
        // Only completion tokens known: the prompt estimate stays.
        let d2 = try vtc.decide(req("v", bytes: 400, maxTokens: 50), view: w.snapshot.view(for: "m")!)
        d2.usage?.settle(promptTokens: nil, completionTokens: 10)
        #expect(vtc.tokens(of: "v") == 100 + 2 * 10)
    }

    @Test func withoutAUserItIsLeastRequestAndSaysSo() throws {
        var w = World()
        w.add(0, inFlight: 3); w.add(1, inFlight: 0)
        let d = try RouterRegistry.standard(seed: 1).router(named: "vtc-basic").decide(req(nil), view: w.snapshot.view(for: "m")!)
        #expect(d.pod == w.pods[1] && d.fallback == "no_user" && d.usage == nil)
    }
}
