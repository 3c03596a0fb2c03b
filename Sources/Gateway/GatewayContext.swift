import EventLoop
import ExtProc
import ExtProcProto
import GRPCServer
import Logging
import Metrics
import PodMetrics
import PodSnapshot
import Routing
import SharedState
import Tracing
import Synchronization

/// What every request's filter shares: the pod registry, the routers, the
/// settings and the counters. Immutable or internally synchronized.
public final class GatewayContext: Sendable {
    public let registry: PodRegistry
    public let routers: RouterRegistry
    public let logger: Logger
    public let stats = GatewayStats()
    /// ext_proc counters and per-phase filter time.
    public let extProcStats = ExtProcStats()
    /// Routed requests the usage observer may read the response of.
    public let observed: ObservedRequests
    /// Routing state shared with other replicas; nil: this replica alone.
    public let shared: SharedRoutingState?
    /// Span export (`--otlp-endpoint`); nil: no tracing.
    public let tracer: Tracer?
    /// Decision time per strategy (blends share "blend"), fixed at start.
    public let decisionDurations: [String: Histogram]
    /// Header the ORIGINAL_DST cluster reads.
    public let targetHeader: String
    /// Sent with the answer to request headers in BUFFERED mode: the full
    /// processing mode for the rest of the stream, with the response body
    /// phase turned off (nothing reads response bodies until usage
    /// accounting lands). nil when Envoy's configured mode should stand.
    let modeOverrideAfterRequestHeaders: ProcessingModeOverride?
    /// Sent with the answer to response headers of a successful routed
    /// response when usage is read: the response body phase back on
    /// (STREAMED: every byte passes unchanged, chunk by chunk).
    let modeOverrideToReadResponse: ProcessingModeOverride?
    /// The same for a JSON (non-streamed) response: BUFFERED_PARTIAL, so
    /// Envoy sends the whole body in one message (up to its buffer limit;
    /// past it the rest passes unread and the estimate stands).
    let modeOverrideToReadJSON: ProcessingModeOverride?
    /// For an upstream error with a JSON body: BUFFERED, so the body can be
    /// rewritten into OpenAI's shape when it is not already in it.
    let modeOverrideToReadError: ProcessingModeOverride?
    /// Read usage from responses (real tokens in pod accounting, TTFT).
    public let usageAccounting: Bool
    /// Bearer-token keys; nil: no authentication at the gateway.
    public let apiKeys: APIKeyStore?
    /// Add `stream_options.include_usage` to streamed requests that have no
    /// `stream_options`, and take the extra usage chunk out of the response
    /// (BUFFERED request bodies only: the body is rewritten whole).
    public let injectStreamUsage: Bool
    /// Route POSTs to other `/v1/*` paths on their body's `model` instead of
    /// answering 404 (engines' extra endpoints: tokenize, score, rerank…).
    public let passThroughUnknownPaths: Bool
    /// Endpoint-picker mode: fallbacks after the chosen pod in
    /// `x-gateway-destination-endpoint`; nil when off.
    public let endpointPickerFallbacks: Int?
    /// Per-user limits; nil: none.
    let limiter: Limiter?
    /// Largest non-streamed response body kept to read its usage; a larger
    /// one passes through and its request keeps the estimate.
    public let maxUsageBodyBytes: Int

