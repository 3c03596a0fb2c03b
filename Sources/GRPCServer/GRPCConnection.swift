import EventLoop
import HTTP2
import Logging

/// One HTTP/2 connection carrying gRPC streams. Owns the socket and the
/// nghttp2 session; confined to the event loop that accepted it.
///
/// Per read: feed bytes to nghttp2, act on the recorded events (open streams,
/// decode messages, call handlers synchronously), then write what nghttp2
/// queued. No task hops and no locks on this path.
final class GRPCConnection: StreamSocketDelegate {
    /// Header blocks every stream sends, laid out once.
    static let responseHeaders = HTTP2PreparedHeaders([
        HTTP2Header(":status", "200"),
        HTTP2Header("content-type", "application/grpc"),
        HTTP2Header("grpc-accept-encoding", "identity"),
    ])
    static let okTrailers = HTTP2PreparedHeaders([HTTP2Header("grpc-status", "0")])

    let socket: StreamSocket
    let session: HTTP2ServerSession
    /// Strong: the server outlives its connections and holds none of them itself.
    let server: GRPCServer
    let logger: Logger
    let connectionID: UInt64
    var streams: [Int32: GRPCStream] = [:]
    var lastActivity = monotonicNanos()
    var pingOutstandingSince: UInt64?
    var keepaliveTimer: TimerID?
    /// Set until the peer's first SETTINGS frame arrives.
    var handshakeTimer: TimerID?
    var handshakeDone = false
    var draining = false
    var finalGoawaySent = false
    var closed = false
    private var inEventHandling = false

    init(socket: StreamSocket, server: GRPCServer, connectionID: UInt64) throws(HTTP2Error) {
        self.socket = socket
        self.server = server
        self.connectionID = connectionID
        var l = server.logger
        l[metadataKey: "grpc.connection.id"] = "\(connectionID)"
        self.logger = l
        self.session = try HTTP2ServerSession(settings: server.configuration.http2)
        socket.delegate = self
        flushSession()
        scheduleKeepalive()
        let limit = server.configuration.handshakeTimeoutNanos
        if limit > 0 {
            handshakeTimer = socket.loop.schedule(afterNanos: limit) { [weak self] in
                guard let self, !self.handshakeDone, !self.closed else { return }
                self.handshakeTimer = nil
                self.server.stats.handshakeTimeouts.add(1)
                self.logger.warning("grpc.connection.handshake_timeout",
                                    metadata: ["grpc.handshake_timeout_s": "\(Double(limit) / 1e9)"])
                self.close()
            }
        }
    }

    var openStreamCount: Int { streams.count }

    // MARK: socket events

    func socketRead(_ socket: StreamSocket, _ bytes: ArraySlice<UInt8>) {
        lastActivity = monotonicNanos()
        pingOutstandingSince = nil
        let events: [HTTP2ServerEvent]
        do {
            events = try session.receive(bytes)
        } catch {
            logger.warning("grpc.connection.protocol_error", metadata: ["error": "\(error)"])
            server.stats.protocolErrors.add(1)
            flushSession()
            close()
            return
        }
        inEventHandling = true
        for e in events { handle(e) }
        inEventHandling = false
        flushSession()
    }

    func socketDrained(_ socket: StreamSocket) {
        // The peer is reading again: nothing to do (nghttp2 pulls deferred data on the next flush).
    }

    func socketClosed(_ socket: StreamSocket, error: SystemError?) {
        guard !closed else { return }
        closed = true
        if let e = error {
            logger.debug("grpc.connection.closed", metadata: ["error": "\(e)"])
        }
        if let t = keepaliveTimer { socket.loop.cancel(t) }
        if let t = handshakeTimer { socket.loop.cancel(t); handshakeTimer = nil }
        let open = streams
        streams.removeAll()
        for (_, s) in open {
            cancel(s, .connectionClosed)
            server.streamEnded()
        }
        server.connectionClosed(self)
    }

    func close() {
        socket.close()
    }

    // MARK: HTTP/2 events

