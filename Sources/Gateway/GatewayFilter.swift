import EventLoop
import ExtProc
import ExtProcProto
import Logging
import Metrics
import OpenAIAPI
import PodSnapshot
import RateLimit
import Routing
import Tracing

/// The gateway's logic for one HTTP request: validate the OpenAI request,
/// pick an endpoint with the strategy the client named, tell Envoy where to
/// send it (`target-pod`, always overwritten), and name the pod in the reply.
///
/// One instance per ext_proc stream, used on one event loop.
final class GatewayFilter: ExtProcFilter {
    private let context: GatewayContext
    private let pods: PodSnapshotReader
    private var endpoint: OpenAIEndpoint = .chatCompletions
    private var router: (any Router)?
    private var requestID = ""
    /// The user the request's API key is bound to (when keys are on).
    private(set) var authenticatedUser: String?
    /// True when the client sent no x-request-id and the gateway made one
    /// (Envoy normally generates it; this covers configs that do not).
    private var generatedRequestID = false
    private var chosen: PodEndpoint?
    /// Why the strategy fell back, when it did (`x-switchboard-fallback`).
    private var fallback: String?
    /// The client's `x-session-id`, or the one the gateway made for a
    /// session-affinity request without it (returned in the response).
    private var sessionID: String?
    private var sessionIDGenerated = false
    /// Endpoint-picker mode: the endpoints the gateway in front allows.
    private var subsetHint: String?
    /// Endpoint-picker mode: the decision in the `envoy.lb` namespace.
    private var pickerMetadata: [String: [String: String]]?
    /// The `user` header (the reference's way to name the user; the body's `user` and an API key's user win).
    private var userHeader: String?
    /// The strategy's estimate to settle with real usage (vtc-basic).
    private var usageSink: (any UsageSink)?
    /// The ext_proc stream ended (a deferred decision arriving later is dropped).
    private var streamHasEnded = false
    /// How a deferred decision (the shared limits' Redis round trip) is delivered.
    private var resume: ExtProcResume?
    /// The user's limit reservation (settled with the usage, released when routing fails).
    private var limitCharge: LimitCharge?
    /// The admitted user's rate-limit headers, for the in-band response phase.
    private var rateLimitHeaders: [(String, String)]?
    /// The load charged for this request, released exactly once in
    /// `streamEnded` of the stream that routed it (`ownsCharge`); an
    /// observer stream only settles its usage.
    private var charge: RequestCharge?
    private var ownsCharge = true
    /// What Envoy said about this stream (observer or routing stream, and
    /// whether the routing stream sees the response).
    private var info = ExtProcStreamInfo()
    /// This request's entry for the usage observer, removed when the stream ends.
    private var ticket: UInt64?
    /// When the pod was chosen (TTFT is measured from here).
    private var routedAt: UInt64 = 0
    /// Reading the response's usage: an SSE stream, or a JSON body collected
    /// up to the context's limit. Both nil when the response is not read.
    private var sse: SSEUsageScanner?
    private var responseJSON: [UInt8]?
    private var usageSettled = false
    /// An observer stream reading a response another replica routed: where
    /// its usage goes (shared state forwards it to that replica).
    private var forwardTo: (replica: String, ticket: UInt64)?
    /// A POST to a `/v1/*` path the gateway does not model, routed on its
    /// body's model (`--pass-through-unknown-paths`).
    private var passThrough = false
    /// Set when the gateway added `include_usage` to a streamed request: the
    /// extra usage chunk is taken out of the response.
    private var stripper: StreamUsageRewriter.Stripper?
    /// An upstream error's JSON body, collected to check its shape.
    private var errorBody: [UInt8]?
    private var errorStatus = 0
    /// For the request histogram: when the request headers came, the served
    /// model it named, and the status the client got (0: not seen here).
    private var headersAt: UInt64 = 0
    private var servedModel: String?
    private var clientStatus = 0
    /// For the request log line: the routing decision's time, the usage read here.
    private var decisionNanos: UInt64 = 0
    private var loggedUsage: OpenAIUsage?
    /// Tracing (`--otlp-endpoint`): this request's span context and its
    /// parent span (empty: a root). The span starts at `headersAt`.
    private var trace: TraceContext?
    private var traceParent: [UInt8] = []

    /// The stream's event loop (the shared limits' Redis connection lives on it).
    private let loop: EventLoop?

    init(context: GatewayContext, pods: PodSnapshotReader, loop: EventLoop? = nil) {
        self.context = context
        self.pods = pods
        self.loop = loop
    }

    func streamStarted(_ info: ExtProcStreamInfo) {
        self.info = info
    }

    func takeDynamicMetadata() -> [String: [String: String]]? {
        defer { pickerMetadata = nil }
        return pickerMetadata
    }

