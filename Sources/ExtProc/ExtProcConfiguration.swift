import EventLoop
import ExtProcProto
import GRPCServer
import Metrics

/// What the processor assumes about Envoy's processing mode until Envoy's
/// first message says otherwise (protocol_config).
public struct ExtProcConfiguration: Sendable {
    public var requestBodyMode: BodySendMode
    public var responseBodyMode: BodySendMode
    /// Largest request body collected in FULL_DUPLEX_STREAMED mode (then 413).
    public var maxBodyBytes: Int
    public init(requestBodyMode: BodySendMode = .buffered, responseBodyMode: BodySendMode = .none,
                maxBodyBytes: Int = 8 << 20) {
        self.requestBodyMode = requestBodyMode
        self.responseBodyMode = responseBodyMode
        self.maxBodyBytes = maxBodyBytes
    }
}
