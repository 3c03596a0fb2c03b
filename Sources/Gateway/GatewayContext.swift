import EventLoop
import ExtProc
import ExtProcProto
import GRPCServer
import Logging
import Metrics
import PodMetrics
import PodSnapshot
import Routing

/// What every request's filter shares: the pod registry, the routers, the
/// settings and the counters. Immutable or internally synchronized.
public final class GatewayContext: Sendable {
    public let registry: PodRegistry
    public let routers: RouterRegistry
    public let logger: Logger
    public let stats = GatewayStats()
    /// Header the ORIGINAL_DST cluster reads.
    public let targetHeader: String
    /// Sent with the answer to request headers in BUFFERED mode: the full
    /// processing mode for the rest of the stream, with the response body
    /// phase turned off (nothing reads response bodies until usage
    /// accounting lands). nil when Envoy's configured mode should stand.
    let modeOverrideAfterRequestHeaders: ProcessingModeOverride?

    public init(registry: PodRegistry, routers: RouterRegistry, logger: Logger,
                extProc: ExtProcConfiguration, skipResponseBody: Bool, targetHeader: String = "target-pod") {
        self.registry = registry
        self.routers = routers
        self.logger = logger
        self.targetHeader = targetHeader
        if skipResponseBody && extProc.requestBodyMode != .fullDuplexStreamed {
            modeOverrideAfterRequestHeaders = ProcessingModeOverride(
                requestHeaderMode: .send, responseHeaderMode: .send,
                requestBodyMode: extProc.requestBodyMode, responseBodyMode: .none,
                requestTrailerMode: .skip, responseTrailerMode: .skip)
        } else {
            modeOverrideAfterRequestHeaders = nil
        }
    }

    /// A filter for one new ext_proc stream, on `loop`'s thread.
    public func makeFilter(on loop: EventLoop) -> any ExtProcFilter {
        GatewayFilter(context: self, pods: reader(on: loop))
    }

    /// The loop's snapshot reader (created on first use; loop-confined).
    func reader(on loop: EventLoop) -> PodSnapshotReader {
        if let r = loop.loopLocal["gateway.pods"] as? PodSnapshotReader { return r }
        let r = PodSnapshotReader(registry: registry)
        loop.loopLocal["gateway.pods"] = r
        return r
    }
}

/// Request outcomes, readable from any thread.
public final class GatewayStats: Sendable {
    /// Time to decide a request's pod: body parse, snapshot read, router.
    public let routingDuration = Histogram(bounds: [0.000_001, 0.000_002, 0.000_005, 0.000_01, 0.000_02, 0.000_05,
                                                    0.000_1, 0.000_2, 0.000_5, 0.001, 0.005, 0.01])
    public let routed = Counter()
    public let completed = Counter()
    public let rejected = Counter()
    public let reset = Counter()
    public let aborted = Counter()
    public let violations = Counter()
}
