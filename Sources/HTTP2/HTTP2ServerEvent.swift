internal import CNghttp2

/// What the peer did, recorded by nghttp2 callbacks during `receive(_:)` and
/// handed to the owner after nghttp2 returns (callbacks never act).
public enum HTTP2ServerEvent: Sendable {
    /// A request's header block completed. `endStream` means no body follows.
    case requestHeaders(streamID: Int32, headers: [HTTP2Header], endStream: Bool)
    /// A DATA frame's payload (copied).
    case data(streamID: Int32, bytes: [UInt8])
    /// The peer half-closed the stream (END_STREAM on DATA or trailers).
    case endStream(streamID: Int32)
    /// The stream is gone; `errorCode` is non-zero when it was reset.
    case streamClosed(streamID: Int32, errorCode: UInt32)
    /// The peer sent GOAWAY.
    case goaway(errorCode: UInt32)
    /// An acknowledgement of our PING arrived.
    case pingAck
    /// The peer's SETTINGS frame (not an acknowledgement) arrived: after the
    /// first one the peer has completed its connection preface.
    case settings
}
