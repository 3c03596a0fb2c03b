import Foundation
import Testing
@testable import VLLMSim

/// Drives an engine to idle, collecting what it emitted; returns the step reports.
@discardableResult
func drain(_ e: EngineModel, emitted: inout [EngineEmission], now: inout Double, maxSteps: Int = 100_000) -> [EngineStepReport] {
    var reports: [EngineStepReport] = []
    while let r = e.beginStep(now: now), reports.count < maxSteps {
        now += r.seconds
        emitted += e.finishStep(now: now)
        reports.append(r)
    }
    return reports
}

func words(_ n: Int, from seed: Int) -> String {
    (0..<n).map { "w\(seed)_\($0)" }.joined(separator: " ")
}

func smallEngine(blocks: Int = 1000, blockSize: Int = 16, seqs: Int = 64, batched: Int = 8192, caching: Bool = true,
                 metrics: SimMetrics? = nil, seed: UInt64 = 0) -> EngineModel {
    var c = EngineConfiguration(profile: .h100Llama3_8B)
    c.numBlocks = blocks
    c.blockSize = blockSize
    c.maxNumSeqs = seqs
    c.maxNumBatchedTokens = batched
    c.enablePrefixCaching = caching
    return EngineModel(configuration: c, seed: seed, metrics: metrics)
}

@Suite struct EngineModelTests {
    @Test func tokenizerSharesLeadingTokensForSharedLeadingText() {
        let a = SimTokenizer.chat([("system", "you are terse"), ("user", "alpha beta gamma")])
        let b = SimTokenizer.chat([("system", "you are terse"), ("user", "alpha beta delta epsilon")])
        #expect(a.count == 1 + 5 + 5 + 1)
        #expect(Array(a.prefix(9)) == Array(b.prefix(9)))
        #expect(a[9] != b[9])
        #expect(SimTokenizer.prompt("  one\ttwo\nthree ") == [1] + ["one", "two", "three"].map { SimTokenizer.id(ofWord: $0.utf8) })
    }

    @Test func cachedPrefixMeansShorterPrefill() {
        let shared = words(960, from: 1)
        let first = SimTokenizer.prompt(shared + " " + words(40, from: 2))
        let second = SimTokenizer.prompt(shared + " " + words(40, from: 3))
        func prefillOfSecond(caching: Bool) -> (tokens: Int, seconds: Double) {
            let e = smallEngine(caching: caching)
            var now = 0.0
            var out: [EngineEmission] = []
            _ = e.submit(prompt: first, maxTokens: 2, now: now)
            drain(e, emitted: &out, now: &now)
            _ = e.submit(prompt: second, maxTokens: 2, now: now)
            let r = e.beginStep(now: now)!
            return (r.prefillTokens, r.seconds)
        }
        let cold = prefillOfSecond(caching: false)
        let warm = prefillOfSecond(caching: true)
        #expect(cold.tokens == second.count)
        // 961 shared tokens (BOS + 960 words) = 60 full blocks of 16.
        #expect(warm.tokens == second.count - 60 * 16)
        #expect(warm.seconds < cold.seconds / 3)
    }

    @Test func fullHitStillComputesTheLastToken() {
        let e = smallEngine()
        let p = SimTokenizer.prompt(words(63, from: 4))  // 64 tokens = exactly 4 blocks
        var now = 0.0
        var out: [EngineEmission] = []
        _ = e.submit(prompt: p, maxTokens: 1, now: now)
        drain(e, emitted: &out, now: &now)
        _ = e.submit(prompt: p, maxTokens: 1, now: now)
        #expect(e.beginStep(now: now)!.prefillTokens == 16)  // 3 blocks hit, the last block recomputed
    }

    @Test func chunkedPrefillAndBatchLimits() {
        let e = smallEngine(seqs: 2, batched: 1024)
        var now = 0.0
        let long = e.submit(prompt: SimTokenizer.prompt(words(2999, from: 5)), maxTokens: 3, now: now)
        _ = e.submit(prompt: SimTokenizer.prompt(words(10, from: 6)), maxTokens: 3, now: now)
        _ = e.submit(prompt: SimTokenizer.prompt(words(10, from: 7)), maxTokens: 3, now: now)
        var firstTokenStep: [Int: Int] = [:]
        var step = 0
        while let r = e.beginStep(now: now) {
            #expect(r.scheduledTokens <= 1024)
            #expect(e.numRunning <= 2)
            now += r.seconds
            for x in e.finishStep(now: now) where firstTokenStep[x.request] == nil { firstTokenStep[x.request] = step }
            step += 1
        }
        // 3000 prompt tokens in chunks of at most 1024: the first token comes in the third step.
        #expect(firstTokenStep[long] == 2)
        #expect(firstTokenStep.count == 3)
    }

