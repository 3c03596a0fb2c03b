import EventLoop
import Foundation
import HTTP1
import OpenAIAPI
import Synchronization

/// Settings of one simulated vLLM pod.
public struct SimulatorConfiguration: Sendable {
    /// Model names served (the first is the one `/v1/models` lists first).
    public var models: [String] = ["tiny"]
    /// Time to the first token, and between later tokens, in milliseconds.
    public var ttftMillis: Double = 0
    public var itlMillis: Double = 0
    /// Tokens generated when the request gives no max_tokens (and the cap otherwise).
    public var defaultMaxTokens = 16
    public var maxModelLen = 4096
    /// Name reported in the `x-vllm-sim-pod` response header.
    public var name = "sim"
    public init() {}
}

/// A stand-in vLLM OpenAI server for routing studies on one machine: the
/// real endpoints (`/v1/chat/completions`, `/v1/completions`, `/v1/models`,
/// `/health`, `/metrics`), SSE streaming with a final usage chunk, and vLLM
/// V1 metric names. Timing is a fixed TTFT plus a fixed inter-token gap; a
/// later issue replaces that with an engine model (batching, prefix cache).
public final class SimulatedPod: Sendable {
    public let configuration: SimulatorConfiguration
    let metrics = SimMetrics()
    private let ids = Atomic<UInt64>(0)
    private let startTime = Date().timeIntervalSince1970

    public init(configuration: SimulatorConfiguration) {
        self.configuration = configuration
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
                      body: Array(metrics.render(models: configuration.models).utf8))
        case ("POST", "/v1/chat/completions"):
            generate(req, w, chat: true)
        case ("POST", "/v1/completions"):
            generate(req, w, chat: false)
        default:
            w.respond(status: 404, headers: [("content-type", "application/json"), podHeader],
                      body: Array(#"{"detail":"Not Found"}"#.utf8))
        }
    }

    private func modelsBody() -> [UInt8] {
        let created = Int(startTime)
        let data = configuration.models.map { m in
            #"{"id":\#(JSONText.quote(m)),"object":"model","created":\#(created),"owned_by":"vllm","root":\#(JSONText.quote(m)),"parent":null,"max_model_len":\#(configuration.maxModelLen)}"#
        }
        return Array(#"{"object":"list","data":[\#(data.joined(separator: ","))]}"#.utf8)
    }

    private func error(_ w: HTTP1ResponseWriter, _ status: Int, _ type: String, _ message: String) {
        let body = #"{"object":"error","message":\#(JSONText.quote(message)),"type":\#(JSONText.quote(type)),"param":null,"code":\#(status)}"#
        w.respond(status: status, headers: [("content-type", "application/json"), ("x-vllm-sim-pod", configuration.name)],
                  body: Array(body.utf8))
    }

    private func generate(_ req: HTTP1Request, _ w: HTTP1ResponseWriter, chat: Bool) {
        guard let obj = (try? JSONSerialization.jsonObject(with: Data(req.body))) as? [String: Any] else {
            return error(w, 400, "BadRequestError", "request body is not a JSON object")
        }
        guard let model = obj["model"] as? String else {
            return error(w, 400, "BadRequestError", "model is required")
        }
        guard configuration.models.contains(model) else {
            return error(w, 404, "NotFoundError", "The model `\(model)` does not exist.")
        }
        let promptText: String
        if chat {
            guard let msgs = obj["messages"] as? [[String: Any]] else {
                return error(w, 400, "BadRequestError", "messages must be a list of objects")
            }
            promptText = msgs.compactMap { $0["content"] as? String }.joined(separator: " ")
        } else {
            if let p = obj["prompt"] as? String { promptText = p }
            else if let p = obj["prompt"] as? [String] { promptText = p.joined(separator: " ") }
            else { return error(w, 400, "BadRequestError", "prompt must be a string or a list of strings") }
        }
        let promptTokens = max(1, promptText.utf8.count / 4)
        let maxTokens = (obj["max_tokens"] as? Int) ?? (obj["max_completion_tokens"] as? Int) ?? configuration.defaultMaxTokens
        let outTokens = max(1, min(maxTokens, configuration.defaultMaxTokens * 64))
        let stream = (obj["stream"] as? Bool) ?? false
        let includeUsage = ((obj["stream_options"] as? [String: Any])?["include_usage"] as? Bool) ?? false
        let n = ids.add(1, ordering: .relaxed).newValue
        let id = (chat ? "chatcmpl-" : "cmpl-") + String(n, radix: 16)
        let job = SimJob(pod: self, writer: w, id: id, model: model, chat: chat, stream: stream, includeUsage: includeUsage,
                         promptTokens: promptTokens, outputTokens: outTokens, created: Int(Date().timeIntervalSince1970))
        job.start()
    }
}

/// One generation in flight, driven by timers on the connection's loop.
final class SimJob {
    let pod: SimulatedPod
    let w: HTTP1ResponseWriter
    let id, model: String
    let chat, stream, includeUsage: Bool
    let promptTokens, outputTokens, created: Int
    private var produced = 0
    private let started = monotonicNanos()
    private var firstTokenAt: UInt64 = 0

