import ArgumentParser
import CommandOptions
import VLLMSim

@main
struct VLLMSimCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vllm-sim",
        abstract: "Simulated vLLM OpenAI servers for routing studies on one machine.",
        discussion: """
        Each --listen address is one simulated pod with its own engine, KV cache and metrics. Pods \
        answer /v1/chat/completions, /v1/completions (streaming or not), /v1/models, /health and \
        /metrics with vLLM's real shapes and V1 metric names. Every response names its pod in \
        x-vllm-sim-pod.

        Timing comes from an engine model (default --profile h100-llama3-8b): continuous batching \
        up to --max-num-seqs, chunked prefill of --max-num-batched-tokens per step, a paged KV cache \
        of --kv-blocks blocks of --block-size tokens with prefix caching (LRU) and recompute \
        preemption when it is full. A step takes overhead + max(weight read, tokens x compute) + \
        context x KV read, from the profile, divided by --speed. With --profile fixed (or when \
        --ttft-ms/--itl-ms are given) every request instead gets exactly --ttft-ms to its first \
        token and --itl-ms between later ones, independent of load.

        Prompt lengths count one token per whitespace-separated word; chat messages add a role \
        token and an end-of-turn token each, so equal leading text means equal leading tokens.

        Example: two pods with a small cache, ten times faster than an H100:
          vllm-sim --listen 127.0.0.1:8001 --listen 127.0.0.1:8002 \\
                   --kv-blocks 2048 --speed 10
        """)

    @Option(name: .customLong("listen"), help: "host:port of one simulated pod. Repeatable.")
    var listen: [String] = ["127.0.0.1:8000"]

    @Option(name: .customLong("model"), help: "Model name served. Repeatable.")
    var models: [String] = ["tiny"]

    @Option(help: "Timing model: \(LatencyProfile.all.map(\.name).joined(separator: ", ")) or fixed.")
    var profile: String?

    @Option(help: "Fixed timing: milliseconds to the first token.")
    var ttftMs: Double?

    @Option(help: "Fixed timing: milliseconds between later tokens.")
    var itlMs: Double?

    @Option(help: "Speed factor: simulated step times are divided by it.")
    var speed: Double = 1

    @Option(help: "KV blocks per pod (default: what the profile's card holds).")
    var kvBlocks: Int?

    @Option(help: "Tokens per KV block.")
    var blockSize: Int?

    @Option(help: "Sequences per batch at most.")
    var maxNumSeqs: Int = 256

    @Option(help: "New tokens per engine step at most (longer prefills are chunked).")
    var maxNumBatchedTokens: Int = 8192

    @Flag(help: "Disable the prefix cache.")
    var noPrefixCaching = false

    @Option(help: "Tokens generated when a request sets no max_tokens.")
    var maxTokens: Int = 16

    @Option(help: "Prompt plus completion tokens allowed per request (capped at the KV size).")
    var maxModelLen: Int = 8192

    @Option(help: "Seed for the generated text.")
    var seed: UInt64 = 0

    @Option(help: "Event loops (threads) shared by all pods; 0 = one per core.")
    var loops: Int = 1

    @Option(help: "How streamed events become writes: \(SimulatorConfiguration.SSEChunking.allCases.map(\.rawValue).joined(separator: ", ")) (events: one write per event, as vLLM; the others test stream readers).")
    var sseChunking: SimulatorConfiguration.SSEChunking = .events

    @Option(help: "Drop the connection after this many streamed tokens, without [DONE] (an upstream dying mid-stream).")
    var failAfterTokens: Int?

    @Option(help: "Dimensions of /v1/embeddings vectors.")
    var embeddingDim: Int = 8

    @Option(help: "Tokenize prompts with this Hugging Face tokenizer.json (byte-level BPE) instead of one token per word, so a gateway in prefix-cache tokenizer mode sees the engine's blocks.")
    var tokenizer: String?

    @Option(help: "KV-connector model: load and store blocks through the node agent at this Unix socket (engine timing only).")
    var kvAgentSocket: String?

    @Option(help: "KV-connector model: bytes stored per block (small payloads; the agent's --block-bytes).")
    var kvBlockBytes = 4096

    @Option(help: "KV-connector model: bytes one block of the modelled engine weighs (sets the charged transfer time).")
    var kvModelBlockBytes = 2 << 20

    @Option(help: "KV-connector model: host-to-device bandwidth charged for loaded blocks, GB/s.")
    var kvLoadGbps = 16.0

    func validate() throws {
        if kvAgentSocket != nil {
            guard kvBlockBytes > 0, kvModelBlockBytes > 0, kvLoadGbps > 0 else {
                throw ValidationError("--kv-block-bytes, --kv-model-block-bytes and --kv-load-gbps must be positive")
            }
            if profile == "fixed" || ttftMs != nil || itlMs != nil {
                throw ValidationError("--kv-agent-socket needs the engine model (a --profile other than fixed)")
            }
        }
        if let p = profile, p != "fixed", LatencyProfile.named(p) == nil {
            throw ValidationError("unknown --profile \(p); choose fixed or \(LatencyProfile.all.map(\.name).joined(separator: ", "))")
        }
        if profile != nil, profile != "fixed", ttftMs != nil || itlMs != nil {
            throw ValidationError("--ttft-ms and --itl-ms apply to --profile fixed only")
        }
        guard speed > 0 else { throw ValidationError("--speed must be positive") }
        if let f = failAfterTokens, f < 0 { throw ValidationError("--fail-after-tokens must be 0 or more") }
        guard embeddingDim >= 1 else { throw ValidationError("--embedding-dim must be at least 1") }
        if let b = kvBlocks, b < 1 { throw ValidationError("--kv-blocks must be at least 1") }
        if let b = blockSize, b < 1 { throw ValidationError("--block-size must be at least 1") }
        guard maxNumSeqs >= 1, maxNumBatchedTokens >= 1, maxTokens >= 1, maxModelLen >= 2 else {
            throw ValidationError("--max-num-seqs, --max-num-batched-tokens, --max-tokens must be at least 1")
        }
    }

    func timing() -> (SimulatorConfiguration.Timing, String) {
        let name = profile ?? ((ttftMs != nil || itlMs != nil) ? "fixed" : LatencyProfile.h100Llama3_8B.name)
        guard name != "fixed", let p = LatencyProfile.named(name) else {
            return (.fixed(ttftMillis: ttftMs ?? 0, itlMillis: itlMs ?? 0), "fixed ttft \(ttftMs ?? 0) ms, itl \(itlMs ?? 0) ms")
        }
        var e = EngineConfiguration(profile: p)
        if let b = blockSize { e.blockSize = b }
        if let b = kvBlocks { e.numBlocks = b }
        e.maxNumSeqs = maxNumSeqs
        e.maxNumBatchedTokens = maxNumBatchedTokens
        e.enablePrefixCaching = !noPrefixCaching
        return (.engine(e, speed: speed),
                "engine \(p.name) x\(speed), \(e.numBlocks) blocks of \(e.blockSize) tokens, prefix caching \(e.enablePrefixCaching ? "on" : "off")"
                    + (kvAgentSocket.map { ", KV connector via \($0) (\(kvLoadGbps) GB/s for \(kvModelBlockBytes)-byte blocks)" } ?? ""))
    }

    @OptionGroup var log: LogOptions

    func run() throws {
        let logger = try log.bootstrap(label: "vllm-sim")
        let (timing, described) = timing()
        var c = SimulatorConfiguration()
        c.models = models
        c.timing = timing
        c.defaultMaxTokens = maxTokens
        c.maxModelLen = maxModelLen
        c.seed = seed
        c.sseChunking = sseChunking
        c.failAfterTokens = failAfterTokens
        if let path = tokenizer {
            do {
                c.tokenizer = try SimulatorConfiguration.loadTokenizer(path)
            } catch {
                throw ValidationError("--tokenizer: \(error)")
            }
        }
        c.embeddingDimensions = embeddingDim
        if let sock = kvAgentSocket {
            var k = KVConnectorSettings(socketPath: sock)
            k.blockBytes = kvBlockBytes
            k.modelBlockBytes = kvModelBlockBytes
            k.loadGBps = kvLoadGbps
            c.kvConnector = k
        }
        do {
            try SimulatorService(listen: listen, template: c, loops: loops, described: described, logger: logger).run()
        } catch let e as SimulatorService.StartError {
            throw ValidationError(e.description)
        }
    }
}

extension SimulatorConfiguration.SSEChunking: ExpressibleByArgument {}
