import EventLoop
import ExtProcProto
import GRPCServer
import Metrics

/// ext_proc counters, readable from any thread.
public final class ExtProcStats: Sendable {
    public let streams = Counter()
    public let decodeErrors = Counter()
    public let violations = Counter()
    public let immediateResponses = Counter()
    /// The filter's time per message, by phase (request headers, request
    /// body, response headers, response body): what the gateway adds to a
    /// request at each point Envoy waits on it (observer phases excepted).
    public let phaseDurations: [Histogram] = ExtProcStats.phases.map { _ in
        Histogram(bounds: [0.000_001, 0.000_002, 0.000_005, 0.000_01, 0.000_02, 0.000_05, 0.000_1, 0.000_2, 0.000_5, 0.001, 0.005, 0.01])
    }
    public static let phases = ["request_headers", "request_body", "response_headers", "response_body"]
    public init() {}
}
