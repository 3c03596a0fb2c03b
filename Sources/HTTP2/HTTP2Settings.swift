internal import CNghttp2

/// Settings and limits for a server session.
public struct HTTP2Settings: Sendable {
    public var maxConcurrentStreams: UInt32 = 4096
    public var initialWindowSize: UInt32 = 1 << 20
    public var maxHeaderListSize: UInt32 = 64 * 1024
    /// nghttp2's incoming RST_STREAM rate limit (burst, per second). Envoy
    /// resets one ext_proc stream per HTTP request unless
    /// `ext_proc_graceful_grpc_close` is on; nghttp2's default (1000, 33/s)
    /// turns that into a GOAWAY every ~1000 requests. Raise it for a trusted peer.
    public var streamResetBurst: UInt64 = 1_000_000
    public var streamResetRate: UInt64 = 1_000_000
    /// Header values seen on nearly every request (a gRPC server's method
    /// paths, `application/grpc`): received values equal to one of these
    /// reuse the stored String instead of allocating a new one.
    public var internedValues: [String] = []
    public init() {}
}
