import EventLoop
import Glibc
import HTTP1
import Logging
import Metrics
import Synchronization

/// Where and how spans are exported (`serve --otlp-endpoint`).
public struct TracingConfiguration: Sendable {
    /// The collector's OTLP/HTTP traces endpoint, e.g. http://otel:4318/v1/traces.
    public var host: String
    public var port: Int
    public var path: String
    public var serviceName = "switchboard"
    /// Requests without a sampled parent that start a sampled trace (0–1).
    /// A parent's decision (the traceparent flags) is always followed.
    public var sampleRatio = 1.0
    /// Spans per export request at most, and how often the queue is sent.
    public var batchSize = 512
    public var intervalNanos: UInt64 = 1_000_000_000
    /// Spans waiting at most; more are dropped (counted) until the collector keeps up.
    public var maxQueue = 8192
    public var timeoutNanos: UInt64 = 5_000_000_000

    /// Parses `http://host:port/path` (http only: for TLS, a local collector or proxy).
    public init?(endpoint: String) {
        guard endpoint.hasPrefix("http://") else { return nil }
        let rest = endpoint.dropFirst("http://".count)
        let slash = rest.firstIndex(of: "/") ?? rest.endIndex
        let hostPort = rest[..<slash]
        path = slash == rest.endIndex ? "/v1/traces" : String(rest[slash...])
        if let colon = hostPort.lastIndex(of: ":"), let p = Int(hostPort[hostPort.index(after: colon)...]), (1...65535).contains(p) {
            host = String(hostPort[..<colon])
            port = p
        } else {
            host = String(hostPort)
            port = 4318
        }
        guard !host.isEmpty else { return nil }
    }
}

/// Spans of the request path, exported as OTLP/protobuf over HTTP from one
/// event loop. Recording (`finish`) appends to a bounded queue under a lock;
/// the loop sends a batch every interval. A collector that is down or slow
/// costs dropped spans (counted), never a blocked request.
public final class Tracer: Sendable {
    public let configuration: TracingConfiguration
    let logger: Logger
    private let queue = Mutex<[Span]>([])
    public let exported = Counter()
    public let dropped = Counter()
    public let failedExports = Counter()

    public init(configuration: TracingConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
    }

    /// The context this request's span runs in: the caller's (from its
    /// `traceparent`) with a new span id, or a new trace, sampled by ratio.
    /// Returns (the parent span id, or empty for a root; our context).
    public func start(traceparent: String?) -> (parent: [UInt8], context: TraceContext) {
        if let tp = traceparent, let parent = TraceContext(traceparent: tp) {
            return (parent.spanID, TraceContext(traceID: parent.traceID, spanID: Self.randomBytes(8), sampled: parent.sampled))
        }
        let sampled = configuration.sampleRatio >= 1 || Double.random(in: 0..<1) < configuration.sampleRatio
        return ([], TraceContext(traceID: Self.randomBytes(16), spanID: Self.randomBytes(8), sampled: sampled))
    }

    /// Queues a finished span for export.
    public func finish(_ span: Span) {
        let max = configuration.maxQueue
        let ok = queue.withLock { q -> Bool in
            guard q.count < max else { return false }
            q.append(span)
            return true
        }
        if !ok { dropped.add() }
    }

    /// Starts the periodic export on `loop`.
    public func start(on loop: EventLoop) {
        loop.execute { [self] in
            let client = HTTP1Client(host: configuration.host, port: configuration.port, loop: loop)
            schedule(client, loop)
        }
    }

    private func schedule(_ client: HTTP1Client, _ loop: EventLoop) {
        _ = loop.schedule(afterNanos: configuration.intervalNanos) { [self] in export(client, loop) }
    }

    private func export(_ client: HTTP1Client, _ loop: EventLoop) {
        let n = configuration.batchSize
        let batch = queue.withLock { q -> [Span] in
            let b = Array(q.prefix(n))
            q.removeFirst(b.count)
            return b
        }
        guard !batch.isEmpty else { return schedule(client, loop) }
        let body = OTLPEncoder.exportRequest(batch, service: configuration.serviceName, scope: "switchboard", version: "0.1.0")
        client.post(configuration.path, contentType: "application/x-protobuf", body: body,
                    timeoutNanos: configuration.timeoutNanos) { [self] r in
            switch r {
            case .success(let resp) where (200..<300).contains(resp.status):
                exported.add(UInt64(batch.count))
            case .success(let resp):
                failed(batch.count, "collector answered HTTP \(resp.status)")
            case .failure(let e):
                failed(batch.count, "\(e)")
            }
            // A full batch means more are waiting: send the next one now.
            if batch.count == n { export(client, loop) } else { schedule(client, loop) }
        }
    }

    private func failed(_ count: Int, _ why: String) {
        let first = failedExports.value == 0
        failedExports.add()
        dropped.add(UInt64(count))
        if first {
            logger.warning("tracing.export.failed", metadata: [
                "otlp.endpoint": "\(configuration.host):\(configuration.port)\(configuration.path)", "error": "\(why)",
                "effect": "spans dropped and counted (switchboard_tracing_spans_total{result=\"dropped\"}); requests are not affected",
            ])
        }
    }

    /// Wall-clock time for span timestamps.
    public static func unixNanos() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    /// Ids need to be unique and spread, not secret: a counter from a random
    /// start, mixed (one atomic add, no system call per id).
    private static let idSeed: UInt64 = {
        var g = SystemRandomNumberGenerator()
        return g.next()
    }()
    private static let idCounter = Atomic<UInt64>(0)

    static func randomBytes(_ n: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: n)
        var i = 0
        while i < n {
            let c = idCounter.add(1, ordering: .relaxed).newValue
            var x = mix(idSeed &+ c &* 0x9E37_79B9_7F4A_7C15)
            for _ in 0..<8 where i < n {
                out[i] = UInt8(truncatingIfNeeded: x)
                x >>= 8
                i += 1
            }
        }
        if out.allSatisfy({ $0 == 0 }) { out[n - 1] = 1 }  // all-zero ids are invalid
        return out
    }

    /// SplitMix64's finalizer.
    static func mix(_ x: UInt64) -> UInt64 {
        var z = x
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