    func requestHeaders(_ headers: HTTPHeadersMessage) -> FilterDecision {
        headersAt = monotonicNanos()
        if let t = context.tracer, !info.startsAtResponse {
            (traceParent, trace) = t.start(traceparent: headers.value(of: "traceparent"))
        }
        let path = headers.value(of: ":path") ?? ""
        let method = headers.value(of: ":method") ?? ""
        if let s = headers.value(of: "x-session-id"), !s.isEmpty { sessionID = s }
        if let u = headers.value(of: "user"), !u.isEmpty { userHeader = u }
        if context.endpointPickerFallbacks != nil { subsetHint = headers.value(of: "x-gateway-destination-endpoint-subset") }
        if let id = headers.value(of: "x-request-id"), !id.isEmpty {
            requestID = id
        } else {
            requestID = Self.newRequestID()
            generatedRequestID = true
        }
        // Authentication first: every path, passed-through ones included.
        if let keys = context.apiKeys {
            guard let token = APIKeyStore.token(authorization: headers.value(of: "authorization"),
                                                apiKey: headers.value(of: "x-api-key")) else {
                return reject(OpenAIError(status: 401, message: "missing API key: send 'Authorization: Bearer KEY'",
                                          code: "missing_api_key"))
            }
            guard let entry = keys.authenticate(token.utf8) else {
                return reject(OpenAIError(status: 401, message: "incorrect API key provided", code: "invalid_api_key"))
            }
            authenticatedUser = entry.user
        }
        guard let ep = OpenAIEndpoint(path: path) else {
            if context.passThroughUnknownPaths, path.hasPrefix("/v1/"), method == "POST" {
                // Routed on the body's model, read as little as possible; its
                // response is not read for usage.
                passThrough = true
                return headers.endOfStream
                    ? reject(OpenAIError(status: 400, message: "request body is empty; expected a JSON object naming a model",
                                         code: "invalid_json"))
                    : .waitForBody(modeOverride: context.modeOverrideAfterRequestHeaders)
            }
            return reject(OpenAIError(status: 404, message: "unknown endpoint '\(path)'; Switchboard serves \(OpenAIEndpoint.allCases.map(\.rawValue).joined(separator: ", "))",
                                      code: "unknown_url"), diagnostic: ("x-error-unknown-path", "true"))
        }
        endpoint = ep
        if ep == .models {
            guard method == "GET" else {
                return reject(OpenAIError(status: 405, message: "\(ep.rawValue) only accepts GET", code: "method_not_allowed"))
            }
            return .respond(modelsList())
        }
        guard method == "POST" else {
            return reject(OpenAIError(status: 405, message: "\(ep.rawValue) only accepts POST", code: "method_not_allowed"))
        }
        if let ct = headers.value(of: "content-type"), !ct.isEmpty, !Self.mentionsJSON(ct) {
            return reject(OpenAIError(status: 415, message: "content-type '\(ct)' is not JSON; send the body with content-type: application/json",
                                      param: "content-type", code: "unsupported_media_type"))
        }
        do {
            // A named strategy is resolved now (an unknown one fails before the
            // body is read); none named: the model's default, after the body.
            if let named = headers.value(of: "routing-strategy"), named.contains(where: { $0 != " " && $0 != "\t" }) {
                router = try context.routers.router(named: named)
            }
        } catch {
            return reject(OpenAIError(status: 400, message: "\(error)", param: "routing-strategy", code: "invalid_routing_strategy"),
                          diagnostic: ("x-error-invalid-routing-strategy", headers.value(of: "routing-strategy") ?? ""))
        }
        if headers.endOfStream {
            return reject(OpenAIError(status: 400, message: "request body is empty; expected a JSON object", code: "invalid_json"))
        }
        return .waitForBody(modeOverride: context.modeOverrideAfterRequestHeaders)
    }

    func attach(_ resume: ExtProcResume) { self.resume = resume }

    /// The body phase as named steps; each may stop the request with an
    /// OpenAI error. Limits plug into `limit` (or `limitShared`, deferred
    /// while Redis answers), strategies into `route`, usage accounting into
    /// `account`, without touching each other.
    func requestBody(_ body: [UInt8]) -> FilterDecision {
        let started = monotonicNanos()
        do throws(Rejection) {
            var summary = try parse(body)
            // A key bound to a user decides who the request is, whatever the body says.
            if let u = authenticatedUser { summary.user = u }
            let snapshot = pods.current
            var candidates = try admit(summary, snapshot: snapshot)
            if context.endpointPickerFallbacks != nil, let hint = subsetHint {
                // The gateway in front narrowed the endpoints it may use.
                let allowed = Set(hint.split(separator: ",").map { String($0.filter { $0 != " " }) })
                candidates = snapshot.view(for: summary.model,
                                           candidates: candidates.endpoints.filter { allowed.contains($0.address) })
            }
            if let deferred = limitShared(summary, body: body, candidates: candidates, snapshot: snapshot, started: started) {
                return deferred
            }
            return proceed(summary, body: body, candidates: candidates, snapshot: snapshot, started: started,
                           quota: try limit(summary))
        } catch {
            return error.decision
        }
    }

