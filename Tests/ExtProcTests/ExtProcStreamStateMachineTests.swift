import ExtProc
import ExtProcProto
import Testing

private func headers(eos: Bool = false) -> ProcessingRequest {
    ProcessingRequest(phase: .requestHeaders(HTTPHeadersMessage(headers: [HeaderField(":path", "/v1/chat/completions")], endOfStream: eos)))
}
private func body(_ b: [UInt8], eos: Bool = true) -> ProcessingRequest {
    ProcessingRequest(phase: .requestBody(HTTPBodyMessage(body: b, endOfStream: eos)))
}
private let respHeaders = ProcessingRequest(phase: .responseHeaders(HTTPHeadersMessage(headers: [HeaderField(":status", "200")], endOfStream: false)))
private func target(_ pod: String) -> HeaderMutation {
    var m = HeaderMutation()
    m.overwrite("target-pod", pod)
    return m
}

@Suite struct ExtProcStreamStateMachineTests {
    func machine(_ mode: BodySendMode, max: Int = 1 << 20) -> ExtProcStreamStateMachine {
        ExtProcStreamStateMachine(requestBodyMode: mode, responseBodyMode: .streamed, maxBodyBytes: max)
    }

    @Test func bufferedFlowRoutesOnTheBody() {
        var sm = machine(.buffered)
        #expect(sm.receive(headers()) == .askFilter(.requestHeaders(HTTPHeadersMessage(headers: [HeaderField(":path", "/v1/chat/completions")], endOfStream: false))))
        let override = ProcessingModeOverride(requestHeaderMode: .send, responseBodyMode: .none)
        #expect(sm.decide(.waitForBody(modeOverride: override)) == [ProcessingResponse(.requestHeaders(CommonResponse()), modeOverride: override)])
        #expect(sm.state == .awaitingBufferedBody)
        #expect(sm.receive(body([1, 2])) == .askFilter(.requestBody([1, 2])))
        #expect(sm.decide(.proceed(target("a:1"), modeOverride: nil)) == [ProcessingResponse(.requestBody(CommonResponse(headerMutation: target("a:1"))))])
        #expect(sm.receive(respHeaders) == .askFilter(.responseHeaders(HTTPHeadersMessage(headers: [HeaderField(":status", "200")], endOfStream: false))))
        #expect(sm.decide(.proceed) == [ProcessingResponse(.responseHeaders(CommonResponse()))])
        let chunk = HTTPBodyMessage(body: [5], endOfStream: true)
        #expect(sm.receive(ProcessingRequest(phase: .responseBody(chunk))) == .askFilter(.responseBody(chunk)))
        #expect(sm.decide(.proceed) == [ProcessingResponse(.responseBody(CommonResponse()))])
        #expect(sm.receive(ProcessingRequest(phase: .responseTrailers([]))) == .reply([ProcessingResponse(.responseTrailers(nil))]))
    }

