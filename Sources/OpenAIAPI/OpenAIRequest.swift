/// The endpoints the gateway understands: OpenAI's, plus Anthropic-style
/// `/v1/messages` (vLLM serves both shapes).
public enum OpenAIEndpoint: String, Sendable, CaseIterable {
    case chatCompletions = "/v1/chat/completions"
    case completions = "/v1/completions"
    case embeddings = "/v1/embeddings"
    case responses = "/v1/responses"
    case messages = "/v1/messages"
    case models = "/v1/models"

    /// Matches a request `:path`, ignoring a query string and trailing slashes.
    public init?(path: String) {
        if let exact = OpenAIEndpoint(rawValue: path) {
            self = exact
            return
        }
        let p = path.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? path
        var trimmed = Substring(p)
        while trimmed.count > 1 && trimmed.hasSuffix("/") { trimmed = trimmed.dropLast() }
        self.init(rawValue: String(trimmed))
    }

    /// True when the request carries a JSON body naming a model.
    public var hasModelBody: Bool { self != .models }
}

/// What routers and limits need to know about a request body, read in one
/// validating pass. Routers see this summary, never the raw body; the
/// prompt's text is kept as ranges of the body and decoded only when asked
/// (`promptText(in:)`), so a router that does not need it pays nothing.
public struct OpenAIRequestSummary: Sendable, Equatable {
    public var model: String
    public var stream: Bool
    /// Size of the request body in bytes.
    public var bodyBytes: Int
    /// `stream_options.include_usage`: the client asked for a usage chunk.
    public var includeUsage: Bool = false
    /// The body has a `stream_options` member (whatever it says).
    public var hasStreamOptions: Bool = false
    /// The output cap: `max_completion_tokens` or `max_tokens` (chat),
    /// `max_tokens` (completions, messages), `max_output_tokens` (responses).
    public var maxTokens: Int?
    /// The body's `user` field (the `user` header is the gateway's to add).
    public var user: String?
    /// Where the prompt's text pieces lie in the body, in order: JSON string
    /// literals with their quotes and escapes. Non-text parts (images,
    /// audio) are skipped here and stay in the body.
    public var promptParts: [Range<Int>] = []
    /// Prompt tokens given as ids (completions and embeddings token arrays).
    public var promptTokenIDs: Int = 0

    public init(model: String, stream: Bool, bodyBytes: Int) {
        self.model = model
        self.stream = stream
        self.bodyBytes = bodyBytes
    }

    /// The prompt's text as the engine's template sees its pieces: message
    /// contents (and Anthropic's `system`) in order, one piece per line.
    /// `body` must be the body this summary was parsed from.
    public func promptText(in body: [UInt8]) -> String {
        var out = ""
        for (i, r) in promptParts.enumerated() {
            if i > 0 { out += "\n" }
            out += JSONScanner.decodeString(body, in: r) ?? ""
        }
        return out
    }