    /// Steps 3 and 4 after the limits: route, account, and the answer.
    private func proceed(_ summary: OpenAIRequestSummary, body: [UInt8], candidates: ModelView, snapshot: PodSnapshot,
                         started: UInt64, quota: Quota?) -> FilterDecision {
        do throws(Rejection) {
            let (pod, router): (PodEndpoint, any Router)
            do throws(Rejection) {
                (pod, router) = try route(summary, body: body, candidates: candidates, snapshot: snapshot)
            } catch {
                limitCharge?.release()  // never served: the user gets the request back
                throw error
            }
            account(summary, pod: pod, snapshot: snapshot, started: started)
            var m = HeaderMutation()
            if let q = quota {
                // Envoy copies these into the response (the route's response_headers_to_add),
                // or the in-band response phase adds them.
                rateLimitHeaders = q.headers
                for (k, v) in q.headers { m.overwrite("x-switchboard-" + k.dropFirst(2), v) }
            }
            m.overwrite(context.targetHeader, pod.address)
            if let n = context.endpointPickerFallbacks {
                let list = Self.destinations(pod, fallbacks: n, view: candidates)
                m.overwrite("x-gateway-destination-endpoint", list)
                pickerMetadata = ["envoy.lb": ["x-gateway-destination-endpoint": list]]
            }
            if generatedRequestID { m.overwrite("x-request-id", requestID) }
            // The engine continues the trace under this request's span.
            if let t = trace { m.overwrite("traceparent", t.traceparent) }
            if let f = fallback { m.overwrite("x-switchboard-fallback", f) }
            if sessionIDGenerated, let s = sessionID { m.overwrite("x-session-id", s) }
            if info.responseBodyOff {
                // This stream will not see the response: Envoy names the pod
                // and strategy in it (copied from these request headers),
                // and the usage observer (when configured) reads it.
                m.overwrite("x-switchboard-strategy", router.name)
                if context.injectStreamUsage { context.warnInjectionNeedsInBand() }
                if needsUsage {
                    let t = context.observed.register(.init(requestID: requestID, charge: charge, routedAt: routedAt,
                                                            usage: usageSink))
                    ticket = t
                    m.overwrite(ObservedRequests.header, context.ticketText(t))
                }
                return .proceed(m, modeOverride: nil)
            }
            m.overwrite("routing-strategy", router.name)
            // --inject-stream-usage: ask the engine for the usage chunk the
            // client did not ask for; `responseBody` takes it out again.
            if context.injectStreamUsage, summary.stream, !summary.hasStreamOptions,
               endpoint == .chatCompletions || endpoint == .completions,
               let rewritten = StreamUsageRewriter.injecting(into: body) {
                stripper = StreamUsageRewriter.Stripper()
                m.overwrite("content-length", "\(rewritten.count)")
                return .replaceBody(m, rewritten)
            }
            return .proceed(m, modeOverride: nil)
        } catch {
            return error.decision
        }
    }

    /// Whether this request's response must be read for its usage: today
    /// usage accounting (pod token counters, TTFT); per-user limits and
    /// fair admission add their own reasons here. Without it, the reduced
    /// path costs two ext_proc messages and Envoy skips the observer.
    private var needsUsage: Bool { (context.usageAccounting || usageSink != nil) && !passThrough }

    /// A request stopped by one of the steps, with the answer Envoy sends.
    struct Rejection: Error {
        let decision: FilterDecision
    }

    /// Step 1: the OpenAI request summary (validates the whole body once).
    private func parse(_ body: [UInt8]) throws(Rejection) -> OpenAIRequestSummary {
        do {
            return passThrough ? try OpenAIRequestSummary.parseModelOnly(body)
                               : try OpenAIRequestSummary.parse(body, endpoint: endpoint)
        } catch {
            throw Rejection(decision: reject(error))
        }
    }

    /// Step 2: may this request be served at all (a known model today;
    /// authentication and per-user limits join here).
    private func admit(_ summary: OpenAIRequestSummary, snapshot: PodSnapshot) throws(Rejection) -> ModelView {
        guard let candidates = snapshot.view(for: summary.model) else {
            throw Rejection(decision: reject(OpenAIError(status: 404, message: "The model '\(summary.model)' does not exist",
                                                         param: "model", code: "model_not_found"),
                                             diagnostic: ("x-error-no-model-backends", summary.model)))
        }
        servedModel = summary.model
        return candidates
    }

    /// Step 2b: a user with limits is admitted (its request counted and its
    /// tokens reserved in one atomic step) or refused with 429, OpenAI's
    /// rate-limit headers and `retry-after`. Users without a record, and
    /// requests without a user, are not limited.
    private func limit(_ summary: OpenAIRequestSummary) throws(Rejection) -> Quota? {
        guard let limiter = context.limiter, limiter.shared == nil, let user = summary.user ?? userHeader, !user.isEmpty,
              let limits = limiter.limits(for: user) else { return nil }
        let (prompt, tokens) = Self.reservation(summary, defaultMaxTokens: limiter.configuration.defaultMaxTokens)
        return try settleAdmission(limiter.store.admit(AdmissionRequest(user: limits, tokens: tokens, now: Limiter.now)),
                                   user: user, tokens: tokens, prompt: prompt, store: .embedded(limiter.store))
    }

