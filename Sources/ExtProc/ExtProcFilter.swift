import ExtProcProto

/// The request logic plugged into the ext_proc state machine: it sees each
/// HTTP phase once, synchronously, on the event loop, and decides.
/// One instance per ext_proc stream (= per HTTP request).
public protocol ExtProcFilter: AnyObject {
    /// Once, before the first hook: what Envoy's first message said about
    /// this stream.
    func streamStarted(_ info: ExtProcStreamInfo)
    /// Request headers. Return `.waitForBody` to decide after the whole body.
    func requestHeaders(_ headers: HTTPHeadersMessage) -> FilterDecision
    /// The complete request body (BUFFERED, or FULL_DUPLEX_STREAMED chunks
    /// assembled), after `requestHeaders` returned `.waitForBody`.
    func requestBody(_ body: [UInt8]) -> FilterDecision
    /// Upstream response headers.
    func responseHeaders(_ headers: HTTPHeadersMessage) -> FilterDecision
    /// One upstream response body chunk (STREAMED): inspect, do not hold.
    func responseBody(_ chunk: HTTPBodyMessage) -> FilterDecision
    /// The stream ended; called exactly once, whatever the ending.
    func streamEnded(_ outcome: ExtProcOutcome)
    /// Dynamic metadata to send with the request-phase answer that carries
    /// the decision (namespace → key → string), taken once.
    func takeDynamicMetadata() -> [String: [String: String]]?
    /// Once, before the first hook: how a filter that answers `.later`
    /// delivers its decision.
    func attach(_ resume: ExtProcResume)
}

/// Delivers a decision a filter deferred with `.later` (an answer from
/// Redis, say). Call on the stream's event loop, at most once per `.later`;
/// a stream that ended meanwhile ignores it.
public final class ExtProcResume {
    weak var handler: ExtProcStreamHandler?
    init(handler: ExtProcStreamHandler) { self.handler = handler }

    public func resume(_ decision: FilterDecision) {
        handler?.resume(decision)
    }
}

/// What Envoy's first message said about a stream.
public struct ExtProcStreamInfo: Sendable, Equatable {
    /// Envoy's observability mode: answers are not read (send and go).
    public var observabilityMode: Bool
    /// The stream starts at the response headers (an observer filter whose
    /// request phases are skipped).
    public var startsAtResponse: Bool
    /// Envoy's configured response body mode is NONE: this stream will not
    /// see the response body, and mode overrides are not sent.
    public var responseBodyOff: Bool

    public init(observabilityMode: Bool = false, startsAtResponse: Bool = false, responseBodyOff: Bool = false) {
        self.observabilityMode = observabilityMode
        self.startsAtResponse = startsAtResponse
        self.responseBodyOff = responseBodyOff
    }
}

extension ExtProcFilter {
    public func streamStarted(_ info: ExtProcStreamInfo) {}
    public func takeDynamicMetadata() -> [String: [String: String]]? { nil }
    public func attach(_ resume: ExtProcResume) {}
}

/// What a filter decided for one phase.
public enum FilterDecision: Sendable, Equatable {
    /// Let the request go on, with headers to set/remove on the message of
    /// this phase (request headers in the request phases, response headers
    /// in the response phases), and optionally a mode override (honoured by
    /// Envoy in the answer to request headers or response headers).
    case proceed(HeaderMutation?, modeOverride: ProcessingModeOverride?)
    /// Only from `requestHeaders`: the decision needs the body. The optional
    /// override (the full mode for the rest of the stream, as Envoy applies
    /// it) lets a filter skip later phases it does not need.
    case waitForBody(modeOverride: ProcessingModeOverride?)
    /// Stop here: Envoy sends this response to the client.
    case respond(ImmediateResponse)
    /// Only from `requestBody` and `responseBody`: go on with this phase's
    /// body replaced (the whole body when buffered, this chunk when
    /// streamed) and headers to set (buffered phases only: a changed
    /// length must be set here as `content-length`).
    case replaceBody(HeaderMutation?, [UInt8])
    /// Only from `requestBody`: the decision will come from the
    /// `ExtProcResume` given at `attach` (the stream holds its answer until
    /// then; Envoy's message timeout bounds the wait).
    case later

    public static let proceed = FilterDecision.proceed(nil, modeOverride: nil)
    public static let needBody = FilterDecision.waitForBody(modeOverride: nil)
}

/// How an ext_proc stream ended, for bookkeeping that must happen exactly once.
public enum ExtProcOutcome: Sendable, Equatable {
    /// Envoy half-closed after the exchange (graceful close).
    case completed
    /// The processor answered with an immediate response (the request ended here).
    case immediateResponse(status: Int)
    /// Envoy reset the stream (its default close, or a client cancel / upstream error).
    case reset
    /// The connection dropped, the deadline passed or the server shut down.
    case aborted(String)
    /// Envoy broke the ext_proc protocol (out-of-order or malformed message).
    case protocolViolation(String)
}
