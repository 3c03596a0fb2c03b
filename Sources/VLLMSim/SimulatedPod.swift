import EventLoop
import Foundation
import HTTP1
import Metrics
import OpenAIAPI
import Tokenization
import Synchronization

/// Settings of one simulated vLLM pod.
public struct SimulatorConfiguration: Sendable {
    /// How response timing is produced.
    public enum Timing: Sendable {
        /// A fixed time to the first token and between later tokens, per
        /// request, with no interaction between requests. For tests that need
        /// known latencies (client accuracy) or no latency at all.
        case fixed(ttftMillis: Double, itlMillis: Double)
        /// The engine model: batching, chunked prefill, prefix cache and
        /// preemption, with step times from the latency profile divided by
        /// `speed` (2 = twice as fast as the modelled card).
        case engine(EngineConfiguration, speed: Double)
    }

    /// Model names served (the first is the one `/v1/models` lists first).
    public var models: [String] = ["tiny"]
    public var timing: Timing = .fixed(ttftMillis: 0, itlMillis: 0)
    /// Tokens generated when the request gives no max_tokens.
    public var defaultMaxTokens = 16
    /// Prompt plus completion tokens allowed per request (clamped to the KV size in engine mode).
    public var maxModelLen = 8192
    /// Seeds the generated text (with the prompt, as greedy decoding would).
    public var seed: UInt64 = 0
    /// Name reported in the `x-vllm-sim-pod` response header.
    public var name = "sim"
    /// How streamed events are cut into writes (to test readers against
    /// every chunking a real network produces).
    public var sseChunking: SSEChunking = .events
    /// Drop the connection after this many streamed tokens (no [DONE]): an
    /// upstream dying mid-stream. nil: never.
    public var failAfterTokens: Int?
    /// Dimensions of `/v1/embeddings` vectors.
    public var embeddingDimensions = 8
    /// Prompts tokenized with a real tokenizer.json (BPE ids in the same
    /// chat layout: BOS, per message a role token, the content, end of
    /// turn) instead of one token per word; nil: words.
    public var tokenizer: BPETokenizer?
    /// The KV-connector model (engine timing only): loads and stores blocks
    /// through a real node agent; nil: no connector.
    public var kvConnector: KVConnectorSettings?
    public init() {}

    /// The tokenizer.json at `path` (a thin door so the executable needs no tokenizer import).
    public static func loadTokenizer(_ path: String) throws -> BPETokenizer { try BPETokenizer(contentsOf: path) }

    /// How a stream's events become socket writes.
    public enum SSEChunking: String, Sendable, CaseIterable {
        /// One write per event, as vLLM does.
        case events
        /// One write per byte.
        case bytes
        /// Each event cut at random points (seeded).
        case random
        /// Events held and written three at a time (several events per write).
        case merged
    }

    var effectiveMaxModelLen: Int {
        if case .engine(let e, _) = timing { return min(maxModelLen, e.kvTokens) }
        return maxModelLen
    }
}

/// A stand-in vLLM OpenAI server for routing studies on one machine: the
/// real endpoints (`/v1/chat/completions`, `/v1/completions`, `/v1/models`,
/// `/health`, `/metrics`), SSE streaming with a final usage chunk, vLLM V1
/// metric names, and either fixed delays or the engine model.
public final class SimulatedPod: Sendable {
    public let configuration: SimulatorConfiguration
    public let metrics: SimMetrics
    let driver: EngineDriver?
    private let ids = Atomic<UInt64>(0)
    private let startTime = Date().timeIntervalSince1970

    /// `loop` runs the engine model (engine timing only); requests may arrive on any loop.
    public init(configuration: SimulatorConfiguration, loop: EventLoop? = nil) {
        self.configuration = configuration
        if case .engine(let e, let speed) = configuration.timing {
            metrics = SimMetrics(blockSize: e.blockSize, numBlocks: e.numBlocks, prefixCaching: e.enablePrefixCaching)
            guard let loop else { preconditionFailure("engine timing needs an event loop") }
            let connector = configuration.kvConnector.map {
                SimKVConnector(settings: $0, model: configuration.models.first ?? "tiny", blockSize: e.blockSize)
            }
            driver = EngineDriver(engine: EngineModel(configuration: e, seed: configuration.seed, metrics: metrics, connector: connector),
                                  speed: speed, loop: loop)
        } else {
            metrics = SimMetrics()
            driver = nil
        }
    }