    private func handle(_ event: HTTP2ServerEvent) {
        switch event {
        case .requestHeaders(let id, let headers, let endStream):
            openStream(id: id, headers: headers, endStream: endStream)
        case .data(let id, let bytes):
            guard let s = streams[id], !s.isFinished else { return }
            let messages: [ArraySlice<UInt8>]
            do {
                messages = try s.decoder.feed(bytes)
            } catch {
                fail(s, decoderFailure(error))
                return
            }
            for m in messages {
                guard !s.isFinished else { break }
                server.stats.messagesReceived.add(1)
                s.handler?.received(message: m, stream: s)
            }
        case .endStream(let id):
            guard let s = streams[id] else { return }
            s.clientClosed = true
            if s.isFinished {
                if !s.trailersSent, let st = s.finishedStatus { sendTrailers(s, st) }
                return
            }
            if s.decoder.bufferedBytes > 0 {
                fail(s, GRPCStatus(.internal, "stream ended inside a gRPC message (\(s.decoder.bufferedBytes) bytes of an incomplete frame)"))
                return
            }
            s.handler?.receivedEnd(stream: s)
        case .streamClosed(let id, let code):
            guard let s = streams.removeValue(forKey: id) else { return }
            if let t = s.deadlineTimer { socket.loop.cancel(t); s.deadlineTimer = nil }
            if s.finishedStatus == nil {
                if code != 0 { server.stats.streamsReset.add(1) }
                cancel(s, .peerReset(errorCode: code))
            }
            server.streamEnded()
        case .goaway:
            // The peer is going away; let its streams finish.
            break
        case .pingAck:
            pingOutstandingSince = nil
            if draining { sendFinalGoaway() }
        case .settings:
            if !handshakeDone {
                handshakeDone = true
                if let t = handshakeTimer { socket.loop.cancel(t); handshakeTimer = nil }
            }
        }
    }

    // MARK: sending

    func send(_ message: [UInt8], on s: GRPCStream) {
        server.stats.messagesSent.add(1)
        session.sendData(streamID: s.id, prefix: GRPCMessageDecoder.prefix(length: message.count), message)
        if !inEventHandling { flushSession() }
    }

    func finishRequested(_ s: GRPCStream) {
        guard let st = s.finishedStatus else { return }
        if st.code != .ok || s.clientClosed {
            sendTrailers(s, st)
        }
        if !inEventHandling { flushSession() }
    }

    /// Ends a stream with an error status now and tells its handler why.
    func fail(_ s: GRPCStream, _ status: GRPCStatus, httpStatus: String? = nil,
                      reason: GRPCCancelReason? = nil) {
        guard s.finishedStatus == nil, !s.cancelled else { return }
        s.finishedStatus = status
        server.stats.errorStatuses.add(1)
        sendTrailers(s, status, httpStatus: httpStatus)
        if let h = s.handler {
            s.handler = nil
            s.cancelled = true
            h.cancelled(reason: reason ?? .protocolError(status.description))
        }
    }

    private func sendTrailers(_ s: GRPCStream, _ status: GRPCStatus, httpStatus: String? = nil) {
        guard !s.trailersSent else { return }
        s.trailersSent = true
        if let t = s.deadlineTimer { socket.loop.cancel(t); s.deadlineTimer = nil }
        // The client may keep sending after an early end: reset the stream
        // (NO_ERROR) once the trailers are out.
        let resetAfter = !s.clientClosed && status.code != .ok
        if s.headersSent {
            let trailers = status == .ok ? Self.okTrailers
                : HTTP2PreparedHeaders(status.trailerFields.map { HTTP2Header($0.0, $0.1) })
            session.finish(streamID: s.id, trailers: trailers, resetAfter: resetAfter)
        } else {
            let fields = status.trailerFields.map { HTTP2Header($0.0, $0.1) }
            // Trailers-only response.
            s.headersSent = true
            session.submitResponse(streamID: s.id, headers: [
                HTTP2Header(":status", httpStatus ?? "200"),
                HTTP2Header("content-type", "application/grpc"),
            ] + fields, body: false)
            if resetAfter { session.resetAfterHeaders(streamID: s.id) }
        }
    }

    /// Tells a handler that has not finished that its RPC is gone.
    private func cancel(_ s: GRPCStream, _ reason: GRPCCancelReason) {
        guard !s.cancelled, s.finishedStatus == nil else { return }
        s.cancelled = true
        if let t = s.deadlineTimer { socket.loop.cancel(t); s.deadlineTimer = nil }
        let h = s.handler
        s.handler = nil
        h?.cancelled(reason: reason)
    }

    func flushSession() {
        guard !closed else { return }
        do {
            try session.drainOutput { bytes in socket.write(bytes) }
        } catch {
            logger.warning("grpc.connection.send_error", metadata: ["error": "\(error)"])
            close()
            return
        }
        socket.flush()
        if !session.isAlive { close() }
    }
}
