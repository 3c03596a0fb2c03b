import ExtProcProto

/// The per-stream ext_proc phase machine: which messages may come next, what
/// the filter must be asked, and which ProcessingResponses answer it.
///
/// Pure value type, no I/O. Drive it with `receive(_:)`; when it returns
/// `.askFilter`, call the filter and hand its decision to `decide(_:)`,
/// which returns the responses to send.
public struct ExtProcStreamStateMachine: Sendable {
    /// Where the stream is.
    public enum State: Sendable, Equatable {
        /// Nothing seen yet.
        case idle
        /// Request headers answered; a BUFFERED body is expected next.
        case awaitingBufferedBody
        /// FULL_DUPLEX_STREAMED: request headers held unanswered while the body is collected.
        case collectingBody
        /// Request phases decided; further request chunks pass through.
        case requestForwarded
        /// Response headers answered; body chunks and trailers may follow.
        case responseStarted
        /// An immediate response was sent, or a violation ended the stream.
        case closed
    }

    /// A filter hook to call.
    public enum FilterCall: Sendable, Equatable {
        case requestHeaders(HTTPHeadersMessage)
        case requestBody([UInt8])
        case responseHeaders(HTTPHeadersMessage)
        case responseBody(HTTPBodyMessage)
    }

    /// What the driver does with an incoming message.
    public enum Step: Sendable, Equatable {
        /// Call the filter, then `decide(_:)` with its answer.
        case askFilter(FilterCall)
        /// Send these responses (nothing for the filter to decide).
        case reply([ProcessingResponse])
        /// Nothing to send yet (a FULL_DUPLEX body chunk being collected).
        case wait
        /// Envoy broke the protocol; end the stream with this explanation.
        case violation(String)
    }

    public private(set) var state: State = .idle
    /// Body mode for requests (from Envoy's protocol_config, else the configured one).
    public private(set) var requestBodyMode: BodySendMode
    public private(set) var responseBodyMode: BodySendMode
    /// False when Envoy's first message said its response body mode is
    /// NONE: the response phases are configured off (or narrowed by Envoy's
    /// config), and a mode override would turn them back on (an override
    /// states every phase; Envoy has no "keep as configured"), so filters'
    /// overrides are dropped. The gateway only narrows Envoy's envelope.
    public private(set) var overridesAllowed = true
    /// True for a stream Envoy opened in observability mode that starts at
    /// the response (an observer filter: request phases skipped, answers
    /// not read by Envoy).
    public private(set) var observing = false
    /// Largest request body collected in FULL_DUPLEX_STREAMED mode.
    public let maxBodyBytes: Int
    private var pending: FilterCall?
    private var body: [UInt8] = []
    private var trailersEndedBody = false
    private var routedAtHeaders = false

    /// `requestBodyMode`/`responseBodyMode`: what Envoy is configured with;
    /// Envoy's first message may correct them (protocol_config).
    public init(requestBodyMode: BodySendMode, responseBodyMode: BodySendMode, maxBodyBytes: Int) {
        self.requestBodyMode = requestBodyMode
        self.responseBodyMode = responseBodyMode
        self.maxBodyBytes = maxBodyBytes
    }

    /// Largest chunk sent back in one streamed body response.
    static let streamedChunk = 256 * 1024

