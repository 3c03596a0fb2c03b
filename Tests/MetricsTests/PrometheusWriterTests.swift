import Metrics
import PodMetrics
import Testing

/// The one exposition writer: cumulative `le` buckets with `+Inf`, `_count`
/// and `_sum`, escaping, label order; every page it writes parses back with
/// the project's full Prometheus parser to the same values.
@Suite struct PrometheusWriterTests {
    @Test func histogramBucketsAreCumulativeWithInfCountAndSum() throws {
        let h = Histogram(bounds: [0.1, 1, 10])
        for v in [0.05, 0.1, 0.5, 2, 20, 30] { h.observe(v) }
        let s = h.snapshot
        #expect(s.cumulative == [2, 3, 4])
        #expect(s.count == 6)
        #expect(abs(s.sum - 52.65) < 1e-9)
        var w = PrometheusWriter()
        w.family("x_seconds", .histogram, help: "A test histogram.")
        w.histogram("x_seconds", s, before: "engine=\"0\"", after: "model_name=\"m\"")
        let fams = try PrometheusParser().parse(w.text)
        #expect(fams.count == 1 && fams[0].type == .histogram && fams[0].help == "A test histogram.")
        let buckets = fams[0].samples.filter { $0.name == "x_seconds_bucket" }
        #expect(buckets.map { $0.label("le") } == ["0.1", "1.0", "10.0", "+Inf"])
        #expect(buckets.map(\.value) == [2, 3, 4, 6])
        // `le` sits between the labels given before and after it (vLLM's order).
        #expect(buckets[0].labels.map(\.name) == ["engine", "le", "model_name"])
        #expect(fams[0].samples.first { $0.name == "x_seconds_count" }?.value == 6)
        #expect(fams[0].samples.first { $0.name == "x_seconds_sum" }.map { abs($0.value - 52.65) < 1e-9 } == true)
    }

    @Test func nanosecondObservationsLandInSecondBuckets() {
        let h = Histogram(bounds: [0.000_001, 0.001])
        h.observe(nanos: 500)        // 0.5 µs
        h.observe(nanos: 2_000)      // 2 µs
        h.observe(nanos: 5_000_000)  // 5 ms
        #expect(h.snapshot.cumulative == [1, 2])
        #expect(h.snapshot.count == 3)
    }

    @Test func labelValuesAreEscapedAndParseBack() throws {
        var w = PrometheusWriter()
        let nasty = "pod \"a\"\\b\nc"
        w.family("switchboard_pod_up", .gauge, help: "Up.")
        w.sample("switchboard_pod_up", labels: PrometheusWriter.labels(["model": "m", "pod": nasty]), 1.0)
        w.single("switchboard_kv_l1_pages", .gauge, help: "Pages.", 42)
        #expect(w.text.contains(#"pod="pod \"a\"\\b\nc""#))
        #expect(w.text.contains("switchboard_kv_l1_pages 42\n"))
        let fams = try PrometheusParser().parse(w.text)
        #expect(fams.first { $0.name == "switchboard_pod_up" }?.samples.first?.label("pod") == nasty)
        #expect(fams.first { $0.name == "switchboard_kv_l1_pages" }?.samples.first?.value == 42)
    }

    @Test func countersAddFromManyThreads() async {
        let c = Counter()
        let h = Histogram(bounds: [1])
        await withTaskGroup(of: Void.self) { g in
            for _ in 0..<8 {
                g.addTask { for _ in 0..<10_000 { c.add(); h.observe(0.5) } }
            }
        }
        #expect(c.value == 80_000)
        #expect(h.snapshot.count == 80_000 && h.snapshot.cumulative == [80_000] && h.snapshot.sum == 40_000)
    }
}

@Suite struct LabelledHistogramTests {
    @Test func seriesRenderAsOneFamilyAndParseBack() throws {
        let h = LabelledHistogram(labelNames: ["model", "status"], bounds: [0.1, 1], maxSeries: 2)
        h.observe(["m", "200"], 0.05)
        h.observe(["m", "200"], 0.5)
        h.observe(["m", "429"], 0.01)
        // Past maxSeries, new label sets are folded into "other", never a new series each.
        h.observe(["m", "500"], 2)
        h.observe(["x", "503"], 2)
        var w = PrometheusWriter()
        w.family("r_seconds", .histogram, help: "Requests.")
        for (labels, s) in h.snapshots { w.histogram("r_seconds", s, before: labels) }
        let fam = try #require(try PrometheusParser().parse(w.text).first)
        let counts = fam.samples.filter { $0.name == "r_seconds_count" }
        #expect(counts.map { "\($0.label("model") ?? "")/\($0.label("status") ?? "")=\(Int($0.value))" }
                == ["m/200=2", "m/429=1", "other/other=2"])
        let ok = fam.samples.filter { $0.name == "r_seconds_bucket" && $0.label("status") == "200" }.map(\.value)
        #expect(ok == [1, 2, 2])
    }
}
