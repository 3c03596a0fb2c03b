import EventLoop

/// HTTP/2 keepalive: a PING after `keepaliveInterval` of silence, GOAWAY and
/// close when it is not answered within `keepaliveTimeout`.
extension GRPCConnection {
    func scheduleKeepalive() {
        let interval = server.configuration.keepaliveIntervalNanos
        guard interval > 0 else { return }
        let period = min(interval, server.configuration.keepaliveTimeoutNanos)
        keepaliveTimer = socket.loop.schedule(afterNanos: period) { [weak self] in
            self?.keepaliveTick()
        }
    }

    func keepaliveTick() {
        guard !closed else { return }
        let now = monotonicNanos()
        if let since = pingOutstandingSince {
            if now - since >= server.configuration.keepaliveTimeoutNanos {
                logger.info("grpc.connection.keepalive_timeout")
                session.submitGoaway(errorCode: 0, debug: "keepalive timeout")
                flushSession()
                close()
                return
            }
        } else if now - lastActivity >= server.configuration.keepaliveIntervalNanos {
            pingOutstandingSince = now
            session.submitPing()
            flushSession()
        }
        scheduleKeepalive()
    }
}
