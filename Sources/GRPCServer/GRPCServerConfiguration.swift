import EventLoop
import HTTP2
import Logging

/// How a gRPC server listens and what it tolerates.
public struct GRPCServerConfiguration: Sendable {
    /// Addresses to listen on (TCP `host:port` and/or `unix:/path`).
    public var listen: [SocketAddress]
    /// Largest request message accepted; larger ones end the RPC with RESOURCE_EXHAUSTED.
    public var maxMessageSize: Int = 4 << 20
    /// Idle time before a keepalive PING; 0 turns keepalive off.
    public var keepaliveIntervalNanos: UInt64 = 30_000_000_000
    /// How long to wait for a PING ack (or any frame) before closing.
    public var keepaliveTimeoutNanos: UInt64 = 10_000_000_000
    /// How long a new connection has to complete its HTTP/2 preface (the
    /// magic and a SETTINGS frame) before it is closed; 0 turns it off. A
    /// client trickling its first bytes cannot hold a connection open for long.
    public var handshakeTimeoutNanos: UInt64 = 10_000_000_000
    /// How long a draining server waits for in-flight RPCs before closing anyway.
    public var drainTimeoutNanos: UInt64 = 15_000_000_000
    /// HTTP/2 settings, including the reset-rate limit for trusted peers.
    public var http2 = HTTP2Settings()
    /// Service names reported SERVING by grpc.health.v1.Health (the empty name always is).
    public var healthServices: Set<String> = [""]

    public init(listen: [SocketAddress]) {
        self.listen = listen
    }
}
