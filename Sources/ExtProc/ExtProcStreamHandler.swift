import EventLoop
import ExtProcProto
import GRPCServer
import Metrics

/// Serves one `ExternalProcessor/Process` stream: decodes each
/// ProcessingRequest, drives the phase state machine, asks the filter, and
/// sends the encoded responses, all synchronously on the connection's loop.
public final class ExtProcStreamHandler: GRPCStreamHandler {
    private var machine: ExtProcStreamStateMachine
    private let filter: any ExtProcFilter
    private let stats: ExtProcStats
    private var ended = false
    private var observabilityMode = false
    private var started = false
    /// A call whose decision the filter deferred (`.later`), and the stream to answer on.
    private var deferred: (call: ExtProcStreamStateMachine.FilterCall, stream: GRPCStream)?

    public init(filter: any ExtProcFilter, configuration: ExtProcConfiguration, stats: ExtProcStats) {
        self.filter = filter
        self.stats = stats
        self.machine = ExtProcStreamStateMachine(requestBodyMode: configuration.requestBodyMode,
                                                 responseBodyMode: configuration.responseBodyMode,
                                                 maxBodyBytes: configuration.maxBodyBytes)
        stats.streams.add(1)
    }

    public func received(message: ArraySlice<UInt8>, stream: GRPCStream) {
        let request: ProcessingRequest
        do {
            request = try ExtProcCodec.decodeRequest(message)
        } catch {
            stats.decodeErrors.add(1)
            stream.finish(GRPCStatus(.invalidArgument, "\(error)"))
            end(.protocolViolation("\(error)"))
            return
        }
        if request.observabilityMode { observabilityMode = true }
        switch machine.receive(request) {
        case .askFilter(let call):
            if !started {
                started = true
                filter.attach(ExtProcResume(handler: self))
                filter.streamStarted(ExtProcStreamInfo(observabilityMode: observabilityMode,
                                                       startsAtResponse: machine.observing,
                                                       responseBodyOff: !machine.overridesAllowed))
            }
            run(call, invoke(call), on: stream, sent: [])
        case .reply(let responses):
            send(responses, on: stream)
        case .wait:
            break
        case .violation(let why):
            stats.violations.add(1)
            stream.finish(GRPCStatus(.failedPrecondition, "ext_proc protocol violation: \(why)"))
            end(.protocolViolation(why))
        }
    }

    public func receivedEnd(stream: GRPCStream) {
        stream.finish(.ok)
        end(.completed)
    }

    public func cancelled(reason: GRPCCancelReason) {
        switch reason {
        case .peerReset: end(.reset)
        case .deadlineExceeded: end(.aborted("deadline exceeded"))
        case .connectionClosed: end(.aborted("connection closed"))
        case .protocolError(let why): end(.aborted(why))
        }
    }

    /// Turns decisions into responses, asking the filter again for a
    /// follow-up call; stops at a deferred decision (sending what is decided).
    private func run(_ call: ExtProcStreamStateMachine.FilterCall, _ decision: FilterDecision, on stream: GRPCStream,
                     sent earlier: [ProcessingResponse]) {
        var responses = earlier
        var call = call
        var decision = decision
        while true {
            if decision == .later {
                guard case .requestBody = call else {
                    decision = .respond(Self.misuse)  // only a body decision may wait
                    continue
                }
                deferred = (call, stream)
                send(responses, on: stream)
                return
            }
            var answer = machine.decide(decision)
            if case .requestBody = call, let md = filter.takeDynamicMetadata(),
               let i = answer.firstIndex(where: {
                   if case .requestBody = $0.reply { return true }
                   if case .requestHeaders = $0.reply { return true }
                   return false
               }) {
                answer[i].dynamicMetadata = md
            }
            responses += answer
            guard let follow = machine.pendingCall else { break }
            call = follow
            decision = invoke(follow)
        }
        send(responses, on: stream)
    }

    /// The filter's deferred decision arrived.
    func resume(_ decision: FilterDecision) {
        guard !ended, let d = deferred else { return }
        deferred = nil
        run(d.call, decision, on: d.stream, sent: [])
    }

    static let misuse = ImmediateResponse(
        status: 500, headers: { var m = HeaderMutation(); m.overwrite("content-type", "application/json"); return m }(),
        body: Array(#"{"error":{"message":"gateway error: a filter deferred a decision outside the request body phase","type":"api_error","param":null,"code":"gateway_error"}}"#.utf8),
        details: "switchboard_filter_misuse")

    private func invoke(_ call: ExtProcStreamStateMachine.FilterCall) -> FilterDecision {
        let t0 = monotonicNanos()
        let d: FilterDecision, phase: Int
        switch call {
        case .requestHeaders(let h): d = filter.requestHeaders(h); phase = 0
        case .requestBody(let b): d = filter.requestBody(b); phase = 1
        case .responseHeaders(let h): d = filter.responseHeaders(h); phase = 2
        case .responseBody(let c): d = filter.responseBody(c); phase = 3
        }
        stats.phaseDurations[phase].observe(nanos: monotonicNanos() &- t0)
        return d
    }

    private func send(_ responses: [ProcessingResponse], on stream: GRPCStream) {
        for r in responses {
            if !observabilityMode { stream.send(ExtProcCodec.encodeResponse(r)) }
            if case .immediate(let ir) = r.reply {
                stats.immediateResponses.add(1)
                end(.immediateResponse(status: ir.status))
            }
        }
    }

    private func end(_ outcome: ExtProcOutcome) {
        guard !ended else { return }
        ended = true
        deferred = nil
        filter.streamEnded(outcome)
    }
}