    /// The HTTP handler for this pod.
    public var handler: HTTP1Handler {
        { [self] req, w in handle(req, w) }
    }

    func handle(_ req: HTTP1Request, _ w: HTTP1ResponseWriter) {
        let podHeader = ("x-vllm-sim-pod", configuration.name)
        switch (req.method, req.path) {
        case ("GET", "/health"):
            w.respond(status: 200, headers: [podHeader])
        case ("GET", "/v1/models"):
            w.respond(status: 200, headers: [("content-type", "application/json"), podHeader], body: modelsBody())
        case ("GET", "/metrics"):
            w.respond(status: 200, headers: [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
                      body: Array(metrics.render(model: configuration.models.first ?? "unknown").utf8))
        case ("POST", "/v1/chat/completions"):
            generate(req, w, chat: true)
        case ("POST", "/v1/completions"):
            generate(req, w, chat: false)
        case ("POST", "/v1/messages"):
            generate(req, w, chat: true, anthropic: true)
        case ("POST", "/v1/embeddings"):
            embed(req, w)
        case (_, "/v1/chat/completions"), (_, "/v1/completions"), (_, "/v1/embeddings"), (_, "/v1/messages"), (_, "/v1/models"), (_, "/health"), (_, "/metrics"):
            w.respond(status: 405, headers: [("content-type", "application/json"), podHeader],
                      body: Array(#"{"detail":"Method Not Allowed"}"#.utf8))
        default:
            w.respond(status: 404, headers: [("content-type", "application/json"), podHeader],
                      body: Array(#"{"detail":"Not Found"}"#.utf8))
        }
    }

    private func modelsBody() -> [UInt8] {
        let created = Int(startTime)
        let data = configuration.models.map { m in
            #"{"id":\#(JSONText.quote(m)),"object":"model","created":\#(created),"owned_by":"vllm","root":\#(JSONText.quote(m)),"parent":null,"max_model_len":\#(configuration.effectiveMaxModelLen)}"#
        }
        return Array(#"{"object":"list","data":[\#(data.joined(separator: ","))]}"#.utf8)
    }

    private func error(_ w: HTTP1ResponseWriter, _ status: Int, _ type: String, _ message: String) {
        let body = #"{"object":"error","message":\#(JSONText.quote(message)),"type":\#(JSONText.quote(type)),"param":null,"code":\#(status)}"#
        w.respond(status: status, headers: [("content-type", "application/json"), ("x-vllm-sim-pod", configuration.name)],
                  body: Array(body.utf8))
    }

    /// Text of a message's `content`: a string, or a list of parts whose text parts are joined.
    private static func contentText(_ v: Any?) -> String? {
        if v == nil || v is NSNull { return "" }
        if let s = v as? String { return s }
        if let parts = v as? [[String: Any]] {
            return parts.compactMap { $0["text"] as? String }.joined(separator: " ")
        }
        return nil
    }

    /// `/v1/embeddings`: one deterministic unit vector per input (from its
    /// tokens), with vLLM's response shape and usage.
    private func embed(_ req: HTTP1Request, _ w: HTTP1ResponseWriter) {
        guard let (obj, model) = requestObject(req, w) else { return }
        let inputs: [[UInt32]]
        if let s = obj["input"] as? String { inputs = [SimTokenizer.prompt(s, tokenizer: configuration.tokenizer)] }
        else if let a = obj["input"] as? [String] { inputs = a.map { SimTokenizer.prompt($0, tokenizer: configuration.tokenizer) } }
        else if let ids = obj["input"] as? [Int] { inputs = [ids.map { UInt32(truncatingIfNeeded: $0) }] }
        else if let batch = obj["input"] as? [[Int]] { inputs = batch.map { $0.map { UInt32(truncatingIfNeeded: $0) } } }
        else { return error(w, 400, "BadRequestError", "input must be a string, a list of strings or token ids") }
        let dims = max(1, configuration.embeddingDimensions)
        var data: [String] = []
        var tokens = 0
        for (i, toks) in inputs.enumerated() {
            tokens += toks.count
            var v = (0..<dims).map { d -> Double in
                var h: UInt64 = 0x9E37_79B9_7F4A_7C15 &* UInt64(d + 1)
                for t in toks { h = mix(h ^ UInt64(t)) }
                return Double(Int64(bitPattern: h) >> 11) / Double(1 << 52)
            }
            let norm = max(1e-12, v.reduce(0) { $0 + $1 * $1 }.squareRoot())
            v = v.map { $0 / norm }
            data.append(#"{"index":\#(i),"object":"embedding","embedding":[\#(v.map { "\($0)" }.joined(separator: ","))]}"#)
        }
        metrics.promptTokens(total: tokens, cached: 0)
        let id = "embd-" + String(ids.add(1, ordering: .relaxed).newValue, radix: 16)
        let body = #"{"id":"\#(id)","object":"list","created":\#(Int(Date().timeIntervalSince1970)),"model":\#(JSONText.quote(model)),"data":[\#(data.joined(separator: ","))],"usage":{"prompt_tokens":\#(tokens),"total_tokens":\#(tokens),"completion_tokens":0,"prompt_tokens_details":null}}"#
        w.respond(status: 200, headers: [("content-type", "application/json"), ("x-vllm-sim-pod", configuration.name)],
                  body: Array(body.utf8))
    }

    private static func intField(_ obj: [String: Any], _ key: String) -> Int?? {
        guard let v = obj[key], !(v is NSNull) else { return .some(nil) }
        // Foundation on Linux decodes JSON booleans as __NSCFBoolean, which also casts to Int.
        if let i = v as? Int, !String(describing: type(of: v)).contains("Boolean") { return .some(i) }
        return .none
    }

    /// The body as a JSON object and its served model; on anything else the
    /// error is answered here (400, or 404 for a model this pod does not serve).
    private func requestObject(_ req: HTTP1Request, _ w: HTTP1ResponseWriter) -> ([String: Any], String)? {
        guard let obj = (try? JSONSerialization.jsonObject(with: Data(req.body))) as? [String: Any] else {
            error(w, 400, "BadRequestError", "request body is not a JSON object")
            return nil
        }
        guard let model = obj["model"] as? String else {
            error(w, 400, "BadRequestError", "model is required")
            return nil
        }
        guard configuration.models.contains(model) else {
            error(w, 404, "NotFoundError", "The model `\(model)` does not exist.")
            return nil
        }
        return (obj, model)
    }

    private func generate(_ req: HTTP1Request, _ w: HTTP1ResponseWriter, chat: Bool, anthropic: Bool = false) {
        guard let (obj, model) = requestObject(req, w) else { return }
        let prompt: [UInt32]
        if chat {
            guard let msgs = obj["messages"] as? [[String: Any]] else {
                return error(w, 400, "BadRequestError", "messages must be a list of objects")
            }
            var conv: [(role: String, content: String)] = []
            if anthropic, let system = Self.contentText(obj["system"]), !system.isEmpty { conv.append(("system", system)) }
            for m in msgs {
                guard let role = m["role"] as? String, let text = Self.contentText(m["content"]) else {
                    return error(w, 400, "BadRequestError", "each message needs a string role and a string or list content")
                }
                conv.append((role, text))
            }
            prompt = SimTokenizer.chat(conv, tokenizer: configuration.tokenizer)
        } else {
            if let p = obj["prompt"] as? String { prompt = SimTokenizer.prompt(p, tokenizer: configuration.tokenizer) }
            else if let p = obj["prompt"] as? [String] {
                prompt = SimTokenizer.prompt(p.joined(separator: " "), tokenizer: configuration.tokenizer)
            }
            else { return error(w, 400, "BadRequestError", "prompt must be a string or a list of strings") }
        }
        guard let mt = Self.intField(obj, "max_tokens"), let mct = Self.intField(obj, "max_completion_tokens") else {
            return error(w, 400, "BadRequestError", "max_tokens must be an integer")
        }
        let maxTokens = mct ?? mt ?? configuration.defaultMaxTokens
        guard maxTokens >= 1 else {
            return error(w, 400, "BadRequestError", "max_tokens must be at least 1, got \(maxTokens).")
        }
        let limit = configuration.effectiveMaxModelLen
        if prompt.count + maxTokens > limit {
            return error(w, 400, "BadRequestError", "This model's maximum context length is \(limit) tokens. However, you requested \(prompt.count + maxTokens) tokens (\(prompt.count) in the messages, \(maxTokens) in the completion). Please reduce the length of the messages or completion.")
        }
        var stream = false
        if let s = obj["stream"], !(s is NSNull) {
            guard let b = s as? Bool else { return error(w, 400, "BadRequestError", "stream must be a boolean") }
            stream = b
        }
        let includeUsage = ((obj["stream_options"] as? [String: Any])?["include_usage"] as? Bool) ?? false
        let n = ids.add(1, ordering: .relaxed).newValue
        let id = (anthropic ? "msg_" : chat ? "chatcmpl-" : "cmpl-") + String(n, radix: 16)
        let job = SimJob(pod: self, writer: w, id: id, model: model, chat: chat, anthropic: anthropic, stream: stream,
                         includeUsage: includeUsage,
                         promptTokens: prompt.count, outputTokens: maxTokens, created: Int(Date().timeIntervalSince1970))
        job.start()
        switch configuration.timing {
        case .fixed(let ttft, let itl):
            job.runFixed(ttftMillis: ttft, itlMillis: itl, seed: configuration.seed ^ UInt64(truncatingIfNeeded: prompt.count) &* 31)
        case .engine:
            driver!.submit(prompt: prompt, maxTokens: maxTokens, job: LoopBound(job, loop: w.loop))
        }
    }
}

/// Runs the engine model on one event loop: a step is scheduled, and after
/// its modelled time (divided by the speed factor) its tokens are handed to
/// the requests' connections. Step ends are kept on an absolute schedule, so
/// a late timer does not slow the simulated card down.
///
/// Invariant behind `@unchecked Sendable`: every mutable member is touched on
/// `loop` only; other threads reach it through `loop.execute`.
final class EngineDriver: @unchecked Sendable {
    let loop: EventLoop
    private let engine: EngineModel
    private let speed: Double
    private var jobs: [Int: LoopBound<SimJob>] = [:]
    private var stepping = false
    private var clock: UInt64 = 0          // planned end of the last step
    private let origin = monotonicNanos()

    init(engine: EngineModel, speed: Double, loop: EventLoop) {
        self.engine = engine
        self.speed = max(speed, 1e-6)
        self.loop = loop
    }

    private func seconds(_ t: UInt64) -> Double { Double(t &- origin) / 1e9 }

    func submit(prompt: [UInt32], maxTokens: Int, job: LoopBound<SimJob>) {
        let arrived = monotonicNanos()
        loop.execute { [self] in
            let id = engine.submit(prompt: prompt, maxTokens: maxTokens, now: seconds(arrived))
            jobs[id] = job
            job.run { [self] j in j.engineRequest = (self, id) }
            kick()
        }
    }

    func abort(_ id: Int) {
        loop.execute { [self] in
            guard jobs.removeValue(forKey: id) != nil else { return }
            engine.abort(id, now: seconds(monotonicNanos()))
            kick()
        }
    }

    /// Starts the next step if the engine has work. `continuing`: the engine
    /// was busy, so the step starts when the last one was planned to end
    /// (unless that is over 100 ms ago: the machine stalled, do not burst).
    private func kick(continuing: Bool = false) {
        guard !stepping else { return }
        let now = monotonicNanos()
        let start = continuing && now &- clock < 100_000_000 ? clock : max(now, clock)
        guard let report = engine.beginStep(now: seconds(start)) else { return }
        stepping = true
        clock = start &+ UInt64(report.seconds / speed * 1e9)
        let wait = clock > now ? clock - now : 0
        loop.schedule(afterNanos: wait) { [self] in finish() }
    }

    private func finish() {
        stepping = false
        let emissions = engine.finishStep(now: seconds(clock))
        for e in emissions {
            guard let job = (e.finished ? jobs.removeValue(forKey: e.request) : jobs[e.request]) else { continue }
            let word = e.word, done = e.finished
            job.run { j in j.emit(word: word, finished: done) }
        }
        kick(continuing: true)
    }
}

/// One response in flight: writes the SSE chunks or the final body as tokens arrive.
final class SimJob {
    let pod: SimulatedPod
    let w: HTTP1ResponseWriter
    let id, model: String
    let chat, stream, includeUsage: Bool
    /// Anthropic Messages shape (`/v1/messages`): typed SSE events, no [DONE].
    let anthropic: Bool
    let promptTokens, outputTokens, created: Int
    private var produced = 0
    private var text = ""
    private var closed = false
    var engineRequest: (EngineDriver, Int)?
    // Fixed-timing bookkeeping (engine timing records its own metrics).
    private let started = monotonicNanos()
    private var lastTokenAt: UInt64 = 0
    private var firstTokenAt: UInt64 = 0
    private var gaps: [Double] = []
    /// Events held for `.merged` chunking, and the random state of `.random`.
    private var held: [UInt8] = []
    private var heldEvents = 0
    private var cutState: UInt64 = 0

    init(pod: SimulatedPod, writer: HTTP1ResponseWriter, id: String, model: String, chat: Bool, anthropic: Bool = false, stream: Bool,
         includeUsage: Bool, promptTokens: Int, outputTokens: Int, created: Int) {
        self.pod = pod
        self.w = writer
        self.id = id
        self.model = model
        self.chat = chat
        self.anthropic = anthropic
        self.stream = stream
        self.includeUsage = includeUsage
        self.promptTokens = promptTokens
        self.outputTokens = outputTokens
        self.created = created
    }

    var podName: String { pod.configuration.name }

    func start() {
        guard stream else { return }
        w.startStream(status: 200, headers: [("content-type", "text/event-stream; charset=utf-8"), ("x-vllm-sim-pod", podName)])
        if anthropic {
            typedEvent("message_start", #"{"type":"message_start","message":{"id":"\#(id)","type":"message","role":"assistant","model":\#(JSONText.quote(model)),"content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":\#(promptTokens),"output_tokens":0}}}"#)
            typedEvent("content_block_start", #"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#)
        } else if chat {
            event(#"{"id":"\#(id)","object":"chat.completion.chunk","created":\#(created),"model":\#(JSONText.quote(model)),"choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}"#)
        }
    }

    // MARK: fixed timing

    private var fixedSeed: UInt64 = 0
    private var itlNanos: UInt64 = 0

    private var nextDue: UInt64 = 0

    /// Token k is due at arrival + ttft + k * itl, on an absolute schedule so
    /// that timer latency does not add up over a long response.
    func runFixed(ttftMillis: Double, itlMillis: Double, seed: UInt64) {
        pod.metrics.fixedStarted()
        fixedSeed = seed
        itlNanos = UInt64(max(0, itlMillis) * 1e6)
        nextDue = started &+ UInt64(max(0, ttftMillis) * 1e6)
        at(nextDue) { [self] in fixedStep() }
    }

    private func at(_ due: UInt64, _ f: @escaping () -> Void) {
        let now = monotonicNanos()
        if due <= now { f() } else { w.loop.schedule(afterNanos: due - now, f) }
    }

    private func fixedStep() {
        repeat {
            let now = monotonicNanos()
            if produced == 0 { firstTokenAt = now } else { gaps.append(Double(now - lastTokenAt) / 1e9) }
            lastTokenAt = now
            let word = Int(mix(fixedSeed &+ UInt64(produced)) % UInt64(SimTokenizer.vocabulary.count))
            emit(word: word, finished: produced + 1 == outputTokens)
        } while !closed && itlNanos == 0
        if !closed {
            nextDue &+= itlNanos
            at(nextDue) { [self] in fixedStep() }
        }
    }

    // MARK: output

    /// Delivers one generated token (and, with `finished`, the end of the response).
    func emit(word: Int, finished: Bool) {
        guard !closed else { return }
        guard w.isOpen else { return abandon() }
        let t = (produced == 0 ? "" : " ") + SimTokenizer.vocabulary[word]
        if stream, let fail = pod.configuration.failAfterTokens, produced >= fail {
            // The upstream dies mid-stream: what was written stays written, the rest never comes.
            flushHeld()
            closed = true
            w.abort()
            if engineRequest == nil { recordFixed(aborted: true) } else { abandonEngine() }
            return
        }
        produced += 1
        if stream {
            let reason = finished ? #""length""# : "null"
            if anthropic {
                typedEvent("content_block_delta", #"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":\#(JSONText.quote(t))}}"#)
            } else if chat {
                event(#"{"id":"\#(id)","object":"chat.completion.chunk","created":\#(created),"model":\#(JSONText.quote(model)),"choices":[{"index":0,"delta":{"content":\#(JSONText.quote(t))},"logprobs":null,"finish_reason":\#(reason)}]}"#)
            } else {
                event(#"{"id":"\#(id)","object":"text_completion","created":\#(created),"model":\#(JSONText.quote(model)),"choices":[{"index":0,"text":\#(JSONText.quote(t)),"logprobs":null,"finish_reason":\#(reason),"stop_reason":null}]}"#)
            }
        } else {
            text += t
        }
        if finished { finishOK() }
    }

    private func abandon() {
        closed = true
        if let (driver, rid) = engineRequest { driver.abort(rid) } else { recordFixed(aborted: true) }
    }

    private func abandonEngine() {
        if let (driver, rid) = engineRequest { driver.abort(rid) }
    }

    private var usage: String {
        #"{"prompt_tokens":\#(promptTokens),"total_tokens":\#(promptTokens + produced),"completion_tokens":\#(produced),"prompt_tokens_details":null}"#
    }

    private func finishOK() {
        closed = true
        if stream && anthropic {
            typedEvent("content_block_stop", #"{"type":"content_block_stop","index":0}"#)
            typedEvent("message_delta", #"{"type":"message_delta","delta":{"stop_reason":"max_tokens","stop_sequence":null},"usage":{"output_tokens":\#(produced)}}"#)
            typedEvent("message_stop", #"{"type":"message_stop"}"#)
            flushHeld()
            w.endStream()
        } else if stream {
            if includeUsage {
                let obj = chat ? "chat.completion.chunk" : "text_completion"
                event(#"{"id":"\#(id)","object":"\#(obj)","created":\#(created),"model":\#(JSONText.quote(model)),"choices":[],"usage":\#(usage)}"#)
            }
            write(Array("data: [DONE]\n\n".utf8))
            flushHeld()
            w.endStream()
        } else {
            let body: String
            if anthropic {
                body = #"{"id":"\#(id)","type":"message","role":"assistant","model":\#(JSONText.quote(model)),"content":[{"type":"text","text":\#(JSONText.quote(text))}],"stop_reason":"max_tokens","stop_sequence":null,"usage":{"input_tokens":\#(promptTokens),"output_tokens":\#(produced)}}"#
            } else if chat {
                body = #"{"id":"\#(id)","object":"chat.completion","created":\#(created),"model":\#(JSONText.quote(model)),"choices":[{"index":0,"message":{"role":"assistant","content":\#(JSONText.quote(text)),"tool_calls":[]},"logprobs":null,"finish_reason":"length","stop_reason":null}],"usage":\#(usage),"prompt_logprobs":null}"#
            } else {
                body = #"{"id":"\#(id)","object":"text_completion","created":\#(created),"model":\#(JSONText.quote(model)),"choices":[{"index":0,"text":\#(JSONText.quote(text)),"logprobs":null,"finish_reason":"length","stop_reason":null,"prompt_logprobs":null}],"usage":\#(usage)}"#
            }
            w.respond(status: 200, headers: [("content-type", "application/json"), ("x-vllm-sim-pod", podName)],
                      body: Array(body.utf8))
        }
        if engineRequest == nil { recordFixed(aborted: false) }
    }

    private func recordFixed(aborted: Bool) {
        pod.metrics.fixedFinished(prompt: promptTokens, generated: produced, aborted: aborted,
                                  ttft: firstTokenAt > 0 ? Double(firstTokenAt - started) / 1e9 : nil,
                                  itl: gaps, e2e: Double(monotonicNanos() - started) / 1e9)
    }

    private func event(_ json: String) {
        write(Array("data: \(json)\n\n".utf8))
    }

    private func typedEvent(_ type: String, _ json: String) {
        write(Array("event: \(type)\ndata: \(json)\n\n".utf8))
    }

    /// One event's bytes, cut into writes as the pod's chunking says.
    private func write(_ bytes: [UInt8]) {
        switch pod.configuration.sseChunking {
        case .events:
            w.writeChunk(bytes)
        case .bytes:
            for b in bytes { w.writeChunk([b]) }
        case .random:
            if cutState == 0 {
                // Seeded from the request id (FNV-1a): the same cuts on every run.
                var h: UInt64 = 0xCBF2_9CE4_8422_2325
                for c in id.utf8 { h = (h ^ UInt64(c)) &* 0x0000_0100_0000_01B3 }
                cutState = (pod.configuration.seed ^ h) | 1
            }
            var start = 0
            while start < bytes.count {
                cutState = mix(cutState)
                let n = 1 + Int(cutState % UInt64(max(1, bytes.count / 2)))
                let end = min(bytes.count, start + n)
                w.writeChunk(Array(bytes[start..<end]))
                start = end
            }
        case .merged:
            held.append(contentsOf: bytes)
            heldEvents += 1
            if heldEvents == 3 { flushHeld() }
        }
    }

    private func flushHeld() {
        guard !held.isEmpty else { return }
        w.writeChunk(held)
        held.removeAll(keepingCapacity: true)
        heldEvents = 0
    }
}
