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

    /// Each bad file, and the line its error must name.
    @Test(arguments: [
        ("models: 3", 1), ("- a", 1), ("models:\n  - endpoints: []", 2), ("models:\n  - name: a\n    endpoints: [\"x\"]", 3),
        ("models:\n  - name: a\n    endpoints: [\"h:99999\"]", 3), ("models:\n  - name: a\n  - name: a", 3),
        ("models:\n  - name: a\n    endpoints: [{address: \"h:1\", metricsPort: 0}]", 3), ("models: [", 2),
        ("models:\n  - name: a\n    endpoints: 7", 3),
        // Keys that are lists or mappings: Yams's constructor traps on them
        // (found by the pods-file fuzz target), so they are refused first.
        ("models:\n  - name: a\n    [x]: 1", 3), ("models: [{ [{name: m}]: 1}]", 1), ("models:\n  ? {a: 1}\n  : 2", 2),
    ])
    func badPodsFilesAreRejectedWithAReasonAndLine(_ text: String, _ line: Int) {
        do {
            _ = try StaticPodsFile.parse(text, path: "p.yaml")
            Issue.record("accepted \(text)")
        } catch {
            #expect(error.description.hasPrefix("pods file p.yaml line \(line): "), "\(text)")
            #expect(error.line == line)
        }
    }
}
