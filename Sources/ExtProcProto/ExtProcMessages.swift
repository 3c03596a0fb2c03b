/// Swift values for the envoy.service.ext_proc.v3 messages Switchboard reads
/// and writes. The codec (`ExtProcCodec`) converts them to and from the wire
/// with libprotobuf-c; nothing else in the project touches the C structs.

/// One header as Envoy sends it (Envoy fills `raw_value`; we read either).
public struct HeaderField: Sendable, Equatable {
    public var name: String
    public var value: String
    public init(_ name: String, _ value: String) {
        self.name = name
        self.value = value
    }
}

/// `HttpHeaders`: a header block and whether the body is absent.
public struct HTTPHeadersMessage: Sendable, Equatable {
    public var headers: [HeaderField]
    public var endOfStream: Bool
    public init(headers: [HeaderField], endOfStream: Bool) {
        self.headers = headers
        self.endOfStream = endOfStream
    }
    /// First value of a header. `name` must be lower case: HTTP/2 (and so
    /// Envoy's ext_proc) carries header names in lower case only.
    public func value(of name: String) -> String? {
        for h in headers where h.name == name { return h.value }
        return nil
    }
}

/// `HttpBody`: one body chunk (or the whole body in BUFFERED mode).
public struct HTTPBodyMessage: Sendable, Equatable {
    public var body: [UInt8]
    public var endOfStream: Bool
    /// Envoy 1.3x+: the stream ended without a final body message (FULL_DUPLEX_STREAMED).
    public var endOfStreamWithoutMessage: Bool
    public init(body: [UInt8], endOfStream: Bool, endOfStreamWithoutMessage: Bool = false) {
        self.body = body
        self.endOfStream = endOfStream
        self.endOfStreamWithoutMessage = endOfStreamWithoutMessage
    }
}

/// How Envoy sends a body (ProcessingMode.BodySendMode).
public enum BodySendMode: Int, Sendable {
    case none = 0, streamed = 1, buffered = 2, bufferedPartial = 3, fullDuplexStreamed = 4, grpc = 5
}

/// Whether Envoy sends a header or trailer phase (ProcessingMode.HeaderSendMode).
public enum HeaderSendMode: Int, Sendable {
    case `default` = 0, send = 1, skip = 2
}

/// The oneof `request` of ProcessingRequest.
public enum ProcessingPhaseMessage: Sendable, Equatable {
    case requestHeaders(HTTPHeadersMessage)
    case responseHeaders(HTTPHeadersMessage)
    case requestBody(HTTPBodyMessage)
    case responseBody(HTTPBodyMessage)
    case requestTrailers([HeaderField])
    case responseTrailers([HeaderField])
}

/// `ProcessingRequest`.
public struct ProcessingRequest: Sendable, Equatable {
    /// nil when Envoy (or a broken peer) left the oneof unset.
    public var phase: ProcessingPhaseMessage?
    public var observabilityMode: Bool
    /// Sent by Envoy on the first message of a stream: the configured body modes.
    public var requestBodyMode: BodySendMode?
    public var responseBodyMode: BodySendMode?
    public init(phase: ProcessingPhaseMessage?, observabilityMode: Bool = false,
                requestBodyMode: BodySendMode? = nil, responseBodyMode: BodySendMode? = nil) {
        self.phase = phase
        self.observabilityMode = observabilityMode
        self.requestBodyMode = requestBodyMode
        self.responseBodyMode = responseBodyMode
    }
}

/// `HeaderValueOption.HeaderAppendAction`.
public enum HeaderAppendAction: Int, Sendable {
    case appendIfExistsOrAdd = 0, addIfAbsent = 1, overwriteIfExistsOrAdd = 2, overwriteIfExists = 3
}