    public init(registry: PodRegistry, routers: RouterRegistry, logger: Logger,
                extProc: ExtProcConfiguration, skipResponseBody: Bool, usageAccounting: Bool = true,
                maxUsageBodyBytes: Int = 4 << 20, apiKeys: APIKeyStore? = nil, injectStreamUsage: Bool = false,
                passThroughUnknownPaths: Bool = false, endpointPickerFallbacks: Int? = nil, targetHeader: String = "target-pod",
                limiter: Limiter? = nil, shared: SharedRoutingState? = nil, tracer: Tracer? = nil) {
        self.limiter = limiter
        self.shared = shared
        self.tracer = tracer
        // Usage another replica's observer read arrives after a batch interval or two.
        observed = ObservedRequests(lingerNanos: shared == nil ? 0 : 10_000_000_000)
        self.passThroughUnknownPaths = passThroughUnknownPaths
        self.endpointPickerFallbacks = endpointPickerFallbacks
        var durations: [String: Histogram] = [:]
        for n in routers.names + ["blend"] {
            durations[n] = Histogram(bounds: [0.000_000_5, 0.000_001, 0.000_002, 0.000_005, 0.000_01, 0.000_02, 0.000_05,
                                              0.000_1, 0.000_5, 0.001])
        }
        self.decisionDurations = durations
        self.apiKeys = apiKeys
        self.injectStreamUsage = injectStreamUsage && usageAccounting
            && (extProc.requestBodyMode == .buffered || extProc.requestBodyMode == .bufferedPartial)
        self.registry = registry
        self.routers = routers
        self.logger = logger
        self.targetHeader = targetHeader
        self.usageAccounting = usageAccounting
        self.maxUsageBodyBytes = maxUsageBodyBytes
        if skipResponseBody && extProc.requestBodyMode != .fullDuplexStreamed {
            // The whole mode for the rest of the stream; only the response body differs.
            func mode(_ responseBody: BodySendMode) -> ProcessingModeOverride {
                ProcessingModeOverride(requestHeaderMode: .send, responseHeaderMode: .send,
                                       requestBodyMode: extProc.requestBodyMode, responseBodyMode: responseBody,
                                       requestTrailerMode: .skip, responseTrailerMode: .skip)
            }
            modeOverrideAfterRequestHeaders = mode(.none)
            // Built whatever the accounting setting: a fairness strategy asks for usage per request.
            modeOverrideToReadResponse = mode(.streamed)
            modeOverrideToReadJSON = mode(.bufferedPartial)
            modeOverrideToReadError = mode(.buffered)
        } else {
            modeOverrideAfterRequestHeaders = nil
            modeOverrideToReadResponse = nil
            modeOverrideToReadJSON = nil
            modeOverrideToReadError = nil
        }
    }

    private let injectionWarned = Atomic<Bool>(false)

    /// The observer ticket as sent upstream: the number, and with shared
    /// state `@replica` (the usage observer's stream may reach a peer).
    func ticketText(_ t: UInt64) -> String {
        guard let s = shared else { return String(t) }
        return "\(t)@\(s.replicaID)"
    }

    /// A ticket this replica issued.
    func localTicket(_ text: String) -> UInt64? {
        guard let at = text.firstIndex(of: "@") else { return shared == nil ? UInt64(text) : nil }
        guard let s = shared, text[text.index(after: at)...] == s.replicaID else { return nil }
        return UInt64(text[..<at])
    }

    /// A ticket another replica issued (shared state only): its replica and number.
    func foreignTicket(_ text: String) -> (String, UInt64)? {
        guard let s = shared, let at = text.firstIndex(of: "@"), let t = UInt64(text[..<at]) else { return nil }
        let replica = String(text[text.index(after: at)...])
        return replica == s.replicaID || replica.isEmpty ? nil : (replica, t)
    }

    /// A peer read the usage of a response this replica routed.
    func applyForwardedUsage(ticket: UInt64, promptTokens: Int?, completionTokens: Int, estimated: Bool) {
        guard let e = observed.entry(ticket) else {
            stats.observedUnmatched.add()
            return
        }
        stats.observed.add()
        if estimated { stats.usageEstimated.add() } else { stats.usageReported.add() }
        e.charge?.settle(promptTokens: promptTokens, completionTokens: completionTokens)
        e.usage?.settle(promptTokens: promptTokens, completionTokens: completionTokens)
    }

