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
                filter.streamStarted(ExtProcStreamInfo(observabilityMode: observabilityMode,
                                                       startsAtResponse: machine.observing,
                                                       responseBodyOff: !machine.overridesAllowed))
            }
            var responses = machine.decide(invoke(call))
            while let follow = machine.pendingCall {
                responses += machine.decide(invoke(follow))
            }
            if case .requestBody = call, let md = filter.takeDynamicMetadata(),
               let i = responses.firstIndex(where: {
                   if case .requestBody = $0.reply { return true }
                   if case .requestHeaders = $0.reply { return true }
                   return false
               }) {
                responses[i].dynamicMetadata = md
            }
            send(responses, on: stream)
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

    private func invoke(_ call: ExtProcStreamStateMachine.FilterCall) -> FilterDecision {
        switch call {
        case .requestHeaders(let h): return filter.requestHeaders(h)
        case .requestBody(let b): return filter.requestBody(b)
        case .responseHeaders(let h): return filter.responseHeaders(h)
        case .responseBody(let c): return filter.responseBody(c)
        }
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
        filter.streamEnded(outcome)
    }
}
