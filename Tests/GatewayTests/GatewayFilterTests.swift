import ExtProc
import ExtProcProto
import Foundation
@testable import Gateway
import Logging
import PodMetrics
import PodSnapshot
import Routing
import Testing

@Suite struct GatewayFilterTests {
    let context: GatewayContext = {
        let reg = PodRegistry()
        reg.publish(models: ["tiny": [PodEndpoint(host: "10.0.0.1", port: 8000), PodEndpoint(host: "10.0.0.2", port: 8001)],
                             "empty": []])
        return GatewayContext(registry: reg, routers: .standard(seed: 1), logger: Logger(label: "test"),
                              extProc: ExtProcConfiguration(), skipResponseBody: true)
    }()

    func makeFilter() -> GatewayFilter {
        GatewayFilter(context: context, pods: PodSnapshotReader(registry: context.registry))
    }

    func headers(_ path: String = "/v1/chat/completions", method: String = "POST", eos: Bool = false,
                 extra: [HeaderField] = []) -> HTTPHeadersMessage {
        HTTPHeadersMessage(headers: [HeaderField(":path", path), HeaderField(":method", method),
                                     HeaderField("x-request-id", "rid")] + extra, endOfStream: eos)
    }

    func immediate(_ d: FilterDecision) -> (Int, [String: Any])? {
        guard case .respond(let ir) = d,
              let obj = try? JSONSerialization.jsonObject(with: Data(ir.body)) as? [String: Any] else { return nil }
        return (ir.status, obj)
    }