    init(pod: SimulatedPod, writer: HTTP1ResponseWriter, id: String, model: String, chat: Bool, stream: Bool,
         includeUsage: Bool, promptTokens: Int, outputTokens: Int, created: Int) {
        self.pod = pod
        self.w = writer
        self.id = id
        self.model = model
        self.chat = chat
        self.stream = stream
        self.includeUsage = includeUsage
        self.promptTokens = promptTokens
        self.outputTokens = outputTokens
        self.created = created
    }

    static let words = ["the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "and", "runs", "far"]
    func token(_ i: Int) -> String { (i == 0 ? "" : " ") + Self.words[i % Self.words.count] }

    var cfg: SimulatorConfiguration { pod.configuration }

    func start() {
        pod.metrics.requestStarted()
        if stream {
            w.startStream(status: 200, headers: [("content-type", "text/event-stream; charset=utf-8"),
                                                 ("x-vllm-sim-pod", cfg.name)])
            if chat {
                event(#"{"id":"\#(id)","object":"chat.completion.chunk","created":\#(created),"model":\#(JSONText.quote(model)),"choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}"#)
            }
        }
        after(cfg.ttftMillis) { [self] in step() }
    }

    private func after(_ ms: Double, _ f: @escaping () -> Void) {
        if ms <= 0 { f() } else { w.loop.schedule(afterNanos: UInt64(ms * 1_000_000), f) }
    }

    private func step() {
        guard w.isOpen else { return finish(aborted: true) }
        if produced == 0 { firstTokenAt = monotonicNanos() }
        if stream {
            let t = token(produced)
            let last = produced + 1 == outputTokens
            let finish = last ? #""length""# : "null"
            if chat {
                event(#"{"id":"\#(id)","object":"chat.completion.chunk","created":\#(created),"model":\#(JSONText.quote(model)),"choices":[{"index":0,"delta":{"content":\#(JSONText.quote(t))},"logprobs":null,"finish_reason":\#(finish)}]}"#)
            } else {
                event(#"{"id":"\#(id)","object":"text_completion","created":\#(created),"model":\#(JSONText.quote(model)),"choices":[{"index":0,"text":\#(JSONText.quote(t)),"logprobs":null,"finish_reason":\#(finish),"stop_reason":null}]}"#)
            }
        }
        produced += 1
        if produced < outputTokens {
            if cfg.itlMillis <= 0 { return step() }
            after(cfg.itlMillis) { [self] in step() }
            return
        }
        finishOK()
    }

    private var usage: String {
        #"{"prompt_tokens":\#(promptTokens),"total_tokens":\#(promptTokens + outputTokens),"completion_tokens":\#(outputTokens),"prompt_tokens_details":null}"#
    }

    private func finishOK() {
        if stream {
            if includeUsage {
                let obj = chat ? "chat.completion.chunk" : "text_completion"
                event(#"{"id":"\#(id)","object":"\#(obj)","created":\#(created),"model":\#(JSONText.quote(model)),"choices":[],"usage":\#(usage)}"#)
            }
            w.writeChunk(Array("data: [DONE]\n\n".utf8))
            w.endStream()
        } else {
            let text = (0..<outputTokens).map(token).joined()
            let body: String
            if chat {
                body = #"{"id":"\#(id)","object":"chat.completion","created":\#(created),"model":\#(JSONText.quote(model)),"choices":[{"index":0,"message":{"role":"assistant","content":\#(JSONText.quote(text)),"tool_calls":[]},"logprobs":null,"finish_reason":"length","stop_reason":null}],"usage":\#(usage),"prompt_logprobs":null}"#
            } else {
                body = #"{"id":"\#(id)","object":"text_completion","created":\#(created),"model":\#(JSONText.quote(model)),"choices":[{"index":0,"text":\#(JSONText.quote(text)),"logprobs":null,"finish_reason":"length","stop_reason":null,"prompt_logprobs":null}],"usage":\#(usage)}"#
            }
            w.respond(status: 200, headers: [("content-type", "application/json"), ("x-vllm-sim-pod", cfg.name)],
                      body: Array(body.utf8))
        }
        finish(aborted: false)
    }

    private func finish(aborted: Bool) {
        let now = monotonicNanos()
        pod.metrics.requestFinished(prompt: promptTokens, generated: produced, aborted: aborted,
                                    ttft: firstTokenAt > 0 ? Double(firstTokenAt - started) / 1e9 : nil,
                                    e2e: Double(now - started) / 1e9)
    }

    private func event(_ json: String) {
        w.writeChunk(Array("data: \(json)\n\n".utf8))
    }
}