    /// Step 2b with the shared store: the admission is a Redis round trip,
    /// so the decision is deferred (`.later`) and resumed on this loop when
    /// Redis answers. nil: not applicable (no shared store, no user).
    private func limitShared(_ summary: OpenAIRequestSummary, body: [UInt8], candidates: ModelView, snapshot: PodSnapshot,
                             started: UInt64) -> FilterDecision? {
        guard let limiter = context.limiter, let shared = limiter.shared, let resume,
              let user = summary.user ?? userHeader, !user.isEmpty, !limiter.knownUnlimited(user),
              let loop, let conn = limiter.connection(on: loop) else { return nil }
        let (prompt, tokens) = Self.reservation(summary, defaultMaxTokens: limiter.configuration.defaultMaxTokens)
        // The answer may come synchronously (Redis down: an immediate error): then it is returned, not resumed.
        let handoff = Handoff()
        shared.admit(user: user, tokens: tokens, on: conn) { [self] result in
            if streamHasEnded {
                // The client went away while Redis answered: nothing to route, and nothing to charge.
                if case .success(.admitted(_, let res)?) = result { shared.release(res, on: conn) }
                return
            }
            let decision: FilterDecision
            switch result {
            case .success(nil):
                limiter.rememberUnlimited(user)
                decision = proceed(summary, body: body, candidates: candidates, snapshot: snapshot, started: started, quota: nil)
            case .success(let admission?):
                do throws(Rejection) {
                    let q = try settleAdmission(admission, user: user, tokens: tokens, prompt: prompt,
                                                store: .shared(shared, conn))
                    decision = proceed(summary, body: body, candidates: candidates, snapshot: snapshot, started: started, quota: q)
                } catch {
                    decision = error.decision
                }
            case .failure(let e):
                if limiter.configuration.failOpen {
                    limiter.storeErrorsAdmitted.add(1)
                    context.logger.warning("limits.store.unavailable", metadata: [
                        "request.id": "\(requestID)", "user": "\(user)", "error": "\(e)", "policy": "fail-open: admitted uncounted",
                    ])
                    decision = proceed(summary, body: body, candidates: candidates, snapshot: snapshot, started: started, quota: nil)
                } else {
                    limiter.storeErrorsRefused.add(1)
                    context.logger.warning("limits.store.unavailable", metadata: [
                        "request.id": "\(requestID)", "user": "\(user)", "error": "\(e)", "policy": "fail-closed: 503",
                    ])
                    decision = reject(OpenAIError(status: 503, message: "the rate limiter is unavailable (\(e)); try again shortly",
                                                  code: "rate_limiter_unavailable"), extraHeaders: [("retry-after", "1")])
                }
            }
            if handoff.returned { resume.resume(decision) } else { handoff.early = decision }
        }
        handoff.returned = true
        return handoff.early ?? .later
    }

    /// A request's prompt estimate (body bytes / 4, as the in-flight charge
    /// uses) and the tokens it reserves: that plus its output cap, clamped (a
    /// client's max_tokens can be any JSON integer; the sum must not
    /// overflow, and no limit is anywhere near 2^40 tokens).
    static func reservation(_ summary: OpenAIRequestSummary, defaultMaxTokens: Int) -> (prompt: Int, tokens: Int) {
        let prompt = promptEstimate(summary)
        return (prompt, min(prompt, 1 << 40) + min(max(0, summary.maxTokens ?? defaultMaxTokens), 1 << 40))
    }

    /// Prompt tokens estimated from the body size until usage says.
    static func promptEstimate(_ summary: OpenAIRequestSummary) -> Int { max(1, summary.bodyBytes / 4) }

    /// Whether `limitShared` already returned when the store answered.
    private final class Handoff {
        var returned = false
        var early: FilterDecision?
    }

    /// An admission from either store: the reservation kept (settled with
    /// the usage), or the 429 thrown.
    private func settleAdmission(_ admission: Admission, user: String, tokens: Int, prompt: Int,
                                 store: LimitCharge.Store) throws(Rejection) -> Quota {
        switch admission {
        case .admitted(let q, let reservation):
            limitCharge = LimitCharge(store: store, reservation: reservation, promptEstimate: prompt)
            return q
        case .limited(let q, let kind, let retryAfter):
            context.stats.countRateLimited(kind.rawValue)
            let used = kind == .requests ? q.limitRequests - q.remainingRequests : q.limitTokens - q.remainingTokens
            let message: String
            if kind == .tokens && retryAfter == nil {
                message = "Request too large for user '\(user)' on tokens per min (TPM): Limit \(q.limitTokens), Requested \(tokens) (prompt estimate plus max_tokens); lower max_tokens or the prompt."
            } else {
                let what = kind == .requests ? "requests per min (RPM)" : "tokens per min (TPM)"
                let limit = kind == .requests ? q.limitRequests : q.limitTokens
                message = "Rate limit reached for user '\(user)' on \(what): Limit \(limit), Used \(used), Requested \(kind == .requests ? 1 : tokens). Please try again in \(retryAfter ?? 0)s."
            }
            var extra = q.headers
            if let r = retryAfter { extra.append(("retry-after", "\(r)")) }
            throw Rejection(decision: reject(OpenAIError(status: 429, message: message, type: kind.rawValue, code: "rate_limit_exceeded"),
                                             extraHeaders: extra))
        }
    }