    @Test func routesOnTheBodyAndAlwaysOverwritesTargetPod() {
        let f = makeFilter()
        guard case .waitForBody(let override?) = f.requestHeaders(headers(extra: [HeaderField("target-pod", "6.6.6.6:1")])) else {
            Issue.record("expected to wait for the body with an override"); return
        }
        #expect(override.responseBodyMode == .none && override.requestBodyMode == .buffered)
        guard case .proceed(let m?, nil) = f.requestBody(Array(#"{"model":"tiny","messages":[]}"#.utf8)) else {
            Issue.record("expected to proceed"); return
        }
        let target = m.setHeaders.first { $0.field.name == "target-pod" }
        #expect(target?.action == .overwriteIfExistsOrAdd)
        #expect(["10.0.0.1:8000", "10.0.0.2:8001"].contains(target?.field.value ?? ""))
        guard case .proceed(let r?, nil) = f.responseHeaders(HTTPHeadersMessage(headers: [], endOfStream: false)) else {
            Issue.record("expected response headers"); return
        }
        #expect(r.setHeaders.first { $0.field.name == "x-switchboard-pod" }?.field.value == target?.field.value)
        let load = try? #require(context.registry.snapshot.loads[target?.field.value ?? ""])
        #expect(load?.requests == 1 && load?.tokens == 7)
        f.streamEnded(.reset)
        f.streamEnded(.completed)  // a second ending must not release twice
        #expect(load?.requests == 0 && load?.tokens == 0)
    }

    @Test func theReducedPathHandsTheResponseToTheObserverByTicket() {
        // Routing stream: Envoy's response body mode is NONE.
        let f = makeFilter()
        f.streamStarted(ExtProcStreamInfo(responseBodyOff: true))
        _ = f.requestHeaders(headers())
        guard case .proceed(let m?, nil) = f.requestBody(Array(#"{"model":"tiny","messages":[]}"#.utf8)) else {
            Issue.record("expected to proceed"); return
        }
        func value(_ name: String) -> String? { m.setHeaders.first { $0.field.name == name }?.field.value }
        let pod = value("target-pod") ?? ""
        #expect(value("x-switchboard-strategy") == "random")
        #expect(value("routing-strategy") == nil)
        let ticket = value(ObservedRequests.header)
        #expect(ticket != nil)
        #expect(context.observed.entry(UInt64(ticket ?? "") ?? 0)?.requestID == "rid")
        let load = context.registry.snapshot.loads[pod]
        #expect(load?.requests == 1)

        // Observer stream: sees only the response, finds the charge by the ticket.
        let o = makeFilter()
        o.streamStarted(ExtProcStreamInfo(observabilityMode: true, startsAtResponse: true))
        _ = o.responseHeaders(HTTPHeadersMessage(headers: [HeaderField(":status", "200"), HeaderField("content-type", "application/json"),
                                                           HeaderField(ObservedRequests.header, ticket ?? "")], endOfStream: false))
        _ = o.responseBody(HTTPBodyMessage(body: Array(#"{"usage":{"prompt_tokens":40,"completion_tokens":3}}"#.utf8), endOfStream: true))
        #expect(load?.tokens == 40 && load?.promptTokensTotal == 40 && load?.completionTokensTotal == 3)
        o.streamEnded(.completed)
        #expect(load?.requests == 1)  // the observer never releases
        f.streamEnded(.completed)
        #expect(load?.requests == 0 && load?.tokens == 0)
        #expect(context.observed.entry(UInt64(ticket ?? "") ?? 0) == nil)
        // A response without a known ticket is ignored (counted).
        let stray = makeFilter()
        stray.streamStarted(ExtProcStreamInfo(observabilityMode: true, startsAtResponse: true))
        #expect(stray.responseHeaders(HTTPHeadersMessage(headers: [HeaderField(":status", "404")], endOfStream: true)) == .proceed)
        #expect(context.stats.observedUnmatched.value == 1)
    }

    @Test func aMissingRequestIDIsGeneratedSentUpstreamAndReturned() {
        let f = makeFilter()
        _ = f.requestHeaders(HTTPHeadersMessage(headers: [HeaderField(":path", "/v1/chat/completions"),
                                                          HeaderField(":method", "POST")], endOfStream: false))
        guard case .proceed(let m?, nil) = f.requestBody(Array(#"{"model":"tiny","messages":[]}"#.utf8)) else {
            Issue.record("expected to proceed"); return
        }
        let upstream = m.setHeaders.first { $0.field.name == "x-request-id" }?.field.value ?? ""
        #expect(upstream.count == 36 && upstream.split(separator: "-").map(\.count) == [8, 4, 4, 4, 12])
        #expect(Array(upstream)[14] == "4")  // version 4
        // A successful JSON response is read for its usage: the body phase is turned on.
        guard case .proceed(let r?, let o?) = f.responseHeaders(HTTPHeadersMessage(
            headers: [HeaderField(":status", "200"), HeaderField("content-type", "application/json")], endOfStream: false)) else {
            Issue.record("expected response headers with a mode override"); return
        }
        #expect(o.responseBodyMode == .bufferedPartial)  // a JSON body: one message
        #expect(r.setHeaders.first { $0.field.name == "x-request-id" }?.field.value == upstream)
        _ = f.responseBody(HTTPBodyMessage(body: Array(#"{"usage":{"prompt_tokens":40,"completion_tokens":"#.utf8), endOfStream: false))
        _ = f.responseBody(HTTPBodyMessage(body: Array(#"2}}"#.utf8), endOfStream: true))
        let load = context.registry.snapshot.loads.values.first { $0.requests == 1 }
        #expect(load?.tokens == 40 && load?.promptTokensTotal == 40 && load?.completionTokensTotal == 2)
        f.streamEnded(.completed)
        #expect(load?.requests == 0 && load?.tokens == 0)
    }

    @Test func unknownModelIs404ModelNotFound() throws {
        let f = makeFilter()
        _ = f.requestHeaders(headers())
        let (status, obj) = try #require(immediate(f.requestBody(Array(#"{"model":"gpt-9","messages":[]}"#.utf8))))
        #expect(status == 404)
        #expect((obj["error"] as? [String: Any])?["code"] as? String == "model_not_found")
    }

    @Test func modelWithoutEndpointsIs503() throws {
        let f = makeFilter()
        _ = f.requestHeaders(headers())
        #expect(try #require(immediate(f.requestBody(Array(#"{"model":"empty","messages":[]}"#.utf8)))).0 == 503)
    }

    @Test func unknownStrategyIs400BeforeTheBody() throws {
        let d = makeFilter().requestHeaders(headers(extra: [HeaderField("routing-strategy", "telepathy")]))
        let (status, obj) = try #require(immediate(d))
        #expect(status == 400)
        #expect(((obj["error"] as? [String: Any])?["message"] as? String)?.contains("random") == true)
        guard case .respond(let ir) = d else { return }
        #expect(ir.headers.setHeaders.contains { $0.field == HeaderField("x-error-invalid-routing-strategy", "telepathy") })
    }

    @Test func pathsAndMethods() throws {
        #expect(try #require(immediate(makeFilter().requestHeaders(headers("/v1/audio/speech")))).0 == 404)
        for served in ["/v1/embeddings", "/v1/responses", "/v1/messages?beta=true", "/v1/chat/completions/"] {
            guard case .waitForBody = makeFilter().requestHeaders(headers(served)) else { Issue.record("\(served) not served"); continue }
        }
        #expect(try #require(immediate(makeFilter().requestHeaders(headers(method: "GET", eos: true)))).0 == 405)
        #expect(try #require(immediate(makeFilter().requestHeaders(headers(eos: true)))).0 == 400)
        let (status, obj) = try #require(immediate(makeFilter().requestHeaders(headers("/v1/models", method: "GET", eos: true))))
        #expect(status == 200)
        #expect((obj["data"] as? [[String: Any]])?.compactMap { $0["id"] as? String } == ["empty", "tiny"])
    }
}

@Suite struct EnvoyConfigRendererTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    @Test func checkedInConfigIsTheRenderedDefault() throws {
        let file = try String(contentsOf: Self.root.appendingPathComponent("envoy/envoy.yaml"), encoding: .utf8)
        #expect(file == (try EnvoyConfigRenderer().render()))
    }

    @Test func rendersTheSafetyPieces() throws {
        var r = EnvoyConfigRenderer()
        r.processor = .unix(path: "/run/sb.sock")
        r.requestBodyMode = .fullDuplexStreamed
        let y = try r.render()
        #expect(y.contains("pipe: { path: /run/sb.sock }"))
        #expect(y.contains("- remove: target-pod"))
        #expect(y.contains("envoy.reloadable_features.ext_proc_graceful_grpc_close: true"))
        #expect(y.contains("type: ORIGINAL_DST"))
        #expect(y.contains("request_body_mode: FULL_DUPLEX_STREAMED"))
        #expect(y.contains("request_trailer_mode: SEND"))
        // The anti-spoof filter runs before ext_proc.
        let a = try #require(y.range(of: "envoy.filters.http.header_mutation"))
        let b = try #require(y.range(of: "envoy.filters.http.ext_proc"))
        #expect(a.lowerBound < b.lowerBound)
        r.listen = .unix(path: "/x")
        #expect(throws: EnvoyConfigRenderer.RenderError.self) { try r.render() }
    }

    @Test func rendersEachResponsePhase() throws {
        var r = EnvoyConfigRenderer()
        let observer = try r.render()
        // The routing stream ends at the decision; Envoy names the pod; the observer is gated on the ticket.
        #expect(observer.contains("response_body_mode: NONE"))
        #expect(observer.components(separatedBy: "response_header_mode: SKIP").count == 2)
        #expect(observer.contains(#"value: "%REQ(target-pod)%""#))
        #expect(observer.contains("observability_mode: true"))
        #expect(observer.contains("header_name: x-switchboard-ticket"))
        #expect(observer.contains("response_mutations:\n                - remove: x-switchboard-ticket"))
        #expect(observer.contains("local_reply_config"))
        r.responsePhase = .none
        let none = try r.render()
        #expect(!none.contains("observability_mode") && !none.contains("x-switchboard-ticket"))
        #expect(none.contains("response_header_mode: SKIP") && none.contains("always_set_request_id_in_response: true"))
        r.responsePhase = .inBand
        let inBand = try r.render()
        #expect(!inBand.contains("response_header_mode: SKIP") && !inBand.contains("local_reply_config"))
        #expect(inBand.contains("response_body_mode: STREAMED") && !inBand.contains("observability_mode"))
    }
}
