import PodSnapshot
import PrefixIndex
import Routing
import Testing

@Suite struct PrefixCacheRouterTests {
    func request(_ text: String, records: Bool = true) -> RoutingRequest {
        var r = RoutingRequest(model: "m", stream: false, bodyBytes: text.utf8.count, requestID: "r", prompt: Array(text.utf8))
        r.records = records
        return r
    }
    func doc(_ name: String, _ words: Int = 200) -> String {
        (0..<words).map { "\(name)\($0)" }.joined(separator: " ")
    }
    func registry(_ configure: (inout PrefixCacheOptions) -> Void = { _ in }) -> RouterRegistry {
        var o = PrefixCacheOptions()
        configure(&o)
        return .standard(seed: 3, prefix: PrefixCache(options: o))
    }

    @Test func followUpsGoWhereTheirPrefixWasRoutedAndNewPrefixesSpread() throws {
        var w = World()
        for i in 0..<4 { w.add(i) }
        let r = try registry().router(named: "prefix-cache")
        var home: [String: PodEndpoint] = [:]
        for g in 0..<8 {
            home["g\(g)"] = try r.decide(request(doc("g\(g)") + " question 0"), candidates: w.pods, snapshot: w.snapshot).pod
        }
        // New prefixes, nothing cached, equal loads: chosen at random over the pods.
        #expect(Set(home.values).count > 1)
        for turn in 1..<5 {
            for g in 0..<8 {
                let d = try r.decide(request(doc("g\(g)") + " question \(turn)"), candidates: w.pods, snapshot: w.snapshot)
                #expect(d.pod == home["g\(g)"] && d.fallback == nil)
            }
        }
    }

    @Test func multiTurnConversationsMatchTheirHistory() throws {
        var w = World()
        for i in 0..<3 { w.add(i) }
        let reg = registry()
        let r = try reg.router(named: "prefix-cache")
        var history = doc("system", 50)
        let first = try r.decide(request(history), candidates: w.pods, snapshot: w.snapshot).pod
        for turn in 0..<10 {
            history += "\nuser says \(turn)\nassistant answers \(turn) " + doc("a\(turn)", 20)
            #expect(try r.decide(request(history), candidates: w.pods, snapshot: w.snapshot).pod == first)
        }
        #expect(reg.prefixCache!.hitBlocks.load(ordering: .relaxed) > 0)
    }

    @Test func theImbalanceGateSendsAHotPrefixToTheLeastLoaded() throws {
        var w = World()
        w.add(0, inFlight: 12); w.add(1, inFlight: 3); w.add(2, inFlight: 2)
        let reg = registry { $0.imbalance = 8 }
        let r = try reg.router(named: "prefix-cache")
        let hot = doc("hot")
        reg.prefixCache!.index.record(reg.prefixCache!.hasher.keys(bytes: Array(hot.utf8), model: "m"), pod: w.pods[0])
        // 12 - 2 > 8: only the least loaded (pod 2) is considered, whatever pod 0 holds.
        #expect(try r.decide(request(hot), candidates: w.pods, snapshot: w.snapshot).pod == w.pods[2])
        #expect(reg.prefixCache!.imbalancedDecisions.load(ordering: .relaxed) == 1)
    }

    @Test func theLoadGuardSkipsAMatchingPodAboveMeanPlusKSigma() throws {
        var w = World()
        // Loads 6,0,0,0,0: spread 6 <= gate 8; mean 1.2, sample sigma 2.68: bound with k=1 is 3.88 < 6.
        w.add(0, inFlight: 6); for i in 1..<5 { w.add(i) }
        let hot = doc("hot")
        for (k, expectHome) in [(1.0, false), (3.0, true)] {
            let reg = registry { $0.stddevFactor = k }
            reg.prefixCache!.index.record(reg.prefixCache!.hasher.keys(bytes: Array(hot.utf8), model: "m"), pod: w.pods[0])
            let d = try reg.router(named: "prefix-cache").decide(request(hot), candidates: w.pods, snapshot: w.snapshot)
            #expect((d.pod == w.pods[0]) == expectHome, "k=\(k)")
        }
    }

    @Test func withoutAPromptTheDecisionIsLeastRequestAndSaysSo() throws {
        var w = World()
        w.add(0, inFlight: 4); w.add(1, inFlight: 1)
        let reg = registry()
        let bare = RoutingRequest(model: "m", stream: false, bodyBytes: 10, requestID: "r")
        for name in ["prefix-cache", "prefix-cache-cost", "prefix-match"] {
            let d = try reg.router(named: name).decide(bare, candidates: w.pods, snapshot: w.snapshot)
            #expect(d.pod == w.pods[1] && d.fallback == "no_prompt", "\(name)")
        }
    }

    @Test func explanationsDoNotRecord() throws {
        var w = World()
        for i in 0..<2 { w.add(i) }
        let reg = registry()
        let r = try reg.router(named: "prefix-cache")
        let x = r.explain(request(doc("x")), view: w.snapshot.view(for: "m", candidates: w.pods))
        #expect(x.decision != nil)
        #expect(reg.prefixCache!.index.count == 0)
        _ = try r.decide(request(doc("x")), candidates: w.pods, snapshot: w.snapshot)
        #expect(reg.prefixCache!.index.count > 0)
        let again = r.explain(request(doc("x")), view: w.snapshot.view(for: "m", candidates: w.pods))
        #expect(again.rows.compactMap(\.cachedBlocks).max()! > 0)
    }