    /// Step 3: the strategy the client named picks one candidate.
    private func route(_ summary: OpenAIRequestSummary, body: [UInt8], candidates: ModelView,
                       snapshot: PodSnapshot) throws(Rejection) -> (PodEndpoint, any Router) {
        if router == nil {
            if !snapshot.defaultStrategies.isEmpty, let name = snapshot.defaultStrategies[summary.model],
               let r = try? context.routers.router(named: name) {
                router = r  // the pods file's routingStrategy for this model
            } else {
                do {
                    router = try context.routers.router(named: nil)
                } catch {
                    throw Rejection(decision: reject(OpenAIError(status: 400, message: "\(error)", param: "routing-strategy",
                                                                 code: "invalid_routing_strategy")))
                }
            }
        }
        guard let router else { throw Rejection(decision: reject(OpenAIError(status: 500, message: "no router resolved"))) }
        do {
            if router.usesSessions && sessionID == nil {
                sessionID = Self.newRequestID()
                sessionIDGenerated = true
            }
            let t0 = monotonicNanos()
            var request = RoutingRequest(model: summary.model, stream: summary.stream, bodyBytes: summary.bodyBytes,
                                         requestID: requestID, sessionID: sessionID, maxTokens: summary.maxTokens,
                                         user: summary.user ?? userHeader,
                                         prompt: router.needsPrompt ? Array(summary.promptText(in: body).utf8) : nil)
            request.promptIsRaw = endpoint == .completions
            let decision = try router.decide(request, view: candidates)
            (context.decisionDurations[router.name] ?? context.decisionDurations["blend"])?.observe(nanos: monotonicNanos() &- t0)
            usageSink = UsageSinks.join(decision.usage, limitCharge)
            if let why = decision.fallback {
                fallback = why
                context.stats.countFallback(strategy: router.name, reason: why)
                context.logger.debug("gateway.route.fallback", metadata: [
                    "request.id": "\(requestID)", "router.name": "\(router.name)", "reason": "\(why)",
                    "pod.address": "\(decision.pod.address)",
                ])
            }
            return (decision.pod, router)
        } catch {
            context.logger.warning("gateway.route.failed", metadata: [
                "request.id": "\(requestID)", "request.model": "\(summary.model)",
                "router.name": "\(router.name)", "error": "\(error)",
            ])
            throw Rejection(decision: reject(OpenAIError(status: 503, message: "\(error)", code: "no_ready_endpoints"),
                                             diagnostic: ("x-error-routing", "true")))
        }
    }

    /// Step 4: count the decision and charge the pod's in-flight load
    /// (released exactly once in `streamEnded`).
    private func account(_ summary: OpenAIRequestSummary, pod: PodEndpoint, snapshot: PodSnapshot, started: UInt64) {
        chosen = pod
        routedAt = monotonicNanos()
        context.stats.routed.add(1)
        decisionNanos = routedAt &- started
        context.stats.routingDuration.observe(nanos: decisionNanos)
        if let load = snapshot.loads[pod.address] {
            // Prompt tokens estimated from the body size until a tokenizer lands.
            charge = RequestCharge(load: load, tokens: Self.promptEstimate(summary))
        }
    }

    func responseHeaders(_ headers: HTTPHeadersMessage) -> FilterDecision {
        if info.startsAtResponse { return observe(headers) }
        guard let pod = chosen else { return unroutedResponse(headers) }
        var m = HeaderMutation()
        m.overwrite("x-switchboard-pod", pod.address)
        if let r = router { m.overwrite("x-switchboard-strategy", r.name) }
        if let f = fallback { m.overwrite("x-switchboard-fallback", f) }
        if let s = sessionID { m.overwrite("x-session-id", s) }
        for (k, v) in rateLimitHeaders ?? [] { m.overwrite(k, v) }
        m.overwrite("x-request-id", requestID)
        let status = headers.value(of: ":status")
        clientStatus = status.flatMap { Int($0) } ?? 0
        if !Self.isSuccess(status), let code = status.flatMap({ Int($0) }), code >= 400,
           !Self.mentionsJSON(headers.value(of: "content-type") ?? "") {
            // Envoy's own replies (upstream connect failure, timeout) and
            // proxies' HTML pages: clients get an OpenAI error object instead.
            context.stats.upstreamErrorsNormalized.add()
            context.logger.info("gateway.upstream.error", metadata: [
                "request.id": "\(requestID)", "pod.address": "\(pod.address)", "http.status": "\(code)",
            ])
            var e = OpenAIError(status: code,
                                message: "the upstream pod \(pod.address) answered HTTP \(code) without an OpenAI error body "
                                    + "(pod unreachable, reset or timed out); request \(requestID)",
                                code: "upstream_error")
            if code >= 500 && code != 503 { e.type = "api_error" }
            return reject(e, diagnostic: ("x-switchboard-pod", pod.address))
        }
        if !Self.isSuccess(status), let code = status.flatMap({ Int($0) }), code >= 400, !headers.endOfStream,
           let o = context.modeOverrideToReadError {
            // A JSON error: read it whole and rewrite it if it is not OpenAI's shape.
            errorBody = []
            errorStatus = code
            return .proceed(m, modeOverride: o)
        }
        guard needsUsage, !headers.endOfStream, Self.isSuccess(status) else {
            return .proceed(m, modeOverride: nil)
        }
        // Read the body for its usage: every byte still passes unchanged.
        if (headers.value(of: "content-type") ?? "").hasPrefix("text/event-stream") {
            sse = SSEUsageScanner()
            return .proceed(m, modeOverride: context.modeOverrideToReadResponse)
        }
        responseJSON = []
        return .proceed(m, modeOverride: context.modeOverrideToReadJSON)
    }

