import Metrics
/// An error answered to the client in OpenAI's shape:
/// `{"error":{"message":…,"type":…,"param":…,"code":…}}`.
public struct OpenAIError: Error, Sendable, Equatable {
    public var status: Int
    public var message: String
    public var type: String
    public var param: String?
    public var code: String?

    public init(status: Int, message: String, type: String? = nil, param: String? = nil, code: String? = nil) {
        self.status = status
        self.message = message
        self.type = type ?? Self.defaultType(for: status)
        self.param = param
        self.code = code
    }

    /// The OpenAI error type for an HTTP status.
    public static func defaultType(for status: Int) -> String {
        switch status {
        case 400, 404, 405, 413, 415, 422: return "invalid_request_error"
        case 401: return "authentication_error"
        case 403: return "permission_error"
        case 429: return "rate_limit_error"
        case 503: return "overloaded_error"
        default: return "api_error"
        }
    }

    /// The JSON body.
    public var jsonBody: [UInt8] {
        var s = #"{"error":{"message":"#
        s += JSONText.quote(message)
        s += #","type":"# + JSONText.quote(type)
        s += #","param":"# + (param.map(JSONText.quote) ?? "null")
        s += #","code":"# + (code.map(JSONText.quote) ?? "null")
        s += "}}"
        return Array(s.utf8)
    }
}

