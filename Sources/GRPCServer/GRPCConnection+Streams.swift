import EventLoop
import HTTP2

/// Opening a stream: the request checks (method, content type, drain,
/// known method), its `grpc-timeout` deadline, and the decoder's failures
/// mapped to statuses.
extension GRPCConnection {
    func openStream(id: Int32, headers: [HTTP2Header], endStream: Bool) {
        var path = ""
        var method = ""
        var contentType = ""
        var encoding = ""
        var timeout: UInt64?
        for h in headers {
            switch h.name {
            case ":path": path = h.value
            case ":method": method = h.value
            case "content-type": contentType = h.value
            case "grpc-encoding": encoding = h.value
            case "grpc-timeout": timeout = parseGRPCTimeout(h.value)
            default: break
            }
        }
        server.stats.streamsOpened.add(1)
        server.streamStarted()
        let s = GRPCStream(id: id, path: path, headers: headers, connection: self,
                           maxMessageSize: server.configuration.maxMessageSize)
        streams[id] = s
        s.clientClosed = endStream
        guard method == "POST" else {
            return fail(s, GRPCStatus(.unimplemented, "gRPC requires POST, got \(method)"), httpStatus: "405")
        }
        guard contentType.hasPrefix("application/grpc") else {
            return fail(s, GRPCStatus(.unknown, "content-type '\(contentType)' is not application/grpc"), httpStatus: "415")
        }
        if server.isDraining && path != GRPCServer.healthCheckPath {
            // Health checks still answer (NOT_SERVING) so probes see the drain.
            return fail(s, GRPCStatus(.unavailable, "server is shutting down"))
        }
        guard let factory = server.handler(for: path) else {
            server.stats.unknownMethods.add(1)
            return fail(s, GRPCStatus(.unimplemented, "unknown method \(path)"))
        }
        if !encoding.isEmpty && encoding != "identity" {
            // We advertise identity only; a compressed message is rejected when it arrives.
            logger.debug("grpc.stream.encoding_ignored", metadata: ["grpc.encoding": "\(encoding)"])
        }
        if let t = timeout {
            s.deadlineTimer = socket.loop.schedule(afterNanos: t) { [weak self, weak s] in
                guard let self, let s, !s.isFinished else { return }
                self.fail(s, GRPCStatus(.deadlineExceeded, "deadline of the grpc-timeout header passed"),
                          reason: .deadlineExceeded)
                self.flushSession()
            }
        }
        session.submitResponse(streamID: id, headers: Self.responseHeaders, body: true)
        s.headersSent = true
        s.handler = factory(s)
        if endStream { s.handler?.receivedEnd(stream: s) }
    }

    func decoderFailure(_ f: GRPCMessageDecoder.Failure) -> GRPCStatus {
        switch f {
        case .compressed:
            server.stats.compressedRejected.add(1)
            return GRPCStatus(.unimplemented, "compressed gRPC messages are not supported; send with grpc-encoding identity")
        case .tooLarge(let len):
            server.stats.oversizeRejected.add(1)
            return GRPCStatus(.resourceExhausted, "message of \(len) bytes exceeds the limit of \(server.configuration.maxMessageSize) bytes")
        case .badFlag(let b):
            server.stats.protocolErrors.add(1)
            return GRPCStatus(.internal, "invalid gRPC frame flag \(b)")
        }
    }
}
