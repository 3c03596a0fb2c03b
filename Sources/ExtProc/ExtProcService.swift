import EventLoop
import ExtProcProto
import GRPCServer
import Metrics

/// The ext_proc gRPC method and a factory for the server's service table.
public enum ExtProcService {
    public static let path = "/envoy.service.ext_proc.v3.ExternalProcessor/Process"
    public static let serviceName = "envoy.service.ext_proc.v3.ExternalProcessor"

    /// A handler factory: `makeFilter` runs on the stream's loop thread.
    public static func factory(configuration: ExtProcConfiguration, stats: ExtProcStats,
                               makeFilter: @escaping @Sendable (GRPCStream) -> any ExtProcFilter)
        -> @Sendable (GRPCStream) -> any GRPCStreamHandler {
        return { stream in ExtProcStreamHandler(filter: makeFilter(stream), configuration: configuration, stats: stats) }
    }
}
