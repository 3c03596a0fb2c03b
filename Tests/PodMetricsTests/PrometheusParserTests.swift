import Foundation
@testable import PodMetrics
import Testing

func capture() throws -> [UInt8] {
    let url = try #require(Bundle.module.url(forResource: "Inputs/vllm-0.32-cpu.idle-after-load.metrics", withExtension: "txt"))
    return Array(try Data(contentsOf: url))
}

@Suite struct PrometheusParserTests {
    @Test func parsesTheRealVLLMCapture() throws {
        let families = try PrometheusParser().parse(capture())
        let byName = Dictionary(families.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        let running = try #require(byName["vllm:num_requests_running"])
        #expect(running.type == .gauge)
        #expect(running.samples.first?.labels == [PrometheusLabel("engine", "0"), PrometheusLabel("model_name", "tiny")])
        let ttft = try #require(byName["vllm:time_to_first_token_seconds"])
        #expect(ttft.type == .histogram)
        #expect(ttft.samples.contains { $0.name == "vllm:time_to_first_token_seconds_bucket" && $0.label("le") == "+Inf" && $0.value == 54 })
        #expect(ttft.samples.contains { $0.name == "vllm:time_to_first_token_seconds_count" && $0.value == 54 })
        #expect(byName["vllm:prefix_cache_hits_total"]?.type == .counter)
        #expect(byName["vllm:prefix_cache_hits_created"]?.type == .gauge)
        #expect(families.reduce(0) { $0 + $1.samples.count } > 400)
    }

    @Test func vllmExtractionFromTheCapture() throws {
        let page = try PrometheusParser(keep: VLLMMetrics.keep).parse(capture())
        let tiny = try #require(VLLMMetrics.extract(page)["tiny"])
        #expect(tiny.running == 0 && tiny.waiting == 0 && tiny.kvCacheUsage == 0)
        #expect(tiny.prefixCacheQueries == 13959 && tiny.prefixCacheHits == 7040)
        #expect(tiny.promptTokens == 13959 && tiny.generationTokens == 2436)
        let ttft = try #require(tiny.timeToFirstToken)
        #expect(ttft.count == 54 && abs(ttft.sum - 1.316335916519165) < 1e-12)
        #expect(ttft.bounds.last == .infinity && ttft.cumulative.last == 54)
        #expect(tiny.timePerOutputToken != nil && tiny.queueTime != nil)
        // cache_config_info (engine-wide, no model_name): 64 blocks of 128 tokens, given to the model.
        #expect(tiny.kvCapacityTokens == 8192 && tiny.blockSize == 128)
        #expect(VLLMMetrics.extract(page)[""] == nil)
        #expect(tiny.prefillTime?.count == 54 && tiny.prefillComputedTokens?.sum == 6919)
    }

    @Test func keepSkipsEverythingElse() throws {
        let page = try PrometheusParser(keep: ["vllm:num_requests_running"]).parse(capture())
        #expect(page.map(\.name) == ["vllm:num_requests_running"])
    }

    @Test func keptFamiliesParseLikeTheFullParser() throws {
        let keep: Set<String> = ["vllm:time_to_first_token_seconds", "vllm:num_requests_running", "vllm:request_success_total",
                                 "msdos"]
        let full = try PrometheusParser().parse(capture())
        let kept = try PrometheusParser(keep: keep).parse(capture())
        #expect(Set(kept.map(\.name)) == keep.subtracting(["msdos"]))
        for f in kept {
            let same = try #require(full.first { $0.name == f.name })
            #expect(f.type == same.type)
            #expect(f.samples == same.samples)
        }
        let escaped = try PrometheusParser(keep: ["msdos"]).parse(#"msdos{path="C:\\DIR",e="a\"b\nc"} 1 -5"#)
        #expect(escaped.first?.samples.first == PrometheusSample(name: "msdos", labels: [
            PrometheusLabel("path", #"C:\DIR"#), PrometheusLabel("e", "a\"b\nc")], value: 1, timestampMillis: -5))
    }

    @Test func exposureFormatDetails() throws {
        let text = #"""
        # HELP http_requests_total The total.\nSecond line with \\ backslash.
        # TYPE http_requests_total counter
        http_requests_total{method="post",code="200"} 1027 1395066363000
        http_requests_total{method="post",code="400"}    3 1395066363000

        # A plain comment
        msdos_file_access_time_seconds{path="C:\\DIR\\FILE.TXT",error="Cannot find file:\n\"FILE.TXT\""} 1.458255915e9
        metric_without_timestamp_and_labels 12.47
        something_weird{problem="division by zero"} +Inf -3982045
        nan_metric NaN
        neg_inf -Inf
        # TYPE rpc_duration_seconds summary
        rpc_duration_seconds{quantile="0.5"} 4773
        rpc_duration_seconds_sum 1.7560473e+07
        rpc_duration_seconds_count 2693
        trailing_comma{a="1",} 1
        """#
        let f = try PrometheusParser().parse(text)
        let req = try #require(f.first)
        #expect(req.help == "The total.\nSecond line with \\ backslash.")
        #expect(req.samples[1] == PrometheusSample(name: "http_requests_total",
                                                   labels: [PrometheusLabel("method", "post"), PrometheusLabel("code", "400")],
                                                   value: 3, timestampMillis: 1395066363000))
        let ms = try #require(f.first { $0.name == "msdos_file_access_time_seconds" }?.samples.first)
        #expect(ms.label("path") == #"C:\DIR\FILE.TXT"#)
        #expect(ms.label("error") == "Cannot find file:\n\"FILE.TXT\"")
        #expect(f.first { $0.name == "something_weird" }?.samples.first?.value == .infinity)
        #expect(f.first { $0.name == "something_weird" }?.samples.first?.timestampMillis == -3982045)
        #expect(f.first { $0.name == "nan_metric" }?.samples.first?.value.isNaN == true)
        #expect(f.first { $0.name == "neg_inf" }?.samples.first?.value == -.infinity)
        let rpc = try #require(f.first { $0.name == "rpc_duration_seconds" })
        #expect(rpc.type == .summary && rpc.samples.count == 3)
        #expect(f.first { $0.name == "trailing_comma" }?.samples.first?.labels == [PrometheusLabel("a", "1")])
    }

    @Test(arguments: [
        ("metric_only", "expected a space"),
        ("m{a=\"1\"", "unterminated"),
        ("m{a=\"1} 3", "unterminated label value"),
        ("m{a=1} 3", "quoted"),
        ("m{a=\"\\q\"} 3", "invalid escape"),
        ("m 1 2 3", "after the timestamp"),
        ("m one", "invalid value"),
        ("m 1 notatime", "invalid timestamp"),
        ("# TYPE m bogus", "unknown metric type"),
        ("{a=\"1\"} 3", "expected a metric name"),
        ("m{=\"1\"} 3", "expected a label name"),
        ("# HELP m bad \\x escape", "invalid escape"),
    ])
    func malformedInputIsAClearError(_ text: String, _ why: String) {
        do {
            _ = try PrometheusParser().parse(text)
            Issue.record("accepted \(text)")
        } catch {
            #expect(error.line == 1)
            #expect(error.reason.contains(why), "\(error.reason)")
        }
    }

    @Test func hugeLabelSetsAndValuesAreBounded() {
        let many = (0..<100).map { "l\($0)=\"v\"" }.joined(separator: ",")
        #expect(throws: PrometheusParseError.self) { try PrometheusParser().parse("m{\(many)} 1") }
        let long = String(repeating: "x", count: 10_000)
        #expect(throws: PrometheusParseError.self) { try PrometheusParser().parse("m{a=\"\(long)\"} 1") }
        var limits = PrometheusLimits()
        limits.maxSamples = 3
        #expect(throws: PrometheusParseError.self) { try PrometheusParser(limits: limits).parse("a 1\nb 1\nc 1\nd 1") }
    }

    @Test func truncatedPagesFailOnTheBrokenLine() throws {
        let page = try capture()
        // Cut at every 211th byte offset: never a crash, either a clean parse
        // (cut at a line end) or an error naming a line.
        var i = 0
        while i < page.count {
            do {
                _ = try PrometheusParser().parse(Array(page[0..<i]))
            } catch {
                #expect(error.line > 0)
            }
            i += 211
        }
    }
}

@Suite struct MetricsWindowTests {
    func sample(queries: Double, hits: Double, gen: Double, ttft: [Double], sum: Double) -> [String: VLLMEngineSample] {
        var s = VLLMEngineSample()
        s.running = 2
        s.prefixCacheQueries = queries
        s.prefixCacheHits = hits
        s.generationTokens = gen
        s.timeToFirstToken = CumulativeHistogram(bounds: [0.1, 0.5, .infinity], cumulative: ttft, sum: sum, count: ttft.last!)
        return ["m": s]
    }

    @Test func deltasOverTheWindowNotSinceStart() throws {
        var w = MetricsWindow(windowNanos: 10_000_000_000)
        // 1000 requests before the window with slow TTFT, then 10 fast ones inside it.
        w.add(sample(queries: 1000, hits: 0, gen: 5000, ttft: [0, 0, 1000], sum: 2000), at: 1_000_000_000)
        let one = try #require(w.current()["m"])
        #expect(one.ttftMean == nil && one.prefixCacheHitRate == nil)  // one scrape: no rates yet
        #expect(one.running == 2)
        w.add(sample(queries: 1100, hits: 80, gen: 5200, ttft: [10, 10, 1010], sum: 2000.5), at: 3_000_000_000)
        let m = try #require(w.current()["m"])
        #expect(m.prefixCacheHitRate == 0.8)
        #expect(m.generationTokensPerSecond == 100)
        #expect(abs((m.ttftMean ?? 0) - 0.05) < 1e-9)
        #expect(m.ttftP90 != nil && m.ttftP90! <= 0.1)
        #expect(m.requestsInWindow == 10)
        #expect(m.scrapedAtNanos == 3_000_000_000)
    }

    @Test func counterResetCountsFromZero() throws {
        var w = MetricsWindow(windowNanos: 10_000_000_000)
        w.add(sample(queries: 1000, hits: 500, gen: 5000, ttft: [1, 1, 1], sum: 1), at: 1_000_000_000)
        w.add(sample(queries: 40, hits: 10, gen: 100, ttft: [0, 2, 2], sum: 0.4), at: 2_000_000_000)  // engine restarted
        let m = try #require(w.current()["m"])
        #expect(m.prefixCacheHitRate == 0.25)
        #expect(m.generationTokensPerSecond == 100)
        #expect(m.ttftMean == 0.2)
    }

    @Test func oldSamplesLeaveTheWindow() throws {
        var w = MetricsWindow(windowNanos: 2_000_000_000)
        for t in 0..<10 {
            w.add(sample(queries: Double(t * 100), hits: Double(t * 10), gen: 0, ttft: [0, 0, 0], sum: 0), at: UInt64(t) * 1_000_000_000)
        }
        #expect(w.current()["m"]?.prefixCacheHitRate == 0.1)
    }

    @Test func quantileInterpolates() {
        let h = CumulativeHistogram(bounds: [1, 2, .infinity], cumulative: [0, 10, 10], sum: 15, count: 10)
        #expect(h.quantile(0.5) == 1.5)
        #expect(h.mean == 1.5)
        #expect(CumulativeHistogram(bounds: [1], cumulative: [0], sum: 0, count: 0).quantile(0.5) == nil)
    }
}

@Suite struct ScrapeTargetStateMachineTests {
    @Test func staleAfterNFailuresOrOldData() {
        var sm = ScrapeTargetStateMachine(failureThreshold: 3, maxAgeNanos: 1_000)
        #expect(sm.health(now: 0) == .unknown)
        sm.succeeded(at: 100)
        #expect(sm.health(now: 500) == .fresh)
        #expect(sm.health(now: 1_101) != .fresh)  // too old, even without failures
        sm.failed(at: 600, error: "connection refused")
        sm.failed(at: 700, error: "connection refused")
        #expect(sm.health(now: 700) == .fresh)
        sm.failed(at: 800, error: "connection refused")
        guard case .stale(let why) = sm.health(now: 800) else { Issue.record("expected stale"); return }
        #expect(why.contains("3 scrapes failed") && why.contains("connection refused"))
        sm.succeeded(at: 900)
        #expect(sm.health(now: 900) == .fresh)
        var never = ScrapeTargetStateMachine(failureThreshold: 3, maxAgeNanos: 1_000)
        never.failed(at: 1, error: "timeout")
        #expect(never.health(now: 1) != .fresh && never.health(now: 1) != .unknown)
    }
}

@Suite struct VLLMScrapeDecoderTests {
    @Test func agreesWithParseAndExtractOnTheRealCapture() throws {
        let page = try capture()
        let slow = VLLMMetrics.extract(try PrometheusParser(keep: VLLMMetrics.keep).parse(page))
        let fast = try VLLMScrapeDecoder().decode(page)
        #expect(fast == slow, "\(fast)\n---\n\(slow)")
        #expect(slow["tiny"]?.timeToFirstToken?.count == 54)
        #expect(fast["tiny"]?.kvCapacityTokens == 8192 && fast[""] == nil)
    }

    @Test(arguments: [
        // V0 names: gpu_cache_usage_perc, counters without a TYPE on _total, time_per_output_token_seconds.
        """
        vllm:num_requests_running{model_name="a"} 2
        vllm:num_requests_running{model_name="b"} 5
        vllm:gpu_cache_usage_perc{model_name="a"} 0.25
        vllm:prompt_tokens_total{model_name="a"} 100
        vllm:time_per_output_token_seconds_bucket{model_name="a",le="0.1"} 1
        vllm:time_per_output_token_seconds_bucket{model_name="a",le="+Inf"} 2
        vllm:time_per_output_token_seconds_sum{model_name="a"} 0.5
        vllm:time_per_output_token_seconds_count{model_name="a"} 2
        """,
        // Both KV names (V1 wins), two engines of one model (gauges add up, KV averages), _created ignored.
        """
        # TYPE vllm:kv_cache_usage_perc gauge
        vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.5
        vllm:kv_cache_usage_perc{engine="1",model_name="m"} 0.7
        vllm:gpu_cache_usage_perc{model_name="m"} 0.9
        vllm:num_requests_waiting{engine="0",model_name="m"} 1
        vllm:num_requests_waiting{engine="1",model_name="m"} 2
        # TYPE vllm:prefix_cache_hits_total counter
        vllm:prefix_cache_hits_total{engine="0",model_name="m"} 10
        vllm:prefix_cache_hits_total{engine="1",model_name="m"} 5
        # TYPE vllm:prefix_cache_hits_created gauge
        vllm:prefix_cache_hits_created{engine="0",model_name="m"} 1.7e9
        python_gc_objects_collected_total{generation="0"} 100
        """,
        // Found by scripts/fuzz prometheus: the V1 KV name on one model must not hide another model's V0 name.
        """
        vllm:kv_cache_usage_perc{engine="0",model_name="tiny"} 0.0
        vllm:gpu_cache_usage_perc{model_name="a"} 0.25
        """,
        // Found by scripts/fuzz prometheus: the first cache_config_info sample is the config,
        // even when it lacks num_gpu_blocks and a later one has it.
        """
        vllm:cache_config_info{block_size="16"} 1
        vllm:num_requests_running{model_name="c"} 1
        vllm:cache_config_info{block_size="16",num_gpu_blocks="64"} 1
        """,
        // Found by scripts/fuzz prometheus: a _bucket or _count sample on a counter's name is not the counter.
        """
        vllm:num_preemptions_bucket{le="2.0",model_name="d"} 54
        vllm:num_preemptions_count{model_name="d"} 3
        vllm:num_preemptions_total{model_name="d"} 7
        vllm:num_requests_running{model_name="d"} 1
        """,
        // Found reviewing the fix above: a stray suffix on the V1 KV name does not make a model V1.
        """
        vllm:kv_cache_usage_perc_count{model_name="e"} 1
        vllm:gpu_cache_usage_perc{model_name="e"} 0.5
        """,
    ])
    func agreesOnOlderAndMultiEnginePages(_ text: String) throws {
        let page = Array(text.utf8)
        let slow = VLLMMetrics.extract(try PrometheusParser(keep: VLLMMetrics.keep).parse(page))
        let fast = try VLLMScrapeDecoder().decode(page)
        #expect(fast == slow)
        if let tiny = fast["tiny"] {
            #expect(tiny.kvCacheUsage == 0 && fast["a"]?.kvCacheUsage == 0.25)
        } else if let m = fast["m"] {
            #expect(m.kvCacheUsage.map { abs($0 - 0.6) < 1e-9 } == true)
            #expect(m.waiting == 3 && m.prefixCacheHits == 15)
        } else if let e = fast["e"] {
            #expect(e.kvCacheUsage == 0.5)
        } else if let d = fast["d"] {
            #expect(d.preemptions == 7 && d.running == 1)
        } else if let c = fast["c"] {
            #expect(c.kvCapacityTokens == nil && c.running == 1)
        } else {
            #expect(fast["a"]?.kvCacheUsage == 0.25 && fast["b"]?.running == 5)
            #expect(fast["a"]?.timePerOutputToken?.mean == 0.25)
        }
    }

    @Test func malformedKeptLinesAreErrors() {
        #expect(throws: PrometheusParseError.self) {
            try VLLMScrapeDecoder().decode(Array("vllm:num_requests_running{model_name=\"m\" 1\n".utf8))
        }
        #expect(throws: PrometheusParseError.self) {
            try VLLMScrapeDecoder().decode(Array("vllm:num_requests_running{model_name=\"m\"} x\n".utf8))
        }
    }
}