    /// Parses and validates a request body for `endpoint`: a JSON object,
    /// `model` a non-empty string, `stream` a boolean, `stream_options` an
    /// object, token caps non-negative integers, `user` a string, and the
    /// endpoint's prompt field present with the types that endpoint accepts.
    public static func parse(_ body: [UInt8], endpoint: OpenAIEndpoint) throws(OpenAIError) -> OpenAIRequestSummary {
        guard !body.isEmpty else {
            throw OpenAIError(status: 400, message: "request body is empty; expected a JSON object", code: "invalid_json")
        }
        let m: [String: JSONScanner.Value]
        var messages: [[String: JSONScanner.Value]?] = []
        do {
            // One pass; strings stay undecoded ranges (a 400 KB prompt is not
            // copied), and each message's content is found in the same scan.
            if endpoint == .chatCompletions || endpoint == .messages {
                (m, messages) = try JSONScanner.membersExpanding(of: body, keys: topKeys, expand: "messages",
                                                                 elementKeys: ["content"])
            } else {
                m = try JSONScanner.members(of: body, in: 0..<body.count, keys: topKeys, decode: false)
            }
        } catch {
            throw OpenAIError(status: 400, message: "request body is not valid JSON: \(error)", code: "invalid_json")
        }
        let model: String
        switch m["model"] {
        case .skippedString(let r) where r.count > 2:
            model = JSONScanner.decodeString(body, in: r) ?? ""
        case nil, .null:
            throw OpenAIError(status: 400, message: "you must provide a model parameter", param: "model", code: "missing_model")
        default:
            throw invalidType("model", "a non-empty string")
        }
        var out = OpenAIRequestSummary(model: model, stream: false, bodyBytes: body.count)
        switch m["stream"] {
        case nil, .null: break
        case .bool(let v): out.stream = v
        default: throw invalidType("stream", "a boolean")
        }
        switch m["stream_options"] {
        case nil, .null: break
        case .object(let r):
            out.hasStreamOptions = true
            let so = members(body, r, ["include_usage"])
            switch so["include_usage"] {
            case nil, .null: break
            case .bool(let v): out.includeUsage = v
            default: throw invalidType("stream_options.include_usage", "a boolean")
            }
        default: throw invalidType("stream_options", "an object")
        }
        switch m["user"] {
        case nil, .null: break
        case .skippedString(let r): out.user = JSONScanner.decodeString(body, in: r)
        default: throw invalidType("user", "a string")
        }
        let capKeys: [String]
        switch endpoint {
        case .chatCompletions: capKeys = ["max_completion_tokens", "max_tokens"]
        case .completions, .messages: capKeys = ["max_tokens"]
        case .responses: capKeys = ["max_output_tokens"]
        case .embeddings, .models: capKeys = []
        }
        for k in capKeys {
            switch m[k] {
            case nil, .null: continue
            case .number(let r):
                guard let v = JSONScanner.integer(body, in: r) else { throw invalidType(k, "a non-negative integer") }
                if out.maxTokens == nil { out.maxTokens = v }
            default: throw invalidType(k, "a non-negative integer")
            }
        }
        switch endpoint {
        case .chatCompletions:
            try readMessages(body, m["messages"], messages, into: &out)
        case .messages:
            try readSystem(body, m["system"], into: &out)
            try readMessages(body, m["messages"], messages, into: &out)
        case .completions:
            try readPrompt(body, m["prompt"], param: "prompt", into: &out)
        case .embeddings:
            try readPrompt(body, m["input"], param: "input", into: &out)
        case .responses:
            try readResponsesInput(body, m["input"], into: &out)
        case .models:
            break
        }
        return out
    }

    /// Content-part types whose `text` is prompt text (Chat and Messages
    /// use "text", the Responses API "input_text").
    static let textPartTypes: Set<String> = ["text", "input_text"]

    /// A body for a path the gateway does not model (`--pass-through-unknown-paths`):
    /// a JSON object with a non-empty `model`; `stream` read when it is a boolean.
    public static func parseModelOnly(_ body: [UInt8]) throws(OpenAIError) -> OpenAIRequestSummary {
        guard !body.isEmpty else {
            throw OpenAIError(status: 400, message: "request body is empty; expected a JSON object naming a model", code: "invalid_json")
        }
        let m: [String: JSONScanner.Value]
        do {
            m = try JSONScanner.members(of: body, in: 0..<body.count, keys: ["model", "stream"], decode: false)
        } catch {
            throw OpenAIError(status: 400, message: "request body is not valid JSON: \(error)", code: "invalid_json")
        }
        guard case .skippedString(let r)? = m["model"], r.count > 2, let model = JSONScanner.decodeString(body, in: r) else {
            throw OpenAIError(status: 400, message: "a passed-through request must name its model in 'model'", param: "model",
                              code: "missing_model")
        }
        var out = OpenAIRequestSummary(model: model, stream: false, bodyBytes: body.count)
        if case .bool(let v)? = m["stream"] { out.stream = v }
        return out
    }

    static let topKeys = ["model", "stream", "stream_options", "user", "messages", "system", "prompt", "input",
                          "max_tokens", "max_completion_tokens", "max_output_tokens"]

    static func invalidType(_ param: String, _ what: String) -> OpenAIError {
        OpenAIError(status: 400, message: "'\(param)' must be \(what)", param: param, code: "invalid_type")
    }

    static func missing(_ param: String) -> OpenAIError {
        OpenAIError(status: 400, message: "'\(param)' is required", param: param, code: "missing_required_parameter")
    }

    /// Elements of a nested array; the body was validated already.
    static func elements(_ body: [UInt8], _ r: Range<Int>) -> [JSONScanner.Value] {
        (try? JSONScanner.elements(of: body, in: r, maxDepth: 64)) ?? []
    }

    static func members(_ body: [UInt8], _ r: Range<Int>, _ keys: [String]) -> [String: JSONScanner.Value] {
        (try? JSONScanner.members(of: body, in: r, keys: keys, decode: false, maxDepth: 64)) ?? [:]
    }