    func responseBody(_ chunk: HTTPBodyMessage) -> FilterDecision {
        if errorBody != nil {
            errorBody!.append(contentsOf: chunk.body)
            guard chunk.endOfStream || chunk.endOfStreamWithoutMessage else { return .proceed }
            let body = errorBody!
            errorBody = nil
            guard let normalized = Self.normalizedError(body, status: errorStatus, requestID: requestID) else { return .proceed }
            context.stats.upstreamErrorsNormalized.add()
            var h = HeaderMutation()
            h.overwrite("content-type", "application/json")
            h.overwrite("content-length", "\(normalized.count)")
            return .replaceBody(h, normalized)
        }
        if sse != nil {
            if sse!.feed(chunk.body[...]), forwardTo == nil {  // another replica's request: its routing time is not ours
                context.stats.timeToFirstToken.observe(nanos: monotonicNanos() &- routedAt)
            }
            if stripper != nil {
                let last = chunk.endOfStream || chunk.endOfStreamWithoutMessage
                let out = stripper!.pass(chunk.body[...], last: last)
                if last { finishResponse() }
                return .replaceBody(nil, out)
            }
        } else if responseJSON != nil {
            if responseJSON!.count + chunk.body.count <= context.maxUsageBodyBytes {
                responseJSON!.append(contentsOf: chunk.body)
            } else {
                responseJSON = nil  // too large to keep: the estimate stands
                settleUsage(nil)
            }
        }
        if chunk.endOfStream || chunk.endOfStreamWithoutMessage { finishResponse() }
        return .proceed
    }

    /// The usage observer's view of a response: find the routed request by
    /// its ticket and read the body for usage and TTFT. Envoy does not wait
    /// for these answers (observability mode); every byte passes unchanged.
    private func observe(_ headers: HTTPHeadersMessage) -> FilterDecision {
        let text = headers.value(of: ObservedRequests.header)
        if let text, let (replica, t) = context.foreignTicket(text) {
            // Routed by another replica (Envoy's observer stream reached this
            // one): read the usage here, settle it there.
            forwardTo = (replica, t)
            return readResponse(headers)
        }
        guard let t = text.flatMap({ context.localTicket($0) }),
              let e = context.observed.entry(t) else {
            // Not a routed request (a gateway or Envoy error), or its routing
            // stream already ended.
            context.stats.observedUnmatched.add()
            return .proceed
        }
        requestID = e.requestID
        e.status.set(headers.value(of: ":status").flatMap { Int($0) } ?? 0)
        charge = e.charge
        usageSink = e.usage
        ownsCharge = false
        routedAt = e.routedAt
        context.stats.observed.add()
        return readResponse(headers)
    }

    /// Starts reading a successful response's usage (SSE or JSON).
    private func readResponse(_ headers: HTTPHeadersMessage) -> FilterDecision {
        guard !headers.endOfStream, Self.isSuccess(headers.value(of: ":status")) else { return .proceed }
        if (headers.value(of: "content-type") ?? "").hasPrefix("text/event-stream") {
            sse = SSEUsageScanner()
        } else {
            responseJSON = []
        }
        return .proceed
    }

    /// A response to a request no pod was chosen for: Envoy's own reply
    /// (a body over the buffer limit: 413, a request timeout) unless it is
    /// already JSON. Clients get the OpenAI shape either way.
    private func unroutedResponse(_ headers: HTTPHeadersMessage) -> FilterDecision {
        guard let code = headers.value(of: ":status").flatMap({ Int($0) }), code >= 400,
              !Self.mentionsJSON(headers.value(of: "content-type") ?? "") else { return .proceed }
        context.stats.upstreamErrorsNormalized.add()
        let message: String
        switch code {
        case 413: message = "request body is larger than the gateway accepts (Envoy's buffer limit); request \(requestID)"
        case 408: message = "the request body did not arrive in time; request \(requestID)"
        default: message = "the gateway's proxy answered HTTP \(code) before a pod was chosen; request \(requestID)"
        }
        return reject(OpenAIError(status: code, message: message, code: code == 413 ? "request_too_large" : "proxy_error"))
    }

    /// The response ended: account what it used.
    private func finishResponse() {
        if let s = sse {
            settleUsage(s.usage)
            sse = nil
        } else if let body = responseJSON {
            settleUsage(OpenAIUsage.parse(responseBody: body))
            responseJSON = nil
        }
    }

    /// Real tokens replace the estimate in the pod's accounting, once.
    private func settleUsage(_ usage: OpenAIUsage?) {
        guard !usageSettled else { return }
        usageSettled = true
        if let f = forwardTo {
            // The owner counts it (usage stats, pod and user charges).
            if let u = usage {
                context.shared?.forwardUsage(to: f.replica, ticket: f.ticket, promptTokens: u.promptTokens,
                                             completionTokens: u.completionTokens, estimated: u.estimated)
            }
            return
        }
        guard let u = usage else {
            context.stats.usageMissing.add()
            return
        }
        loggedUsage = u
        if u.estimated { context.stats.usageEstimated.add() } else { context.stats.usageReported.add() }
        charge?.settle(promptTokens: u.promptTokens, completionTokens: u.completionTokens)
        usageSink?.settle(promptTokens: u.promptTokens, completionTokens: u.completionTokens)
    }