/// `HeaderMutation`.
public struct HeaderMutation: Sendable, Equatable {
    public var setHeaders: [(field: HeaderField, action: HeaderAppendAction)]
    public var removeHeaders: [String]
    public init(setHeaders: [(field: HeaderField, action: HeaderAppendAction)] = [], removeHeaders: [String] = []) {
        self.setHeaders = setHeaders
        self.removeHeaders = removeHeaders
    }
    public var isEmpty: Bool { setHeaders.isEmpty && removeHeaders.isEmpty }
    /// Overwrites (or adds) a header.
    public mutating func overwrite(_ name: String, _ value: String) {
        setHeaders.append((HeaderField(name, value), .overwriteIfExistsOrAdd))
    }
    public static func == (a: HeaderMutation, b: HeaderMutation) -> Bool {
        a.removeHeaders == b.removeHeaders && a.setHeaders.count == b.setHeaders.count
            && zip(a.setHeaders, b.setHeaders).allSatisfy { $0.field == $1.field && $0.action == $1.action }
    }
}

/// `BodyMutation` (a oneof).
public enum BodyMutation: Sendable, Equatable {
    case replace([UInt8])
    case clear
    /// FULL_DUPLEX_STREAMED: a body chunk sent back in place of what was received.
    case streamed(body: [UInt8], endOfStream: Bool)
}

/// `CommonResponse`.
public struct CommonResponse: Sendable, Equatable {
    public var continueAndReplace: Bool
    public var headerMutation: HeaderMutation?
    public var bodyMutation: BodyMutation?
    public var clearRouteCache: Bool
    public init(continueAndReplace: Bool = false, headerMutation: HeaderMutation? = nil,
                bodyMutation: BodyMutation? = nil, clearRouteCache: Bool = false) {
        self.continueAndReplace = continueAndReplace
        self.headerMutation = headerMutation
        self.bodyMutation = bodyMutation
        self.clearRouteCache = clearRouteCache
    }
}

/// `ImmediateResponse`: Envoy answers the client with this and stops.
public struct ImmediateResponse: Sendable, Equatable {
    public var status: Int
    public var headers: HeaderMutation
    public var body: [UInt8]
    public var details: String
    public init(status: Int, headers: HeaderMutation = HeaderMutation(), body: [UInt8] = [], details: String = "") {
        self.status = status
        self.headers = headers
        self.body = body
        self.details = details
    }
}

/// `ProcessingMode`, sent as `mode_override`.
public struct ProcessingModeOverride: Sendable, Equatable {
    public var requestHeaderMode: HeaderSendMode = .default
    public var responseHeaderMode: HeaderSendMode = .default
    public var requestBodyMode: BodySendMode = .none
    public var responseBodyMode: BodySendMode = .none
    public var requestTrailerMode: HeaderSendMode = .default
    public var responseTrailerMode: HeaderSendMode = .default
    public init(requestHeaderMode: HeaderSendMode = .default, responseHeaderMode: HeaderSendMode = .default,
                requestBodyMode: BodySendMode = .none, responseBodyMode: BodySendMode = .none,
                requestTrailerMode: HeaderSendMode = .default, responseTrailerMode: HeaderSendMode = .default) {
        self.requestHeaderMode = requestHeaderMode
        self.responseHeaderMode = responseHeaderMode
        self.requestBodyMode = requestBodyMode
        self.responseBodyMode = responseBodyMode
        self.requestTrailerMode = requestTrailerMode
        self.responseTrailerMode = responseTrailerMode
    }
}

/// The oneof `response` of ProcessingResponse.
public enum ProcessingReply: Sendable, Equatable {
    case requestHeaders(CommonResponse)
    case responseHeaders(CommonResponse)
    case requestBody(CommonResponse)
    case responseBody(CommonResponse)
    case requestTrailers(HeaderMutation?)
    case responseTrailers(HeaderMutation?)
    case immediate(ImmediateResponse)
}

/// `ProcessingResponse`.
public struct ProcessingResponse: Sendable, Equatable {
    public var reply: ProcessingReply
    public var modeOverride: ProcessingModeOverride?
    /// Dynamic metadata for Envoy's filters: namespace → key → string
    /// (e.g. `envoy.lb` → `x-gateway-destination-endpoint`).
    public var dynamicMetadata: [String: [String: String]]?
    public init(_ reply: ProcessingReply, modeOverride: ProcessingModeOverride? = nil,
                dynamicMetadata: [String: [String: String]]? = nil) {
        self.reply = reply
        self.modeOverride = modeOverride
        self.dynamicMetadata = dynamicMetadata
    }
}
