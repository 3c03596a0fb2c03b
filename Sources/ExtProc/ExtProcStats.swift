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
    public init() {}
}
