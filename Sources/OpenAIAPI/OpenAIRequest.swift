/// The OpenAI endpoints the gateway understands.
public enum OpenAIEndpoint: String, Sendable, CaseIterable {
    case chatCompletions = "/v1/chat/completions"
    case completions = "/v1/completions"
    case models = "/v1/models"

    /// Matches a request `:path`, ignoring a query string.
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

/// What routing needs to know about an OpenAI request body. Routers see this
/// summary, never the raw body.
public struct OpenAIRequestSummary: Sendable, Equatable {
    public var model: String
    public var stream: Bool
    /// Size of the request body in bytes.
    public var bodyBytes: Int

    public init(model: String, stream: Bool, bodyBytes: Int) {
        self.model = model
        self.stream = stream
        self.bodyBytes = bodyBytes
    }

    /// Parses and validates a chat or completions body: valid JSON object,
    /// `model` a non-empty string, `stream` a boolean when present,
    /// `messages` (chat) or `prompt` (completions) present.
    public static func parse(_ body: [UInt8], endpoint: OpenAIEndpoint) throws(OpenAIError) -> OpenAIRequestSummary {
        guard !body.isEmpty else {
            throw OpenAIError(status: 400, message: "request body is empty; expected a JSON object", code: "invalid_json")
        }
        let members: [String: JSONScanner.Value]
        do {
            members = try JSONScanner.topLevelMembers(of: body, keys: ["model", "stream", "messages", "prompt"])
        } catch {
            throw OpenAIError(status: 400, message: "request body is not valid JSON: \(error)", code: "invalid_json")
        }
        let model: String
        switch members["model"] {
        case .string(let m) where !m.isEmpty:
            model = m
        case nil, .null:
            throw OpenAIError(status: 400, message: "you must provide a model parameter", param: "model", code: "missing_model")
        default:
            throw OpenAIError(status: 400, message: "'model' must be a non-empty string", param: "model", code: "invalid_type")
        }
        var stream = false
        switch members["stream"] {
        case nil, .null: break
        case .bool(let v): stream = v
        default:
            throw OpenAIError(status: 400, message: "'stream' must be a boolean", param: "stream", code: "invalid_type")
        }
        switch endpoint {
        case .chatCompletions:
            switch members["messages"] {
            case .array: break
            case nil, .null:
                throw OpenAIError(status: 400, message: "'messages' is required", param: "messages", code: "missing_required_parameter")
            default:
                throw OpenAIError(status: 400, message: "'messages' must be an array", param: "messages", code: "invalid_type")
            }
        case .completions:
            switch members["prompt"] {
            case .string, .skippedString, .array: break
            case nil, .null:
                throw OpenAIError(status: 400, message: "'prompt' is required", param: "prompt", code: "missing_required_parameter")
            default:
                throw OpenAIError(status: 400, message: "'prompt' must be a string or an array", param: "prompt", code: "invalid_type")
            }
        case .models:
            break
        }
        return OpenAIRequestSummary(model: model, stream: stream, bodyBytes: body.count)
    }
}