    @Test func kvExhaustionPreemptsAndEveryRequestStillCompletes() {
        let metrics = SimMetrics(blockSize: 16, numBlocks: 12)
        let e = smallEngine(blocks: 12, metrics: metrics)
        var now = 0.0
        var ids: [Int] = []
        for i in 0..<3 { ids.append(e.submit(prompt: SimTokenizer.prompt(words(40, from: 10 + i)), maxTokens: 60, now: now)) }
        var out: [EngineEmission] = []
        let reports = drain(e, emitted: &out, now: &now)
        #expect(e.totalPreemptions > 0)
        #expect(reports.contains { !$0.preempted.isEmpty })
        for id in ids {
            #expect(out.filter { $0.request == id }.count == 60)
            #expect(out.last { $0.request == id }?.finished == true)
        }
        #expect(e.isIdle && e.kvUsage == 0)
        let page = PromPage(metrics.render(model: "m"))
        #expect(page["vllm:num_preemptions_total"] == Double(e.totalPreemptions))
        #expect(page["vllm:request_num_preemptions_sum"] == Double(e.totalPreemptions))
    }

    @Test func deterministicForASeed() {
        func run(seed: UInt64) -> [EngineEmission] {
            let e = smallEngine(blocks: 40, seed: seed)
            var now = 0.0
            var out: [EngineEmission] = []
            for i in 0..<6 { _ = e.submit(prompt: SimTokenizer.prompt(words(50 + 7 * i, from: i % 2)), maxTokens: 20 + i, now: now) }
            drain(e, emitted: &out, now: &now)
            return out
        }
        #expect(run(seed: 7) == run(seed: 7))
        #expect(run(seed: 7).map(\.word) != run(seed: 8).map(\.word))
    }

    @Test func abortFreesBlocks() {
        let e = smallEngine()
        var now = 0.0
        let id = e.submit(prompt: SimTokenizer.prompt(words(100, from: 20)), maxTokens: 50, now: now)
        let r = e.beginStep(now: now)!
        e.abort(id, now: now)              // during the step: freed when it ends
        now += r.seconds
        #expect(e.finishStep(now: now).isEmpty)
        #expect(e.isIdle && e.kvUsage == 0)
    }

    @Test func metricsHaveTheRealNamesAndMoveAsInTheRealCapture() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        let real = try String(contentsOf: root.appendingPathComponent("PodMetricsTests/Inputs/vllm-0.32-cpu.idle-after-load.metrics.txt"), encoding: .utf8)
        let metrics = SimMetrics(blockSize: 16, numBlocks: 200)
        let e = smallEngine(blocks: 200, metrics: metrics)
        var now = 0.0
        var out: [EngineEmission] = []
        let shared = words(300, from: 30)
        for i in 0..<12 {
            _ = e.submit(prompt: SimTokenizer.prompt(shared + " " + words(20 + i, from: 40 + i)), maxTokens: 10 + i, now: now)
            if i % 3 == 2 { drain(e, emitted: &out, now: &now) }
        }
        drain(e, emitted: &out, now: &now)
        let sim = metrics.render(model: "tiny")
        // Same metric families, same TYPE lines.
        func families(_ page: String) -> Set<String> {
            Set(page.split(separator: "\n").filter { $0.hasPrefix("# TYPE vllm:") }.map(String.init))
        }
        #expect(families(sim) == families(real))
        // The relations that hold between the real engine's counters hold here too.
        for text in [real, sim] {
            let p = PromPage(text)
            let prompt = p["vllm:prompt_tokens_total"]!, hits = p["vllm:prefix_cache_hits_total"]!
            let success = p.sum("vllm:request_success_total")
            #expect(p["vllm:prefix_cache_queries_total"] == prompt)
            #expect(p["vllm:prompt_tokens_cached_total"] == hits)
            #expect(p.sum("vllm:prompt_tokens_by_source_total") == prompt)
            #expect(p["vllm:request_prefill_kv_computed_tokens_sum"] == prompt - hits)
            #expect(p["vllm:request_generation_tokens_sum"] == p["vllm:generation_tokens_total"])
            #expect(p["vllm:time_to_first_token_seconds_count"] == success)
            #expect(p["vllm:inter_token_latency_seconds_count"] == p["vllm:generation_tokens_total"]! - success)
            #expect(p["vllm:num_requests_running"] == 0 && p["vllm:kv_cache_usage_perc"] == 0)
            #expect(hits > 0 && hits < prompt)
        }
        let p = PromPage(sim)
        #expect(p.sum("vllm:request_success_total") == 12)
        #expect(p["vllm:iteration_tokens_total_sum"] == p["vllm:prompt_tokens_total"]! - p["vllm:prefix_cache_hits_total"]! + p["vllm:generation_tokens_total"]! - 12)
    }
}