    @Test func costVariantTradesCachedTokensAgainstQueuedTokens() throws {
        // Pod 0 holds the prompt but has a request queued (worth 256 tokens); pod 1 is idle.
        var w = World()
        w.add(0); w.add(1)
        w.loads[w.pods[0].address]!.start(tokens: 5000)
        let reg = registry()
        let short = doc("s", 100)  // ~600 bytes: ~150 tokens to recompute, less than the queue
        reg.prefixCache!.index.record(reg.prefixCache!.hasher.keys(bytes: Array(short.utf8), model: "m"), pod: w.pods[0])
        let r = try reg.router(named: "prefix-cache-cost")
        #expect(try r.decide(request(short), candidates: w.pods, snapshot: w.snapshot).pod == w.pods[1])
        // A prompt whose recompute costs more than the queue stays where it is cached.
        let long = doc("l", 6000)
        reg.prefixCache!.index.record(reg.prefixCache!.hasher.keys(bytes: Array(long.utf8), model: "m"), pod: w.pods[0])
        #expect(try r.decide(request(long), candidates: w.pods, snapshot: w.snapshot).pod == w.pods[0])
    }

    @Test func aBlendOfPrefixMatchAndLeastRequestEqualsTheArgmaxOfItsParts() throws {
        var w = World()
        w.add(0, inFlight: 2); w.add(1, inFlight: 0); w.add(2, inFlight: 1)
        let reg = registry()
        let text = doc("b")
        let keys = reg.prefixCache!.hasher.keys(bytes: Array(text.utf8), model: "m")
        reg.prefixCache!.index.record(keys, pod: w.pods[0])
        reg.prefixCache!.index.record(Array(keys.prefix(keys.count / 2)), pod: w.pods[2])
        // prefix-match normalized: pod0 1, pod2 ~0.5, pod1 0; least-request: pod1 1, pod2 0.5, pod0 0.
        #expect(try reg.router(named: "prefix-match:3,least-request:1").decide(request(text, records: false), candidates: w.pods,
                                                                             snapshot: w.snapshot).pod == w.pods[0])
        #expect(try reg.router(named: "prefix-match:1,least-request:3").decide(request(text, records: false), candidates: w.pods,
                                                                             snapshot: w.snapshot).pod == w.pods[1])
    }

    @Test func aThousandPodsAndAStalePod() throws {
        var w = World()
        for i in 0..<1000 { w.add(i, fresh: i != 7) }
        let reg = registry()
        let r = try reg.router(named: "prefix-cache")
        let text = doc("big")
        reg.prefixCache!.index.record(reg.prefixCache!.hasher.keys(bytes: Array(text.utf8), model: "m"), pod: w.pods[7])
        // The only pod holding the prefix is stale: never chosen while fresh pods exist.
        for _ in 0..<20 { #expect(try r.decide(request(text, records: false), candidates: w.pods, snapshot: w.snapshot).pod != w.pods[7]) }
        reg.prefixCache!.index.record(reg.prefixCache!.hasher.keys(bytes: Array(text.utf8), model: "m"), pod: w.pods[500])
        #expect(try r.decide(request(text), candidates: w.pods, snapshot: w.snapshot).pod == w.pods[500])
    }

    @Test func theEnginesScrapedCacheSizeBoundsWhatTheIndexClaims() throws {
        var w = World()
        w.add(0)
        // 4,096 tokens of KV = 256 character blocks (64 bytes at 4 bytes a token).
        var m = w.states[w.pods[0].address]!.models["m"]!
        m.kvCapacityTokens = 4096
        w.states[w.pods[0].address]!.models["m"] = m
        let reg = registry()
        let r = try reg.router(named: "prefix-cache")
        for c in 0..<20 { _ = try r.decide(request(doc("c\(c)", 400)), candidates: w.pods, snapshot: w.snapshot) }
        #expect(reg.prefixCache!.index.count(of: w.pods[0]) == 256)
        // The newest conversation is still matched in full; the oldest is gone.
        let newest = reg.prefixCache!.hasher.keys(bytes: Array(doc("c19", 400).utf8), model: "m")
        #expect(reg.prefixCache!.index.longestMatches(newest, pods: w.pods) == [newest.count])
        let oldest = reg.prefixCache!.hasher.keys(bytes: Array(doc("c0", 400).utf8), model: "m")
        #expect(reg.prefixCache!.index.longestMatches(oldest, pods: w.pods) == [0])
    }

    @Test func aSharedFirstBlockAloneDoesNotPullEveryRequestToOnePod() throws {
        var w = World()
        for i in 0..<4 { w.add(i) }
        let reg = registry()
        let r = try reg.router(named: "prefix-cache")
        let system = String(repeating: "s", count: 64)  // exactly one block, shared by everyone
        var pods = Set<String>()
        for c in 0..<40 {
            // Each conversation: the shared block, then ~2 KB of its own (3% matched).
            pods.insert(try r.decide(request(system + doc("conv\(c)-", 300)), candidates: w.pods, snapshot: w.snapshot).pod.address)
        }
        #expect(pods.count == 4)
        // With the fraction at 0 (the reference's rule) every request follows the first one.
        let any = registry { $0.minMatchFraction = 0 }
        let r0 = try any.router(named: "prefix-cache")
        var pods0 = Set<String>()
        for c in 0..<40 {
            pods0.insert(try r0.decide(request(system + doc("conv\(c)-", 300)), candidates: w.pods, snapshot: w.snapshot).pod.address)
        }
        #expect(pods0.count == 1)
        // The blend's prefix part ignores the one-block lead too.
        let blend = try registry().router(named: "prefix-match:2,least-request:1")
        var podsB = Set<String>()
        for c in 0..<40 {
            podsB.insert(try blend.decide(request(system + doc("conv\(c)-", 300)), candidates: w.pods, snapshot: w.snapshot).pod.address)
        }
        #expect(podsB.count == 4)
    }
}
