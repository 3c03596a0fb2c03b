import PodDiscovery
import PodSnapshot
import Testing

@Suite struct StaticPodsFileTests {
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