    /// `messages`: an array of objects whose `content` is a string, null,
    /// or an array of parts; text parts contribute their `text`, others
    /// (images, audio, tool results) are skipped.
    static func readMessages(_ body: [UInt8], _ v: JSONScanner.Value?, _ messages: [[String: JSONScanner.Value]?],
                             into out: inout OpenAIRequestSummary) throws(OpenAIError) {
        guard let v, v != .null else { throw missing("messages") }
        guard case .array = v else { throw invalidType("messages", "an array") }
        out.promptParts.reserveCapacity(messages.count)
        for (i, msg) in messages.enumerated() {
            guard let fields = msg else { throw invalidType("messages[\(i)]", "an object") }
            switch fields["content"] {
            case nil, .null: break
            case .skippedString(let s): out.promptParts.append(s)
            case .array(let pr): try readParts(body, pr, param: "messages[\(i)].content", into: &out)
            default: throw invalidType("messages[\(i)].content", "a string or an array of content parts")
            }
        }
    }

    /// Content parts: objects with a `type`; text parts carry `text`.
    static func readParts(_ body: [UInt8], _ r: Range<Int>, param: String,
                          into out: inout OpenAIRequestSummary) throws(OpenAIError) {
        for (j, part) in elements(body, r).enumerated() {
            guard case .object(let pr) = part else { throw invalidType("\(param)[\(j)]", "an object") }
            let p = members(body, pr, ["type", "text"])
            guard case .skippedString(let tr)? = p["type"] else { throw invalidType("\(param)[\(j)].type", "a string") }
            guard let t = JSONScanner.decodeString(body, in: tr), textPartTypes.contains(t) else { continue }
            guard case .skippedString(let text)? = p["text"] else { throw invalidType("\(param)[\(j)].text", "a string") }
            out.promptParts.append(text)
        }
    }

    /// Anthropic's `system`: a string or an array of text blocks.
    static func readSystem(_ body: [UInt8], _ v: JSONScanner.Value?, into out: inout OpenAIRequestSummary) throws(OpenAIError) {
        switch v {
        case nil, .null?: return
        case .skippedString(let s)?: out.promptParts.append(s)
        case .array(let r)?: try readParts(body, r, param: "system", into: &out)
        default: throw invalidType("system", "a string or an array of text blocks")
        }
    }

    /// `prompt` / `input`: a string, an array of strings, an array of token
    /// ids, or an array of token-id arrays.
    static func readPrompt(_ body: [UInt8], _ v: JSONScanner.Value?, param: String,
                           into out: inout OpenAIRequestSummary) throws(OpenAIError) {
        let what = "a string, an array of strings, an array of token ids or an array of token-id arrays"
        switch v {
        case nil, .null?: throw missing(param)
        case .skippedString(let s)?:
            out.promptParts.append(s)
        case .array(let r)?:
            var kind: UInt8 = 0  // 1 strings, 2 ids, 3 id arrays
            for e in elements(body, r) {
                let k: UInt8
                switch e {
                case .skippedString(let s): out.promptParts.append(s); k = 1
                case .number(let nr):
                    guard JSONScanner.integer(body, in: nr) != nil else { throw invalidType(param, what) }
                    out.promptTokenIDs += 1; k = 2
                case .array(let ar):
                    for t in elements(body, ar) {
                        guard case .number(let tr) = t, JSONScanner.integer(body, in: tr) != nil else { throw invalidType(param, what) }
                        out.promptTokenIDs += 1
                    }
                    k = 3
                default: throw invalidType(param, what)
                }
                if kind == 0 { kind = k } else if kind != k { throw invalidType(param, what) }
            }
        default: throw invalidType(param, what)
        }
    }

    /// The Responses API's `input`: a string, or an array of items whose
    /// `content` is a string or input parts.
    static func readResponsesInput(_ body: [UInt8], _ v: JSONScanner.Value?, into out: inout OpenAIRequestSummary) throws(OpenAIError) {
        switch v {
        case nil, .null?: throw missing("input")
        case .skippedString(let s)?: out.promptParts.append(s)
        case .array(let r)?:
            for (i, item) in elements(body, r).enumerated() {
                guard case .object(let ir) = item else { throw invalidType("input[\(i)]", "an object") }
                switch members(body, ir, ["content"])["content"] {
                case nil, .null?: break
                case .skippedString(let s)?: out.promptParts.append(s)
                case .array(let pr)?: try readParts(body, pr, param: "input[\(i)].content", into: &out)
                default: throw invalidType("input[\(i)].content", "a string or an array of content parts")
                }
            }
        default: throw invalidType("input", "a string or an array of input items")
        }
    }
}