    /// `x-gateway-destination-endpoint`: the chosen pod, then up to `fallbacks`
    /// other usable pods, fewest in-flight first (Envoy's override_host
    /// tries them in order when the first cannot be reached).
    static func destinations(_ pod: PodEndpoint, fallbacks: Int, view: ModelView) -> String {
        var out = pod.address
        guard fallbacks > 0 else { return out }
        var others: [(Int, Int)] = []  // (in-flight, index)
        for i in 0..<view.count where view.usable(i) && view.endpoints[i] != pod { others.append((view.inFlight(i), i)) }
        others.sort { $0 < $1 }
        for (_, i) in others.prefix(fallbacks) { out += "," + view.endpoints[i].address }
        return out
    }

    /// A random version-4 UUID in its usual text form.
    static func newRequestID() -> String {
        var g = SystemRandomNumberGenerator()
        let a = g.next() as UInt64, b = g.next() as UInt64
        let hi = (a & 0xFFFF_FFFF_FFFF_0FFF) | 0x0000_0000_0000_4000
        let lo = (b & 0x3FFF_FFFF_FFFF_FFFF) | 0x8000_0000_0000_0000
        func hex(_ v: UInt64, _ digits: Int) -> String {
            let s = String(v, radix: 16)
            return String(repeating: "0", count: digits - s.count) + s
        }
        return "\(hex(hi >> 32, 8))-\(hex((hi >> 16) & 0xFFFF, 4))-\(hex(hi & 0xFFFF, 4))-\(hex(lo >> 48, 4))-\(hex(lo & 0xFFFF_FFFF_FFFF, 12))"
    }

    /// An upstream JSON error rewritten into OpenAI's shape, or nil when it
    /// already is one (`{"error":{"message":…}}`: passed through unchanged,
    /// never double-encoded). vLLM's older `{"object":"error","message":…}`
    /// and FastAPI's `{"detail":…}` keep their message and type.
    static func normalizedError(_ body: [UInt8], status: Int, requestID: String) -> [UInt8]? {
        guard let top = try? JSONScanner.topLevelMembers(of: body, keys: ["error", "message", "detail", "type"]) else {
            let text = String(decoding: body.prefix(512), as: UTF8.self)
            return OpenAIError(status: status, message: "upstream error (not JSON): \(text); request \(requestID)",
                               code: "upstream_error").jsonBody
        }
        if case .object(let r)? = top["error"],
           let inner = try? JSONScanner.members(of: body, in: r, keys: ["message"]), case .string? = inner["message"] {
            return nil
        }
        var message = "upstream error"
        if case .string(let m)? = top["message"] { message = m }
        else if case .string(let m)? = top["detail"] { message = m }
        else if case .string(let m)? = top["error"] { message = m }
        var e = OpenAIError(status: status, message: message, code: "upstream_error")
        if case .string(let t)? = top["type"], Self.openAIErrorTypes.contains(t) { e.type = t }
        return e.jsonBody
    }

    static let openAIErrorTypes: Set<String> = ["invalid_request_error", "authentication_error", "permission_error",
                                                "not_found_error", "rate_limit_error", "api_error", "overloaded_error",
                                                "server_error"]

    /// True when a content type names JSON (`application/json`, `…+json`,
    /// any case): a byte scan, no allocation, no Foundation search.
    static func mentionsJSON(_ contentType: String) -> Bool {
        var state = 0  // how many of "json" matched so far
        for c in contentType.utf8 {
            let l = c | 0x20
            switch (state, l) {
            case (_, UInt8(ascii: "j")): state = 1
            case (1, UInt8(ascii: "s")): state = 2
            case (2, UInt8(ascii: "o")): state = 3
            case (3, UInt8(ascii: "n")): return true
            default: state = 0
            }
        }
        return false
    }

    private static func isSuccess(_ status: String?) -> Bool {
        guard let s = status, let f = s.utf8.first else { return false }
        return f == UInt8(ascii: "2")
    }

    func streamEnded(_ outcome: ExtProcOutcome) {
        streamHasEnded = true
        if sse != nil || responseJSON != nil {
            // The stream ended before the response did (reset, upstream died):
            // what was seen of a stream still counts; a cut JSON body does not.
            if let s = sse, s.usage != nil { settleUsage(s.usage) } else { settleUsage(nil) }
            sse = nil
            responseJSON = nil
        }
        if ownsCharge { charge?.finish() }
        charge = nil
        if let t = ticket {
            ticket = nil
            if clientStatus == 0 { clientStatus = context.observed.entry(t)?.status.value ?? 0 }
            context.observed.remove(t)
        }
        if info.startsAtResponse { return }  // an observer: the routing stream counts the request
        if headersAt > 0 {
            let seconds = Double(monotonicNanos() &- headersAt) / 1e9
            let status = clientStatus > 0 ? String(clientStatus) : "none"
            context.stats.requestDuration.observe([servedModel ?? "unknown", router?.name ?? "", chosen?.address ?? "", status], seconds)
            if context.logger.logLevel <= .info { logRequest(outcome, status: status, seconds: seconds) }
            if let t = trace, t.sampled, let tracer = context.tracer { tracer.finish(span(t, outcome)) }
        }
        switch outcome {
        case .completed: context.stats.completed.add(1)
        case .immediateResponse: context.stats.rejected.add(1)
        case .reset: context.stats.reset.add(1)
        case .aborted(let why):
            context.stats.aborted.add(1)
            context.logger.debug("gateway.stream.aborted", metadata: ["request.id": "\(requestID)", "reason": "\(why)"])
        case .protocolViolation(let why):
            context.stats.violations.add(1)
            context.logger.warning("gateway.stream.protocol_violation", metadata: ["request.id": "\(requestID)", "reason": "\(why)"])
        }
    }