    /// `--inject-stream-usage` rewrites the response, which only the
    /// in-band response phase can: said once, at the first request that
    /// shows Envoy runs another phase.
    func warnInjectionNeedsInBand() {
        guard !injectionWarned.exchange(true, ordering: .relaxed) else { return }
        logger.warning("gateway.inject_stream_usage.ignored", metadata: [
            "reason": "Envoy's routing ext_proc filter does not send responses (envoy-config --response-phase observer or none); --inject-stream-usage needs --response-phase in-band",
        ])
    }

    /// A filter for one new ext_proc stream, on `loop`'s thread.
    public func makeFilter(on loop: EventLoop) -> any ExtProcFilter {
        GatewayFilter(context: self, pods: reader(on: loop), loop: loop)
    }

    /// The loop's snapshot reader (created on first use; loop-confined).
    func reader(on loop: EventLoop) -> PodSnapshotReader {
        if let r = loop.loopLocal["gateway.pods"] as? PodSnapshotReader { return r }
        let r = PodSnapshotReader(registry: registry)
        loop.loopLocal["gateway.pods"] = r
        return r
    }
}

/// Request outcomes, readable from any thread.
public final class GatewayStats: Sendable {
    /// Requests from their headers to their stream's end (the whole HTTP
    /// request through Envoy), by model (a served model's name, else
    /// "unknown"), strategy, pod and HTTP status ("none" when the gateway did
    /// not see the response: observer off, or the stream was cut).
    public let requestDuration = LabelledHistogram(
        labelNames: ["model", "strategy", "pod", "status"],
        bounds: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300])
    /// Time to decide a request's pod: body parse, snapshot read, router.
    public let routingDuration = Histogram(bounds: [0.000_001, 0.000_002, 0.000_005, 0.000_01, 0.000_02, 0.000_05,
                                                    0.000_1, 0.000_2, 0.000_5, 0.001, 0.005, 0.01])
    public let routed = Counter()
    public let completed = Counter()
    public let rejected = Counter()
    public let reset = Counter()
    public let aborted = Counter()
    public let violations = Counter()
    /// From routing to the first content event of a streamed response.
    public let timeToFirstToken = Histogram(bounds: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60])
    /// Responses whose usage the engine reported.
    public let usageReported = Counter()
    /// Streamed responses without usage: completion tokens counted from content events.
    public let usageEstimated = Counter()
    /// Successful responses whose usage could not be read (no usage, too large, cut off).
    public let usageMissing = Counter()
    /// Responses the usage observer matched to a routed request.
    public let observed = Counter()
    /// Responses the observer saw without a routed request (gateway or
    /// Envoy errors, or the routing stream already ended).
    public let observedUnmatched = Counter()
    /// Requests refused by a user's limits, by the limit (requests, tokens).
    public let rateLimitedRequests = Counter()
    public let rateLimitedTokens = Counter()
    func countRateLimited(_ kind: String) { (kind == "requests" ? rateLimitedRequests : rateLimitedTokens).add(1) }
    /// Decisions whose strategy fell back, by strategy and reason.
    private let fallbacks = Mutex<[FallbackKey: UInt64]>([:])
    struct FallbackKey: Hashable, Sendable {
        let strategy: String
        let reason: String
    }

    func countFallback(strategy: String, reason: String) {
        fallbacks.withLock { m in
            // Bounded: blends are client-chosen text.
            if m.count < 1024 || m[FallbackKey(strategy: strategy, reason: reason)] != nil {
                m[FallbackKey(strategy: strategy, reason: reason), default: 0] += 1
            }
        }
    }

    /// (strategy, reason, count), sorted.
    public var fallbackCounts: [(strategy: String, reason: String, count: UInt64)] {
        fallbacks.withLock { m in m.map { ($0.key.strategy, $0.key.reason, $0.value) } }
            .sorted { ($0.strategy, $0.reason) < ($1.strategy, $1.reason) }
    }

    /// Upstream error responses without an OpenAI body, answered as OpenAI errors.
    public let upstreamErrorsNormalized = Counter()
}