    @Test func overridesAreDroppedWhenEnvoysResponseBodyModeIsNone() {
        // Envoy's configured response phase is off (the reduced path): an
        // override would turn response headers back on, so none is sent.
        var sm = machine(.buffered)
        var first = headers()
        first.responseBodyMode = BodySendMode.none
        guard case .askFilter = sm.receive(first) else { Issue.record("request headers not asked"); return }
        #expect(!sm.overridesAllowed)
        let override = ProcessingModeOverride(requestHeaderMode: .send, responseBodyMode: .none)
        #expect(sm.decide(.waitForBody(modeOverride: override)) == [ProcessingResponse(.requestHeaders(CommonResponse()))])
        #expect(sm.receive(body([1])) == .askFilter(.requestBody([1])))
        #expect(sm.decide(.proceed(target("a:1"), modeOverride: override))
                == [ProcessingResponse(.requestBody(CommonResponse(headerMutation: target("a:1"))))])
        // Envoy configured with a response body keeps the overrides.
        var other = machine(.buffered)
        var streamed = headers()
        streamed.responseBodyMode = .streamed
        _ = other.receive(streamed)
        #expect(other.decide(.waitForBody(modeOverride: override))
                == [ProcessingResponse(.requestHeaders(CommonResponse()), modeOverride: override)])
    }

    @Test func anObserverStreamStartsAtTheResponse() {
        var sm = machine(.buffered)
        let h = HTTPHeadersMessage(headers: [HeaderField(":status", "200")], endOfStream: false)
        // Without observability mode, a stream starting at the response is a violation…
        var strict = machine(.buffered)
        guard case .violation = strict.receive(respHeaders) else { Issue.record("accepted"); return }
        // …with it, the filter sees the response headers and body chunks.
        #expect(sm.receive(ProcessingRequest(phase: .responseHeaders(h), observabilityMode: true)) == .askFilter(.responseHeaders(h)))
        #expect(sm.observing)
        let override = ProcessingModeOverride(requestHeaderMode: .send, responseBodyMode: .none)
        #expect(sm.decide(.proceed(nil, modeOverride: override)) == [ProcessingResponse(.responseHeaders(CommonResponse()))])
        let chunk = HTTPBodyMessage(body: [7], endOfStream: true)
        #expect(sm.receive(ProcessingRequest(phase: .responseBody(chunk), observabilityMode: true)) == .askFilter(.responseBody(chunk)))
        #expect(sm.decide(.proceed) == [ProcessingResponse(.responseBody(CommonResponse()))])
    }

    @Test func envoysOwnReplyBeforeTheBodyIsAResponseNotAViolation() {
        // A body over Envoy's buffer limit: Envoy answers 413 itself, and the
        // reply's headers arrive while we still wait for the body.
        for mode in [BodySendMode.buffered, .fullDuplexStreamed] {
            var sm = machine(mode)
            _ = sm.receive(headers())
            _ = sm.decide(.waitForBody(modeOverride: nil))
            if mode == .fullDuplexStreamed { #expect(sm.receive(body([1], eos: false)) == .wait) }
            let local = ProcessingRequest(phase: .responseHeaders(HTTPHeadersMessage(
                headers: [HeaderField(":status", "413"), HeaderField("content-type", "text/plain")], endOfStream: false)))
            guard case .askFilter(.responseHeaders) = sm.receive(local) else {
                Issue.record("\(mode): the local reply's headers were not given to the filter"); continue
            }
            // Override to the OpenAI shape, or pass on: both are answers, not violations.
            let ir = ImmediateResponse(status: 413, headers: HeaderMutation(), body: Array("{}".utf8), details: "x")
            #expect(sm.decide(.respond(ir)) == [ProcessingResponse(.immediate(ir))])
            #expect(sm.state == .closed)
        }
    }

    @Test func fullDuplexHoldsHeadersUntilTheBodyEnds() {
        var sm = machine(.buffered)
        var first = headers()
        first.requestBodyMode = .fullDuplexStreamed  // Envoy's protocol_config wins over the configured mode
        #expect(sm.receive(first) != .wait)
        #expect(sm.decide(.needBody) == [])
        #expect(sm.state == .collectingBody)
        #expect(sm.receive(body([1, 2], eos: false)) == .wait)
        #expect(sm.receive(body([3], eos: true)) == .askFilter(.requestBody([1, 2, 3])))
        let out = sm.decide(.proceed(target("b:2"), modeOverride: nil))
        #expect(out == [
            ProcessingResponse(.requestHeaders(CommonResponse(headerMutation: target("b:2")))),
            ProcessingResponse(.requestBody(CommonResponse(bodyMutation: .streamed(body: [1, 2, 3], endOfStream: true)))),
        ])
    }

    @Test func fullDuplexBodyEndedByTrailersIsEchoedInChunks() {
        var sm = machine(.fullDuplexStreamed, max: 1 << 22)
        _ = sm.receive(headers())
        _ = sm.decide(.needBody)
        let big = [UInt8](repeating: 1, count: 600 * 1024)
        #expect(sm.receive(body(big, eos: false)) == .wait)
        #expect(sm.receive(ProcessingRequest(phase: .requestTrailers([]))) == .askFilter(.requestBody(big)))
        let out = sm.decide(.proceed)
        #expect(out.count == 1 + 3 + 1)
        var echoed: [UInt8] = []
        for r in out.dropFirst().dropLast() {
            guard case .requestBody(let c) = r.reply, case .streamed(let b, let eos) = c.bodyMutation else {
                Issue.record("expected a streamed body chunk"); return
            }
            #expect(eos == false)  // trailers end the stream, not the body
            echoed += b
        }
        #expect(echoed == big)
        #expect(out.last == ProcessingResponse(.requestTrailers(nil)))
    }

    @Test func fullDuplexOverLimitIs413() {
        var sm = machine(.fullDuplexStreamed, max: 4)
        _ = sm.receive(headers())
        _ = sm.decide(.needBody)
        guard case .reply(let r) = sm.receive(body([1, 2, 3, 4, 5], eos: false)), case .immediate(let ir) = r.first?.reply else {
            Issue.record("expected an immediate response"); return
        }
        #expect(ir.status == 413)
        #expect(sm.state == .closed)
    }

    @Test func headersWithoutBodyDecideOnAnEmptyBody() {
        var sm = machine(.buffered)
        _ = sm.receive(headers(eos: true))
        #expect(sm.decide(.needBody) == [])
        #expect(sm.pendingCall == .requestBody([]))
        #expect(sm.decide(.proceed(target("c:3"), modeOverride: nil)) == [ProcessingResponse(.requestHeaders(CommonResponse(headerMutation: target("c:3"))))])
    }

    @Test func routedAtHeadersPassesChunksThrough() {
        var sm = machine(.streamed)
        _ = sm.receive(headers())
        #expect(sm.decide(.proceed(target("d:4"), modeOverride: nil)) == [ProcessingResponse(.requestHeaders(CommonResponse(headerMutation: target("d:4"))))])
        #expect(sm.receive(body([1], eos: false)) == .reply([ProcessingResponse(.requestBody(CommonResponse()))]))
        var dup = machine(.fullDuplexStreamed)
        _ = dup.receive(headers())
        _ = dup.decide(.proceed)
        #expect(dup.receive(body([7], eos: true)) == .reply([ProcessingResponse(.requestBody(CommonResponse(bodyMutation: .streamed(body: [7], endOfStream: true))))]))
    }

    @Test func bodyRoutingInStreamedModeIsAClearMisconfiguration() {
        var sm = machine(.streamed)
        _ = sm.receive(headers())
        guard case .immediate(let ir) = sm.decide(.needBody).first?.reply else { Issue.record("expected 500"); return }
        #expect(ir.status == 500)
        #expect(String(decoding: ir.body, as: UTF8.self).contains("request_body_mode"))
    }

    @Test func immediateResponseClosesTheStream() {
        var sm = machine(.buffered)
        _ = sm.receive(headers())
        let out = sm.decide(.respond(ImmediateResponse(status: 404)))
        #expect(out == [ProcessingResponse(.immediate(ImmediateResponse(status: 404)))])
        guard case .violation = sm.receive(body([1])) else { Issue.record("expected a violation"); return }
    }

    @Test(arguments: [
        [body([1])],
        [respHeaders],
        [ProcessingRequest(phase: nil)],
        [headers(), headers()],
        [ProcessingRequest(phase: .responseBody(HTTPBodyMessage(body: [], endOfStream: true)))],
    ])
    func outOfOrderMessagesAreViolations(_ sequence: [ProcessingRequest]) {
        var sm = machine(.buffered)
        var last: ExtProcStreamStateMachine.Step = .wait
        for (i, m) in sequence.enumerated() {
            last = sm.receive(m)
            if i < sequence.count - 1, case .askFilter = last { _ = sm.decide(.needBody) }
        }
        guard case .violation = last else { Issue.record("expected a violation, got \(last)"); return }
        #expect(sm.state == .closed)
    }

    @Test func responseHeadersTwiceIsAViolation() {
        var sm = machine(.buffered)
        _ = sm.receive(headers())
        _ = sm.decide(.proceed)
        _ = sm.receive(respHeaders)
        _ = sm.decide(.proceed)
        guard case .violation(let why) = sm.receive(respHeaders) else { Issue.record("expected a violation"); return }
        #expect(why.contains("twice"))
    }
}