    public mutating func receive(_ request: ProcessingRequest) -> Step {
        if let m = request.requestBodyMode { requestBodyMode = m }
        if let m = request.responseBodyMode {
            responseBodyMode = m
            if state == .idle && m == .none { overridesAllowed = false }
        }
        guard pending == nil else {
            return violate("message received while the previous one is still being decided")
        }
        guard let phase = request.phase else {
            return violate("ProcessingRequest carries no request phase")
        }
        switch (state, phase) {
        case (.idle, .requestHeaders(let h)):
            return ask(.requestHeaders(h))

        case (.idle, .responseHeaders(let h)) where request.observabilityMode:
            // An observer: it sees the response only, never decides.
            observing = true
            return ask(.responseHeaders(h))

        case (.awaitingBufferedBody, .requestBody(let b)):
            // BUFFERED sends the whole body in one message; BUFFERED_PARTIAL
            // may stop early at Envoy's buffer limit, and we take what came.
            return ask(.requestBody(b.body))

        case (.collectingBody, .requestBody(let b)):
            if body.count + b.body.count > maxBodyBytes {
                state = .closed
                return .reply([ProcessingResponse(.immediate(ImmediateResponse(
                    status: 413,
                    headers: { var m = HeaderMutation(); m.overwrite("content-type", "application/json"); return m }(),
                    body: Array(#"{"error":{"message":"request body exceeds the gateway limit","type":"invalid_request_error","param":null,"code":"request_too_large"}}"#.utf8),
                    details: "switchboard_body_too_large")))])
            }
            body.append(contentsOf: b.body)
            if b.endOfStream || b.endOfStreamWithoutMessage {
                let all = body
                body = []
                return ask(.requestBody(all))
            }
            return .wait

        case (.collectingBody, .requestTrailers):
            trailersEndedBody = true
            let all = body
            body = []
            return ask(.requestBody(all))

        case (.requestForwarded, .requestBody(let b)):
            // Routed at the headers; chunks pass through unchanged.
            if requestBodyMode == .fullDuplexStreamed {
                return .reply([ProcessingResponse(.requestBody(CommonResponse(
                    bodyMutation: .streamed(body: b.body, endOfStream: b.endOfStream))))])
            }
            return .reply([ProcessingResponse(.requestBody(CommonResponse()))])

        case (.requestForwarded, .requestTrailers), (.awaitingBufferedBody, .requestTrailers):
            state = .requestForwarded
            return .reply([ProcessingResponse(.requestTrailers(nil))])

        case (.requestForwarded, .responseHeaders(let h)), (.responseStarted, .responseHeaders(let h)),
             (.awaitingBufferedBody, .responseHeaders(let h)), (.collectingBody, .responseHeaders(let h)):
            // The last two: Envoy answered the request itself before the
            // body reached us (a body over its buffer limit gets a local
            // 413), and its reply's headers come through the filter chain.
            if state == .responseStarted { return violate("response headers received twice") }
            body = []
            return ask(.responseHeaders(h))

        case (.responseStarted, .responseBody(let b)):
            return ask(.responseBody(b))

        case (.responseStarted, .responseTrailers), (.requestForwarded, .responseTrailers):
            return .reply([ProcessingResponse(.responseTrailers(nil))])

        case (.closed, _):
            return violate("message received after the stream was answered with an immediate response")

        default:
            return violate("unexpected \(Self.name(phase)) in state \(state)")
        }
    }

    /// Turns the filter's decision for the pending call into responses.
    public mutating func decide(_ decision: FilterDecision) -> [ProcessingResponse] {
        guard let call = pending else { return [] }
        pending = nil
        if case .respond(let ir) = decision {
            state = .closed
            return [ProcessingResponse(.immediate(ir))]
        }
        switch call {
        case .requestHeaders(let h):
            if case .proceed(let mutation, let override) = decision {
                routedAtHeaders = true
                state = .requestForwarded
                return [ProcessingResponse(.requestHeaders(CommonResponse(headerMutation: mutation)),
                                           modeOverride: overridesAllowed ? override : nil)]
            }
            guard case .waitForBody(let override) = decision else { return [] }
            if h.endOfStream {
                // No body will come: decide on an empty one.
                return askNow(.requestBody([]), answerHeaders: true)
            }
            switch requestBodyMode {
            case .buffered, .bufferedPartial:
                state = .awaitingBufferedBody
                return [ProcessingResponse(.requestHeaders(CommonResponse()), modeOverride: overridesAllowed ? override : nil)]
            case .fullDuplexStreamed:
                state = .collectingBody
                return []
            case .none, .streamed, .grpc:
                state = .closed
                return [ProcessingResponse(.immediate(ImmediateResponse(
                    status: 500,
                    headers: { var m = HeaderMutation(); m.overwrite("content-type", "application/json"); return m }(),
                    body: Array(#"{"error":{"message":"gateway misconfigured: routing needs the request body, but Envoy's request_body_mode is not BUFFERED or FULL_DUPLEX_STREAMED","type":"api_error","param":null,"code":"gateway_misconfigured"}}"#.utf8),
                    details: "switchboard_body_mode")))]
            }

        case .requestBody(let original):
            let mutation: HeaderMutation?
            var b = original
            var replaced = false
            switch decision {
            case .proceed(let m, _): mutation = m
            case .replaceBody(let m, let body): mutation = m; b = body; replaced = true
            default: return []
            }
            state = .requestForwarded
            if bodyWasEmptyHeadersOnly {
                bodyWasEmptyHeadersOnly = false
                return [ProcessingResponse(.requestHeaders(CommonResponse(headerMutation: mutation)))]
            }
            if requestBodyMode == .fullDuplexStreamed && !routedAtHeaders {
                // Headers were held: answer them now with the mutation, then
                // give the body back in chunks.
                var out = [ProcessingResponse(.requestHeaders(CommonResponse(headerMutation: mutation)))]
                var offset = 0
                repeat {
                    let end = min(offset + Self.streamedChunk, b.count)
                    let last = end == b.count
                    out.append(ProcessingResponse(.requestBody(CommonResponse(
                        bodyMutation: .streamed(body: Array(b[offset..<end]), endOfStream: last && !trailersEndedBody)))))
                    offset = end
                } while offset < b.count
                if trailersEndedBody { out.append(ProcessingResponse(.requestTrailers(nil))) }
                return out
            }
            return [ProcessingResponse(.requestBody(CommonResponse(headerMutation: mutation,
                                                                   bodyMutation: replaced ? .replace(b) : nil)))]

        case .responseHeaders:
            guard case .proceed(let mutation, let override) = decision else { return [] }
            state = .responseStarted
            // Envoy honours a mode override in the answer to either headers
            // phase: a filter turns the response body on here when it needs it.
            let o = overridesAllowed && !observing ? override : nil
            if let o, responseBodyMode != .fullDuplexStreamed { responseBodyMode = o.responseBodyMode }
            return [ProcessingResponse(.responseHeaders(CommonResponse(headerMutation: mutation)), modeOverride: o)]

        case .responseBody(let chunk):
            var mutation: HeaderMutation?
            var replacement: [UInt8]?
            if case .replaceBody(let m, let body) = decision {
                mutation = m
                replacement = body
            }
            if responseBodyMode == .fullDuplexStreamed {
                return [ProcessingResponse(.responseBody(CommonResponse(
                    bodyMutation: .streamed(body: replacement ?? chunk.body, endOfStream: chunk.endOfStream))))]
            }
            return [ProcessingResponse(.responseBody(CommonResponse(headerMutation: mutation,
                                                                    bodyMutation: replacement.map { .replace($0) })))]
        }
    }

    private var bodyWasEmptyHeadersOnly = false

    private mutating func askNow(_ call: FilterCall, answerHeaders: Bool) -> [ProcessingResponse] {
        // Used when headers said end_of_stream but the filter wanted a body:
        // the caller must run the filter again on an empty body. We model it
        // as a pending call whose answer goes to the request headers.
        pending = call
        bodyWasEmptyHeadersOnly = answerHeaders
        return []
    }

    /// True when `decide` left a follow-up filter call pending (see `askNow`).
    public var pendingCall: FilterCall? { pending }

    private mutating func ask(_ call: FilterCall) -> Step {
        pending = call
        return .askFilter(call)
    }

    private mutating func violate(_ why: String) -> Step {
        state = .closed
        pending = nil
        return .violation(why)
    }

    static func name(_ p: ProcessingPhaseMessage) -> String {
        switch p {
        case .requestHeaders: return "request_headers"
        case .responseHeaders: return "response_headers"
        case .requestBody: return "request_body"
        case .responseBody: return "response_body"
        case .requestTrailers: return "request_trailers"
        case .responseTrailers: return "response_trailers"
        }
    }
}
