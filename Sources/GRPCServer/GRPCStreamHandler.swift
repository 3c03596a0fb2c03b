import EventLoop
import HTTP2

/// Serves one RPC (one HTTP/2 stream). Every method is called synchronously
/// on the connection's event loop; implementations must not block.
public protocol GRPCStreamHandler: AnyObject {
    /// One complete, uncompressed request message (a slice of the received bytes).
    func received(message: ArraySlice<UInt8>, stream: GRPCStream)
    /// The client half-closed. Call `stream.finish` now or later.
    func receivedEnd(stream: GRPCStream)
    /// The RPC ended without a normal finish (reset by the peer, deadline,
    /// connection lost, server shutdown). Called at most once, and never
    /// after the handler's own `finish`.
    func cancelled(reason: GRPCCancelReason)
}

/// Why an RPC ended abnormally.
public enum GRPCCancelReason: Sendable, Equatable {
    case peerReset(errorCode: UInt32)
    case deadlineExceeded
    case connectionClosed
    case protocolError(String)
}

/// Creates a handler for each new stream of one method.
public typealias GRPCHandlerFactory = (GRPCStream) -> any GRPCStreamHandler

/// The server side of one RPC, handed to its handler. Confined to the loop.
public final class GRPCStream {
    public let id: Int32
    /// `:path`, e.g. `/envoy.service.ext_proc.v3.ExternalProcessor/Process`.
    public let path: String
    /// Request headers as received (lower-case names, pseudo-headers included).
    public let headers: [HTTP2Header]
    /// Strong: a handler may outlive its connection. The cycle (connection ->
    /// streams -> stream) is broken when the stream is removed on close.
    let connection: GRPCConnection
    var headersSent = false
    var clientClosed = false
    var finishedStatus: GRPCStatus?
    var trailersSent = false
    var cancelled = false
    var decoder: GRPCMessageDecoder
    var handler: (any GRPCStreamHandler)?
    var deadlineTimer: TimerID?

    init(id: Int32, path: String, headers: [HTTP2Header], connection: GRPCConnection, maxMessageSize: Int) {
        self.id = id
        self.path = path
        self.headers = headers
        self.connection = connection
        self.decoder = GRPCMessageDecoder(maxMessageSize: maxMessageSize)
    }

    /// The event loop this RPC runs on (per-loop caches hang off it).
    public var loop: EventLoop { connection.socket.loop }

    /// True once the client has half-closed.
    public var isClientClosed: Bool { clientClosed }
    /// True once a status was given (sent or waiting for the half-close).
    public var isFinished: Bool { finishedStatus != nil || cancelled }

    /// Sends one response message (framed here).
    public func send(_ message: [UInt8]) {
        guard !isFinished else { return }
        connection.send(message, on: self)
    }

    /// Ends the RPC. An OK status waits for the client's half-close before
    /// its trailers go out (Envoy's graceful close expects that order); an
    /// error status is sent at once.
    public func finish(_ status: GRPCStatus) {
        guard !isFinished else { return }
        finishedStatus = status
        connection.finishRequested(self)
    }
}
