/// Graceful shutdown of one connection (SIGTERM): GOAWAY notice, final
/// GOAWAY after a PING round trip, forced close at the drain timeout.
extension GRPCConnection {
    /// Starts a graceful close: GOAWAY notice, then (after a PING round trip)
    /// the final GOAWAY; the socket closes once in-flight streams finish.
    func beginDrain() {
        guard !closed, !draining else { return }
        draining = true
        session.submitShutdownNotice()
        session.submitPing()
        flushSession()
        // A peer that never acks the PING still gets the final GOAWAY.
        socket.loop.schedule(afterNanos: 1_000_000_000) { [weak self] in
            guard let self, !self.closed else { return }
            self.sendFinalGoaway()
            self.flushSession()
        }
    }

    func sendFinalGoaway() {
        guard !finalGoawaySent else { return }
        finalGoawaySent = true
        session.submitGoaway()
    }

    /// Closes without waiting any longer (drain timeout).
    func forceClose() {
        guard !closed else { return }
        session.submitGoaway(errorCode: 0, debug: "drain timeout")
        flushSession()
        close()
    }
}
