import Foundation
import Metrics
import Synchronization

/// The simulator's Prometheus page: the vLLM V1 (0.32) series a routing or
/// autoscaling component reads, with the real names, label order, HELP
/// strings, bucket bounds and `_created` samples (compare
/// `../shared/data/vllm-metrics/`). Series the simulator has no model for
/// (multimodal cache, external KV transfer, FLOP estimates) are exported at
/// zero, as an engine without those features exports them.
public final class SimMetrics: Sendable {
    static let tokenBuckets: [Double] = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000]
    static let phaseBuckets: [Double] = [0.3, 0.5, 0.8, 1, 1.5, 2, 2.5, 5, 10, 15, 20, 30, 40, 50, 60, 120, 240, 480, 960, 1920, 7680]
    static let tokenTimeBuckets: [Double] = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80]

    struct State {
        var running = 0, waiting = 0
        var kvUsage = 0.0
        var prefixQueries = 0.0, prefixHits = 0.0
        var externalQueries = 0.0, externalHits = 0.0, promptExternal = 0.0
        var preemptions = 0.0
        var promptTokens = 0.0, promptCached = 0.0, generationTokens = 0.0
        var success = 0.0, aborted = 0.0
        let requestPrompt = Histogram(bounds: tokenBuckets), requestGeneration = Histogram(bounds: tokenBuckets)
        let maxGeneration = Histogram(bounds: tokenBuckets), paramsN = Histogram(bounds: [1, 2, 5, 10, 20]), paramsMaxTokens = Histogram(bounds: tokenBuckets)
        let iterationTokens = Histogram(bounds: [1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384])
        let ttft = Histogram(bounds: [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80, 160, 640, 2560])
        let itl = Histogram(bounds: tokenTimeBuckets), tpot = Histogram(bounds: tokenTimeBuckets)
        let e2e = Histogram(bounds: phaseBuckets), queue = Histogram(bounds: phaseBuckets), inference = Histogram(bounds: phaseBuckets)
        let prefill = Histogram(bounds: phaseBuckets), decode = Histogram(bounds: phaseBuckets)
        let requestPreemptions = Histogram(bounds: [1, 2, 3, 4, 5, 10, 20])
        let prefillComputed = Histogram(bounds: tokenBuckets)

        /// What every finished request records, in either timing mode; false when it was aborted.
        mutating func finished(aborted: Bool, prompt: Int, generated: Int, e2e: Double, ttft: Double?) -> Bool {
            if aborted {
                self.aborted += 1
                return false
            }
            success += 1
            requestPrompt.observe(Double(prompt))
            requestGeneration.observe(Double(generated))
            self.e2e.observe(e2e)
            if let t = ttft { self.ttft.observe(t) }
            return true
        }
    }

    private let state = Mutex(State())
    let created = Date().timeIntervalSince1970
    let blockSize: Int
    let numBlocks: Int
    let prefixCaching: Bool

    public init(blockSize: Int = 16, numBlocks: Int = 0, prefixCaching: Bool = true) {
        self.blockSize = blockSize
        self.numBlocks = numBlocks
        self.prefixCaching = prefixCaching
    }

    func setQueues(running: Int, waiting: Int, kvUsage: Double) {
        state.withLock { s in
            s.running = running
            s.waiting = waiting
            s.kvUsage = kvUsage
        }
    }

    func prefixQuery(tokens: Int, hits: Int) {
        state.withLock { s in
            s.prefixQueries += Double(tokens)
            s.prefixHits += Double(hits)
        }
    }

    func promptTokens(total: Int, cached: Int, external: Int = 0) {
        state.withLock { s in
            s.promptTokens += Double(total)
            s.promptCached += Double(cached)
            s.promptExternal += Double(external)
        }
    }

    /// The connector was asked for `tokens` tokens after the local hits and supplied `hits`.
    func externalQuery(tokens: Int, hits: Int) {
        state.withLock { s in
            s.externalQueries += Double(tokens)
            s.externalHits += Double(hits)
        }
    }

    func step(tokens: Int, preemptions: Int) {
        state.withLock { s in
            s.iterationTokens.observe(Double(tokens))
            s.preemptions += Double(preemptions)
        }
    }

    /// One engine step's output: tokens generated (counted as they are made,
    /// as vLLM's per-iteration stats do, so a long stream shows in the token
    /// rate while it runs) and the gaps between consecutive tokens.
    func stepOutput(generated: Int, gaps: [Double]) {
        guard generated > 0 || !gaps.isEmpty else { return }
        state.withLock { s in
            s.generationTokens += Double(generated)
            for g in gaps { s.itl.observe(g) }
        }
    }

    /// A request left the engine. Times are seconds on one clock; a request
    /// that never produced a token has no TTFT, prefill or decode time.
    func requestFinished(aborted: Bool, prompt: Int, generated: Int, maxTokens: Int, arrival: Double,
                         firstScheduled: Double?, firstToken: Double?, end: Double,
                         preemptions: Int, computedPrefill: Int) {
        state.withLock { s in
            guard s.finished(aborted: aborted, prompt: prompt, generated: generated, e2e: end - arrival,
                             ttft: firstToken.map { $0 - arrival }) else { return }
            s.maxGeneration.observe(Double(generated))
            s.paramsN.observe(1)
            s.paramsMaxTokens.observe(Double(maxTokens))
            s.requestPreemptions.observe(Double(preemptions))
            s.prefillComputed.observe(Double(computedPrefill))
            if let sched = firstScheduled {
                s.queue.observe(sched - arrival)
                s.inference.observe(end - sched)
                if let first = firstToken { s.prefill.observe(first - sched) }
            }
            if let first = firstToken {
                s.decode.observe(end - first)
                if generated > 1 { s.tpot.observe((end - first) / Double(generated - 1)) }
            }
        }
    }

    /// The fixed-delay mode's bookkeeping: one call when a request starts and one when it ends.
    func fixedStarted() { state.withLock { $0.running += 1 } }
    func fixedFinished(prompt: Int, generated: Int, aborted: Bool, ttft: Double?, itl: [Double], e2e: Double) {
        state.withLock { s in
            s.running -= 1
            s.promptTokens += Double(prompt)
            s.prefixQueries += Double(prompt)
            for g in itl { s.itl.observe(g) }
            s.generationTokens += Double(generated)
            _ = s.finished(aborted: aborted, prompt: prompt, generated: generated, e2e: e2e, ttft: ttft)
        }
    }

    public func render(model: String) -> String {
        let s = state.withLock { $0 }
        let m = "model_name=\(quoted(model))"
        let c = created
        var w = PrometheusWriter(reserving: 24 * 1024)
        func head(_ name: String, _ help: String, _ kind: PrometheusWriter.Kind) {
            w.family("vllm:\(name)", kind, help: help)
        }
        func gauge(_ name: String, _ help: String, _ v: Double, labels: String = "") {
            head(name, help, .gauge)
            w.sample("vllm:\(name)", labels: "engine=\"0\",\(m)\(labels)", v)
        }
        func createdSample(_ name: String, _ help: String, labels: [String]) {
            head("\(name)_created", help, .gauge)
            for l in labels { w.sample("vllm:\(name)_created", labels: l, c) }
        }
        func counter(_ name: String, _ help: String, _ samples: [(labels: String, value: Double)]) {
            head("\(name)_total", help, .counter)
            for x in samples { w.sample("vllm:\(name)_total", labels: x.labels, x.value) }
            createdSample(name, help, labels: samples.map(\.labels))
        }
        func plain(_ name: String, _ help: String, _ v: Double) {
            counter(name, help, [("engine=\"0\",\(m)", v)])
        }
        func histogram(_ name: String, _ help: String, _ h: Histogram) {
            head(name, help, .histogram)
            w.histogram("vllm:\(name)", h.snapshot, before: "engine=\"0\"", after: m)
            createdSample(name, help, labels: ["engine=\"0\",\(m)"])
        }
        let mfu = "(for Model Flops Utilization calculations)."
        plain("estimated_flops_per_gpu", "Estimated number of floating point operations per GPU \(mfu)", 0)
        plain("estimated_read_bytes_per_gpu", "Estimated number of bytes read from memory per GPU \(mfu)", 0)
        plain("estimated_write_bytes_per_gpu", "Estimated number of bytes written to memory per GPU \(mfu)", 0)
        gauge("num_requests_running", "Number of requests in model execution batches.", Double(s.running))
        gauge("num_requests_waiting", "Number of requests waiting to be processed.", Double(s.waiting))
        head("num_requests_waiting_by_reason", "Number of waiting requests by reason. Reason labels: 'capacity' = waiting for scheduling capacity; 'deferred' = deferred by transient constraints (LoRA budget, KV transfer, blocked status). Sum of all reasons equals vllm:num_requests_waiting.", .gauge)
        w.sample("vllm:num_requests_waiting_by_reason", labels: "engine=\"0\",\(m),reason=\"capacity\"", Double(s.waiting))
        w.sample("vllm:num_requests_waiting_by_reason", labels: "engine=\"0\",\(m),reason=\"deferred\"", 0.0)
        head("engine_sleep_state", "Engine sleep state; awake = 0 means engine is sleeping; awake = 1 means engine is awake; weights_offloaded = 1 means sleep level 1; discard_all = 1 means sleep level 2.", .gauge)
        for (state, v) in [("awake", 1.0), ("weights_offloaded", 0), ("discard_all", 0)] {
            w.sample("vllm:engine_sleep_state", labels: "engine=\"0\",\(m),sleep_state=\"\(state)\"", v)
        }
        gauge("kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", s.kvUsage)
        let queriesHelp = "Prefix cache queries, in terms of number of queried tokens."
        let hitsHelp = "Prefix cache hits, in terms of number of cached tokens."
        plain("prefix_cache_queries", queriesHelp, s.prefixQueries)
        plain("prefix_cache_hits", hitsHelp, s.prefixHits)
        plain("external_prefix_cache_queries", "External prefix cache queries from KV connector cross-instance cache sharing, in terms of number of queried tokens.", s.externalQueries)
        plain("external_prefix_cache_hits", "External prefix cache hits from KV connector cross-instance cache sharing, in terms of number of cached tokens.", s.externalHits)
        plain("mm_cache_queries", "Multi-modal cache queries, in terms of number of queried items.", 0)
        plain("mm_cache_hits", "Multi-modal cache hits, in terms of number of cached items.", 0)
        plain("num_preemptions", "Cumulative number of preemption from the engine.", s.preemptions)
        plain("prompt_tokens", "Number of prefill tokens processed.", s.promptTokens)
        counter("prompt_tokens_by_source", "Number of prompt tokens by source.", [
            ("engine=\"0\",\(m),source=\"local_compute\"", s.promptTokens - s.promptCached),
            ("engine=\"0\",\(m),source=\"local_cache_hit\"", s.promptCached - s.promptExternal),
            ("engine=\"0\",\(m),source=\"external_kv_transfer\"", s.promptExternal),
        ])
        plain("prompt_tokens_cached", "Number of cached prompt tokens (local + external).", s.promptCached)
        counter("prompt_tokens_cached_by_source", "Prefix-cache hit tokens by the cache tier that supplied them: device (local HBM), host (offloaded to DRAM), disk, p2p (transferred from another vLLM instance) or external_unspecified. Counted at admission; sums to vllm:prefix_cache_hits + vllm:external_prefix_cache_hits.",
                ["device", "host", "p2p", "disk", "external_unspecified"].map {
                    ("engine=\"0\",\(m),source=\"\($0)\"", $0 == "device" ? s.promptCached - s.promptExternal : $0 == "external_unspecified" ? s.promptExternal : 0)
                })
        plain("generation_tokens", "Number of generation tokens processed.", s.generationTokens)
        counter("admission_rejections", "Number of admission attempts rejected by a queue limit, by reason.", [
            ("\(m),reason=\"max_num_queued_reqs\"", 0), ("\(m),reason=\"max_num_queued_tokens\"", 0),
        ])
        counter("request_success", "Count of successfully processed requests.", [
            ("engine=\"0\",finished_reason=\"stop\",\(m)", 0),
            ("engine=\"0\",finished_reason=\"length\",\(m)", s.success),
            ("engine=\"0\",finished_reason=\"abort\",\(m)", s.aborted),
            ("engine=\"0\",finished_reason=\"error\",\(m)", 0),
            ("engine=\"0\",finished_reason=\"repetition\",\(m)", 0),
        ])
        histogram("request_prompt_tokens", "Number of prefill tokens processed.", s.requestPrompt)
        histogram("request_generation_tokens", "Number of generation tokens processed.", s.requestGeneration)
        histogram("iteration_tokens_total", "Histogram of number of tokens per engine_step.", s.iterationTokens)
        histogram("request_max_num_generation_tokens", "Histogram of maximum number of requested generation tokens.", s.maxGeneration)
        histogram("request_params_n", "Histogram of the n request parameter.", s.paramsN)
        histogram("request_params_max_tokens", "Histogram of the max_tokens request parameter.", s.paramsMaxTokens)
        histogram("time_to_first_token_seconds", "Histogram of time to first token in seconds.", s.ttft)
        histogram("inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", s.itl)
        histogram("request_time_per_output_token_seconds", "Histogram of time_per_output_token_seconds per request.", s.tpot)
        histogram("e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.", s.e2e)
        histogram("request_queue_time_seconds", "Histogram of time spent in WAITING phase for request.", s.queue)
        histogram("request_inference_time_seconds", "Histogram of time spent in RUNNING phase for request.", s.inference)
        histogram("request_prefill_time_seconds", "Histogram of time spent in PREFILL phase for request.", s.prefill)
        histogram("request_decode_time_seconds", "Histogram of time spent in DECODE phase for request.", s.decode)
        histogram("request_num_preemptions", "Histogram of the number of times a request was preempted.", s.requestPreemptions)
        histogram("request_prefill_kv_computed_tokens", "Histogram of new KV tokens computed during prefill (excluding cached tokens).", s.prefillComputed)
        head("cache_config_info", "Information of the LLMEngine CacheConfig", .gauge)
        // Every label vLLM 0.32 puts on this info series, in its order; the
        // values the simulator models are its own, the rest as an engine with
        // those features off reports them.
        let blocks = "\(numBlocks)", size = "\(blockSize)"
        let info: [(String, String)] = [
            ("_block_size_resolved", "True"), ("block_size", size), ("cache_dtype", "auto"),
            ("cache_hit_alignment_tokens", "None"), ("effective_attention_block_size", size),
            ("enable_mamba_shared_prefix_checkpoint", "False"), ("enable_prefix_caching", prefixCaching ? "True" : "False"),
            ("engine", "0"), ("gpu_memory_utilization", "0.92"), ("hash_block_size", "None"), ("is_attention_free", "False"),
            ("kv_cache_dtype_skip_layers", "[]"), ("kv_cache_layout", "None"), ("kv_cache_max_concurrency", "1.0"),
            ("kv_cache_memory_bytes", "None"), ("kv_cache_size_tokens", "\(numBlocks * blockSize)"),
            ("kv_offloading_backend", "native"), ("kv_offloading_size", "None"), ("kv_sharing_fast_prefill", "False"),
            ("mamba_block_size", "None"), ("mamba_cache_dtype", "auto"), ("mamba_cache_mode", "none"),
            ("mamba_page_size_padded", "None"), ("mamba_ssm_cache_dtype", "auto"), ("num_cpu_blocks", "None"),
            ("num_gpu_blocks", blocks), ("num_gpu_blocks_override", "None"), ("prefix_cache_retention_interval", "0"),
            ("prefix_caching_hash_algo", "sha256"), ("prefix_match_unit", "None"), ("replayssm_buffer_len", "16"),
            ("skip_page_size_padded", "None"), ("sliding_window", "None"), ("swa_bounded_replay", "True"),
            ("use_kda_recoverssm", "False"), ("use_replayssm", "False"), ("user_specified_block_size", "False"),
        ]
        w.sample("vllm:cache_config_info", labels: PrometheusWriter.labels(info), 1.0)
        return w.text
    }

    private func quoted(_ s: String) -> String {
        "\"" + PrometheusWriter.escape(s) + "\""
    }
}
