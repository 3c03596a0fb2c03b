import PodSnapshot
import Routing
import Testing

@Suite struct RouterTests {
    let pods = (1...4).map { PodEndpoint(host: "10.0.0.\($0)", port: 8000) }
    let req = RoutingRequest(model: "m", stream: false, bodyBytes: 10, requestID: "r")

    @Test func randomSpreadsOverEveryPodAndIsReproducibleWithASeed() throws {
        let a = RandomRouter(seed: 42), b = RandomRouter(seed: 42)
        var counts: [PodEndpoint: Int] = [:]
        for _ in 0..<4000 {
            let x = try a.route(req, candidates: pods, snapshot: .empty)
            #expect(x == (try b.route(req, candidates: pods, snapshot: .empty)))
            counts[x, default: 0] += 1
        }
        #expect(counts.count == 4)
        #expect(counts.values.allSatisfy { $0 > 800 && $0 < 1200 })
    }

    @Test func emptyAndSingle() throws {
        let r = RandomRouter()
        #expect(throws: RoutingError.noCandidates(model: "m")) { try r.route(req, candidates: [], snapshot: .empty) }
        #expect(try r.route(req, candidates: [pods[2]], snapshot: .empty) == pods[2])
    }

    @Test func registryResolvesHeaderDefaultAndUnknown() throws {
        let reg = RouterRegistry.standard(defaultStrategy: "random")
        #expect(try reg.router(named: nil).name == "random")
        #expect(try reg.router(named: "  random ").name == "random")
        #expect(try reg.router(named: "").name == "random")
        #expect(throws: RoutingError.unknownStrategy(name: "nope", known: reg.names)) { try reg.router(named: "nope") }
        #expect(reg.names == ["least-gpu-cache", "least-kv-cache", "least-request", "power-of-two", "least-latency", "random", "session-affinity", "throughput", "vtc-basic", "prefix-cache", "prefix-cache-cost", "prefix-cache-preble", "prefix-match"].sorted())
        let strict = RouterRegistry.standard(defaultStrategy: nil)
        #expect(throws: RoutingError.self) { try strict.router(named: nil) }
    }
}
