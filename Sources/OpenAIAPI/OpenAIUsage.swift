/// Tokens a response used, as the engine reported them (or, for a stream
/// without a usage chunk, as the gateway counted them).
public struct OpenAIUsage: Sendable, Equatable {
    /// Prompt (input) tokens; nil when the response did not say.
    public var promptTokens: Int?
    /// Completion (output) tokens.
    public var completionTokens: Int
    /// True when `completionTokens` was counted from content events because
    /// the stream carried no usage; false when the engine reported it.
    public var estimated: Bool

    public init(promptTokens: Int?, completionTokens: Int, estimated: Bool = false) {
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
        self.estimated = estimated
    }

    /// Usage from a complete, non-streamed JSON response body: OpenAI's
    /// `usage.prompt_tokens` / `completion_tokens` (chat, completions,
    /// embeddings: no completion tokens), or `input_tokens` / `output_tokens`
    /// (the Responses API, Anthropic messages). nil when the body is not a
    /// JSON object or carries no usage (an error body, for instance).
    public static func parse(responseBody body: [UInt8]) -> OpenAIUsage? {
        guard let top = try? JSONScanner.topLevelMembers(of: body, keys: ["usage"], maxDepth: 128) else { return nil }
        return fromUsage(body, top["usage"])
    }

    /// Reads a `usage` object value; nil unless it is an object with at
    /// least one token count.
    static func fromUsage(_ bytes: [UInt8], _ value: JSONScanner.Value?) -> OpenAIUsage? {
        guard case .object(let r)? = value,
              let m = try? JSONScanner.members(of: bytes, in: r, keys: usageKeys, maxDepth: 128) else { return nil }
        let prompt = JSONScanner.integer(bytes, m["prompt_tokens"]) ?? JSONScanner.integer(bytes, m["input_tokens"])
        let completion = JSONScanner.integer(bytes, m["completion_tokens"]) ?? JSONScanner.integer(bytes, m["output_tokens"])
        if prompt == nil && completion == nil { return nil }
        return OpenAIUsage(promptTokens: prompt, completionTokens: completion ?? 0)
    }

    static let usageKeys = ["prompt_tokens", "completion_tokens", "input_tokens", "output_tokens"]
}
