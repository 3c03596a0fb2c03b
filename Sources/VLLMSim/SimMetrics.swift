import Synchronization

/// The simulator's Prometheus page, with vLLM V1 metric names and labels
/// (`engine`, `model_name`), as a real vLLM 0.32 server exports them.
final class SimMetrics: Sendable {
    private struct State {
        var running = 0
        var promptTokens = 0
        var generationTokens = 0
        var success = 0
        var aborted = 0
        var ttft = Histogram(bounds: [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80, 160, 640, 2560])
        var e2e = Histogram(bounds: [0.3, 0.5, 0.8, 1, 1.5, 2, 2.5, 5, 10, 15, 20, 30, 40, 50, 60, 120, 240, 480, 960, 1920, 7680])
    }

    struct Histogram {
        let bounds: [Double]
        var counts: [Int]
        var sum = 0.0
        var count = 0
        init(bounds: [Double]) {
            self.bounds = bounds
            counts = Array(repeating: 0, count: bounds.count)
        }
        mutating func observe(_ v: Double) {
            for (i, b) in bounds.enumerated() where v <= b { counts[i] += 1 }
            sum += v
            count += 1
        }
    }

    private let state = Mutex(State())

    func requestStarted() { state.withLock { $0.running += 1 } }

    func requestFinished(prompt: Int, generated: Int, aborted: Bool, ttft: Double?, e2e: Double) {
        state.withLock { s in
            s.running -= 1
            s.promptTokens += prompt
            s.generationTokens += generated
            if aborted { s.aborted += 1 } else { s.success += 1 }
            if let t = ttft { s.ttft.observe(t) }
            s.e2e.observe(e2e)
        }
    }

    func render(models: [String]) -> String {
        let s = state.withLock { $0 }
        let model = models.first ?? "unknown"
        let l = #"engine="0",model_name="\#(model)""#
        var out = ""
        func gauge(_ name: String, _ help: String, _ v: Double) {
            out += "# HELP vllm:\(name) \(help)\n# TYPE vllm:\(name) gauge\nvllm:\(name){\(l)} \(v)\n"
        }
        func counter(_ name: String, _ help: String, _ v: Double, extra: String = "") {
            out += "# HELP vllm:\(name)_total \(help)\n# TYPE vllm:\(name)_total counter\nvllm:\(name)_total{\(l)\(extra)} \(v)\n"
        }
        func histogram(_ name: String, _ help: String, _ h: Histogram) {
            out += "# HELP vllm:\(name) \(help)\n# TYPE vllm:\(name) histogram\n"
            for (i, b) in h.bounds.enumerated() { out += "vllm:\(name)_bucket{\(l),le=\"\(b)\"} \(Double(h.counts[i]))\n" }
            out += "vllm:\(name)_bucket{\(l),le=\"+Inf\"} \(Double(h.count))\n"
            out += "vllm:\(name)_count{\(l)} \(Double(h.count))\nvllm:\(name)_sum{\(l)} \(h.sum)\n"
        }
        gauge("num_requests_running", "Number of requests in model execution batches.", Double(s.running))
        gauge("num_requests_waiting", "Number of requests waiting to be processed.", 0)
        gauge("kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", min(1, Double(s.running) * 0.01))
        counter("prefix_cache_queries", "Prefix cache queries, in terms of number of queried tokens.", Double(s.promptTokens))
        counter("prefix_cache_hits", "Prefix cache hits, in terms of number of cached tokens.", 0)
        counter("prompt_tokens", "Number of prefill tokens processed.", Double(s.promptTokens))
        counter("generation_tokens", "Number of generation tokens processed.", Double(s.generationTokens))
        out += "# HELP vllm:request_success_total Count of successfully processed requests.\n# TYPE vllm:request_success_total counter\n"
        out += "vllm:request_success_total{\(l),finished_reason=\"length\"} \(Double(s.success))\n"
        out += "vllm:request_success_total{\(l),finished_reason=\"abort\"} \(Double(s.aborted))\n"
        histogram("time_to_first_token_seconds", "Histogram of time to first token in seconds.", s.ttft)
        histogram("e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.", s.e2e)
        return out
    }
}