extension EngineModelTests {
    /// Random arrivals, aborts, shared prefixes and a small cache: every
    /// request that is not aborted gets exactly its tokens, and the cache is
    /// empty (but for cached free blocks) when the engine goes idle.
    @Test(arguments: [1, 2, 3, 4, 5])
    func randomWorkloadsKeepTheInvariants(seed: UInt64) {
        var rng = SplitMix(seed)
        let e = smallEngine(blocks: 24 + Int(rng.next() % 40), seqs: 1 + Int(rng.next() % 8), batched: 16 + Int(rng.next() % 300))
        var now = 0.0
        var want: [Int: Int] = [:], got: [Int: Int] = [:], finished: Set<Int> = []
        var aborted: Set<Int> = []
        for step in 0..<400 {
            if rng.next() % 3 == 0 {
                let maxTokens = 1 + Int(rng.next() % 40)
                let shared = words(Int(rng.next() % 60), from: Int(rng.next() % 3))
                let prompt = SimTokenizer.prompt(shared + " " + words(1 + Int(rng.next() % 50), from: 100 + step))
                if prompt.count + maxTokens <= e.configuration.kvTokens {
                    want[e.submit(prompt: prompt, maxTokens: maxTokens, now: now)] = maxTokens
                }
            }
            if rng.next() % 17 == 0, let victim = want.keys.filter({ !finished.contains($0) && !aborted.contains($0) }).randomElement(using: &rng) {
                e.abort(victim, now: now)
                aborted.insert(victim)
            }
            if let r = e.beginStep(now: now) {
                now += r.seconds
                for x in e.finishStep(now: now) {
                    got[x.request, default: 0] += 1
                    if x.finished { finished.insert(x.request) }
                }
            }
        }
        var out: [EngineEmission] = []
        drain(e, emitted: &out, now: &now)
        for x in out {
            got[x.request, default: 0] += 1
            if x.finished { finished.insert(x.request) }
        }
        for (id, n) in want where !aborted.contains(id) {
            #expect(got[id] == n && finished.contains(id), "request \(id): \(got[id] ?? 0) of \(n) tokens")
        }
        #expect(e.isIdle && e.kvUsage == 0)
    }
}

/// SplitMix64 over the simulator's own finalizer (`mix`).
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(_ seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        defer { state &+= 0x9E37_79B9_7F4A_7C15 }
        return mix(state)
    }
}

/// Samples of a Prometheus page by full series text, with per-name sums.
struct PromPage {
    var samples: [(name: String, series: String, value: Double)] = []
    init(_ text: String) {
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let sp = line.lastIndex(of: " "), let v = Double(line[line.index(after: sp)...]) else { continue }
            let series = String(line[..<sp])
            let name = series.split(separator: "{", maxSplits: 1).first.map(String.init) ?? series
            samples.append((name, series, v))
        }
    }
    /// The value of the single sample called `name`.
    subscript(_ name: String) -> Double? {
        let m = samples.filter { $0.name == name }
        return m.count == 1 ? m[0].value : nil
    }
    func sum(_ name: String) -> Double { samples.filter { $0.name == name }.reduce(0) { $0 + $1.value } }
}
