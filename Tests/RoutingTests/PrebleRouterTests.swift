import PodSnapshot
import PrefixIndex
import Routing
import Testing

@Suite struct PrebleRouterTests {
    func request(_ text: String) -> RoutingRequest {
        RoutingRequest(model: "m", stream: false, bodyBytes: text.utf8.count, requestID: "r", maxTokens: 16, prompt: Array(text.utf8))
    }
    func doc(_ name: String, _ words: Int) -> String { (0..<words).map { "\(name)\($0)" }.joined(separator: " ") }
    /// Pods with fitted prefill seconds per token (nil: not fitted) and KV sizes in tokens.
    func world(_ rates: [Double?], capacity: Double? = nil) -> World {
        var w = World()
        for (i, r) in rates.enumerated() {
            w.add(i)
            var m = w.states[w.pods[i].address]!.models["m"]!
            m.prefillSecondsPerToken = r
            m.kvCapacityTokens = capacity
            w.states[w.pods[i].address]!.models["m"] = m
        }
        return w
    }
    func setup() throws -> (RouterRegistry, any Router) {
        let reg = RouterRegistry.standard(seed: 5)
        return (reg, try reg.router(named: "prefix-cache-preble"))
    }
    func holds(_ reg: RouterRegistry, _ text: String, _ pod: PodEndpoint, times: Int = 1) {
        let keys = reg.prefixCache!.hasher.keys(bytes: Array(text.utf8), model: "m")
        for _ in 0..<times { reg.prefixCache!.index.record(keys, pod: pod) }
    }

    @Test func exploitsALongCachedPrefixEvenOnABusierPod() throws {
        let w = world([1e-4, 1e-4])
        let (reg, r) = try setup()
        let shared = doc("s", 400)
        holds(reg, shared, w.pods[0])
        // Load pod 0's window with unrelated explored work first.
        for i in 0..<5 { _ = try r.decide(request(doc("x\(i)", 50)), candidates: [w.pods[0]], snapshot: w.snapshot) }
        #expect((r as! PrebleRouter).windowLoad(w.pods[0]) > 0)
        let d = try r.decide(request(shared + " tail " + doc("t", 40)), candidates: w.pods, snapshot: w.snapshot)
        #expect(d.pod == w.pods[0] && d.fallback == nil)
        #expect((r as! PrebleRouter).exploited.load(ordering: .relaxed) == 1)
    }

    @Test func exploresByLoadWhenLittleIsCached() throws {
        let w = world([1e-4, 1e-4])
        let (reg, r) = try setup()
        let shared = doc("s", 100)
        holds(reg, shared, w.pods[0])
        for i in 0..<5 { _ = try r.decide(request(doc("x\(i)", 300)), candidates: [w.pods[0]], snapshot: w.snapshot) }
        // 100 of ~500 words cached on pod 0: explore; pod 0's routed work outweighs the saved prefill.
        let d = try r.decide(request(shared + " " + doc("new", 400)), candidates: w.pods, snapshot: w.snapshot)
        #expect(d.pod == w.pods[1])
        #expect((r as! PrebleRouter).explored.load(ordering: .relaxed) == 6)
    }

    @Test func thePrefillTermUsesEachPodsFittedCost() throws {
        let w = world([1e-3, 1e-4, 5e-4])
        let (_, r) = try setup()
        // Nothing cached, no load: the pod whose fitted prefill is cheapest.
        let d = try r.decide(request(doc("fresh", 300)), candidates: w.pods, snapshot: w.snapshot)
        #expect(d.pod == w.pods[1] && d.fallback == nil)
    }

    @Test func theEvictionTermAvoidsPushingOutReusedBlocks() throws {
        // Each pod's cache: 1,024 tokens = 64 index blocks (16 tokens each at 4 bytes a token).
        let w = world([1e-4, 1e-4], capacity: 1024)
        let (reg, r) = try setup()
        let popular = doc("p", 600), cold = doc("c", 600)  // ~42 blocks each
        holds(reg, popular, w.pods[0], times: 10)  // reused 9 times
        holds(reg, cold, w.pods[1])  // never reused
        let e0 = reg.prefixCache!.index.evictionCost(pod: w.pods[0], incoming: 30, capacity: 64)
        let e1 = reg.prefixCache!.index.evictionCost(pod: w.pods[1], incoming: 30, capacity: 64)
        #expect(e0.blocks == e1.blocks && e0.blocks > 0 && e0.hits == 9 * e0.blocks && e1.hits == 0)
        // A new prompt (~28 blocks) costs the same prefill and load on both: pushing out pod 0's reused blocks costs more.
        var probe = request(doc("n", 400))
        probe.records = false  // the same decision 20 times: a tie would split them
        for _ in 0..<20 { #expect(try r.decide(probe, candidates: w.pods, snapshot: w.snapshot).pod == w.pods[1]) }
    }

    @Test func withoutAFittedPrefillModelItSaysSo() throws {
        let w = world([nil, nil])
        let (_, r) = try setup()
        #expect(try r.decide(request(doc("q", 100)), candidates: w.pods, snapshot: w.snapshot).fallback == "prefill_model_unknown")
        let bare = RoutingRequest(model: "m", stream: false, bodyBytes: 3, requestID: "r")
        #expect(try r.decide(bare, candidates: w.pods, snapshot: w.snapshot).fallback == "no_prompt")
    }
}