    /// The request's one line at info (`gateway.request`): who, where, how
    /// it ended, how long, and its tokens when this stream read them.
    private func logRequest(_ outcome: ExtProcOutcome, status: String, seconds: Double) {
        var m: Logger.Metadata = [
            "request.id": "\(requestID)", "request.model": "\(servedModel ?? "unknown")", "http.status": "\(status)",
            "duration_ms": "\((seconds * 1e6).rounded() / 1e3)", "outcome": "\(Self.outcomeName(outcome))",
        ]
        if let r = router { m["router.name"] = "\(r.name)" }
        if let p = chosen {
            m["pod.address"] = "\(p.address)"
            m["routing_us"] = "\((Double(decisionNanos) / 100).rounded() / 10)"
        }
        if let f = fallback { m["router.fallback"] = "\(f)" }
        if let u = loggedUsage {
            if let p = u.promptTokens { m["tokens.prompt"] = "\(p)" }
            m["tokens.completion"] = "\(u.completionTokens)"
        }
        context.logger.info("gateway.request", metadata: m)
    }

    /// The request's span: from its headers to its stream's end, with what
    /// the gateway decided (OpenTelemetry's HTTP and GenAI attribute names
    /// where they fit).
    private func span(_ t: TraceContext, _ outcome: ExtProcOutcome) -> Span {
        var a: [(String, Span.Attribute)] = [
            ("switchboard.request_id", .string(requestID)), ("gen_ai.request.model", .string(servedModel ?? "unknown")),
            ("switchboard.outcome", .string(Self.outcomeName(outcome))),
        ]
        if clientStatus > 0 { a.append(("http.response.status_code", .int(Int64(clientStatus)))) }
        if let r = router { a.append(("switchboard.strategy", .string(r.name))) }
        if let p = chosen {
            a.append(("server.address", .string(p.host)))
            a.append(("server.port", .int(Int64(p.port))))
            a.append(("switchboard.routing_duration_us", .double(Double(decisionNanos) / 1000)))
        }
        if let f = fallback { a.append(("switchboard.fallback", .string(f))) }
        if let u = loggedUsage {
            if let p = u.promptTokens { a.append(("gen_ai.usage.input_tokens", .int(Int64(p)))) }
            a.append(("gen_ai.usage.output_tokens", .int(Int64(u.completionTokens))))
        }
        // Wall-clock start: now, less the request's monotonic age.
        let end = Tracer.unixNanos()
        return Span(traceID: t.traceID, spanID: t.spanID, parentSpanID: traceParent, name: "switchboard route", kind: .server,
                    startUnixNanos: end &- (monotonicNanos() &- headersAt), endUnixNanos: end, attributes: a,
                    isError: clientStatus >= 500, statusMessage: clientStatus >= 500 ? "HTTP \(clientStatus)" : "")
    }

    private static func outcomeName(_ o: ExtProcOutcome) -> String {
        switch o {
        case .completed: return "completed"
        case .immediateResponse: return "answered_by_gateway"
        case .reset: return "reset"
        case .aborted: return "aborted"
        case .protocolViolation: return "protocol_violation"
        }
    }

    private func reject(_ error: OpenAIError, diagnostic: (String, String)? = nil,
                        extraHeaders: [(String, String)] = []) -> FilterDecision {
        var error = error
        clientStatus = error.status
        if error.status == 500 && !error.message.contains(requestID) {
            error.message += " (request \(requestID))"  // what an operator greps the logs for
        }
        var h = HeaderMutation()
        h.overwrite("content-type", "application/json")
        if let d = diagnostic { h.overwrite(d.0, d.1) }
        for (k, v) in extraHeaders { h.overwrite(k, v) }
        h.overwrite("x-request-id", requestID)
        context.logger.debug("gateway.request.rejected", metadata: [
            "request.id": "\(requestID)", "http.status": "\(error.status)", "error.code": "\(error.code ?? "")",
        ])
        return .respond(ImmediateResponse(status: error.status, headers: h, body: error.jsonBody,
                                          details: "switchboard_\(error.code ?? "error")"))
    }

    private func modelsList() -> ImmediateResponse {
        let snap = pods.current
        var s = #"{"object":"list","data":["#
        for (i, name) in snap.modelNames.enumerated() {
            if i > 0 { s += "," }
            s += #"{"id":"# + JSONText.quote(name) + #","object":"model","created":0,"owned_by":"switchboard"}"#
        }
        s += "]}"
        var h = HeaderMutation()
        h.overwrite("content-type", "application/json")
        return ImmediateResponse(status: 200, headers: h, body: Array(s.utf8), details: "switchboard_models")
    }
}
