import PodMetrics
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
        #expect(throws: RoutingError.unknownStrategy(name: "nope", known: ["random"])) { try reg.router(named: "nope") }
        let strict = RouterRegistry.standard(defaultStrategy: nil)
        #expect(throws: RoutingError.self) { try strict.router(named: nil) }
    }

    @Test func podsFileParsing() throws {
        let m = try StaticPodsFile.parse("""
            models:
              - name: a
                endpoints: ["10.0.0.1:8000", {address: "[::1]:9000", metricsPort: 9100, engine: sglang}]
              - name: b
            """)
        #expect(m["a"] == [PodEndpoint(host: "10.0.0.1", port: 8000),
                           PodEndpoint(host: "::1", port: 9000, metricsPort: 9100, engine: "sglang")])
        #expect(m["a"]?[1].address == "[::1]:9000")
        #expect(m["b"] == [])
    }

    @Test(arguments: [
        "models: 3", "- a", "models:\n  - endpoints: []", "models:\n  - name: a\n    endpoints: [\"x\"]",
        "models:\n  - name: a\n    endpoints: [\"h:99999\"]", "models:\n  - name: a\n  - name: a",
        "models:\n  - name: a\n    endpoints: [{address: \"h:1\", metricsPort: 0}]", "models: [",
    ])
    func badPodsFilesAreRejectedWithAReason(_ text: String) {
        do {
            _ = try StaticPodsFile.parse(text, path: "p.yaml")
            Issue.record("accepted \(text)")
        } catch {
            #expect(error.description.hasPrefix("pods file p.yaml: "))
        }
    }
}
