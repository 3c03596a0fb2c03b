import AdminHTTP
import EventLoop
import ExtProc
import ExtProcProto
import GRPCServer
import Logging
import PodDiscovery
import PodMetrics
import PodSnapshot
import Routing
import SharedState
import Tracing
import Tokenization
import Synchronization

/// Everything `switchboard serve` needs to know.
public struct GatewayConfiguration: Sendable {
    public var listen: [SocketAddress] = [.tcp(host: "127.0.0.1", port: 50051)]
    /// Where endpoints come from.
    public var discovery: Discovery

    public enum Discovery: Sendable {
        case podsFile(String)
        case kubernetes(KubernetesConfiguration)
    }
    public var loops: Int = 0
    public var defaultStrategy: String? = "random"
    /// Places new sessions for `session-affinity`.
    public var sessionInnerStrategy = "least-request"
    /// The prefix-cache strategies' index and guards.
    public var prefix = PrefixCacheOptions()
    /// Per-user limits (`--users-file`); nil: none.
    public var limits: LimitsConfiguration?
    /// Routing state shared with other replicas through Redis (`--shared-state`); nil: none.
    public var sharedState: SharedStateConfiguration?
    /// Span export over OTLP/HTTP (`--otlp-endpoint`); nil: no tracing.
    public var tracing: TracingConfiguration?
    /// Tokenizer mode: model → tokenizer.json path (loaded at start).
    public var prefixTokenizers: [String: String] = [:]
    public var seed: UInt64?
    public var requestBodyMode: BodySendMode = .buffered
    public var skipResponseBody = true
    /// Read each successful response's usage (the response body phase is
    /// turned on per response): real tokens in pod accounting, TTFT.
    public var usageAccounting = false
    /// Bearer-token key file (`KEY [USER]` per line); nil: no authentication.
    public var apiKeysFile: String?
    /// Ask engines for the usage chunk of streams whose clients did not, and
    /// strip it on the way back (exact prompt tokens for every stream).
    public var injectStreamUsage = false
    /// Route POSTs to other /v1/* paths on their body's model (else 404).
    public var passThroughUnknownPaths = false
    /// Also answer in the Gateway API Inference Extension's endpoint-picker
    /// form (`x-gateway-destination-endpoint`, with this many fallbacks);
    /// nil: `target-pod` only.
    public var endpointPickerFallbacks: Int?
    public var maxMessageBytes = 16 << 20
    public var maxBodyBytes = 8 << 20
    public var drainTimeoutSeconds: Double = 15
    /// Plain-HTTP admin endpoint (health, models, debug); nil turns it off.
    public var adminListen: SocketAddress? = .tcp(host: "127.0.0.1", port: 9102)
    /// How often the pods file is checked for edits; 0 reads it once.
    public var podsFilePollSeconds: Double = 1
    public var scraper = ScraperConfiguration()
    public var keepaliveSeconds: Double = 30
    public var keepaliveTimeoutSeconds: Double = 10
    /// Seconds a new ext_proc connection has to send its HTTP/2 preface.
    public var handshakeTimeoutSeconds: Double = 10

    public init(discovery: Discovery) {
        self.discovery = discovery
    }
}

/// The composition root: builds the pod registry, routers, ext_proc service
/// and gRPC server, runs them on one event loop per core, and drains on
/// SIGTERM. `run()` returns the process exit code.
public final class GatewayService {
    let configuration: GatewayConfiguration
    let logger: Logger

    public init(configuration: GatewayConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
    }

    /// Runs until SIGTERM/SIGINT has drained the server. 0 on a clean drain.
    public func run() throws -> Int32 {
        // Block the signals before any thread exists so all inherit the mask.
        let signals = try SignalWatcher(signals: [15, 2])
        let registry = PodRegistry()
        // The control loop runs signals, the drain, discovery and scraping;
        // the I/O loops only serve requests.
        let control = try EventLoop(index: -1)
        let scraper = PodMetricsScraper(configuration: configuration.scraper, loop: control, registry: registry, logger: logger)
        var prefix = configuration.prefix
        for (model, path) in configuration.prefixTokenizers.sorted(by: { $0.key < $1.key }) {
            do {
                let t = try BPETokenizer(contentsOf: path)
                prefix.tokenizers[model] = t
                logger.info("gateway.prefix.tokenizer", metadata: ["request.model": "\(model)", "path": "\(path)",
                                                                   "vocabulary": "\(t.vocabularySize)"])
            } catch {
                throw GatewayStartError(description: "--prefix-tokenizer \(model)=\(path): \(error)")
            }
        }
        let shared = configuration.sharedState.map { SharedRoutingState(configuration: $0, logger: logger) }
        let tracer = configuration.tracing.map { Tracer(configuration: $0, logger: logger) }
        let routers = RouterRegistry.standard(defaultStrategy: configuration.defaultStrategy, seed: configuration.seed,
                                              sessionInner: configuration.sessionInnerStrategy,
                                              prefix: PrefixCache(options: prefix, sink: shared), sink: shared)
        if configuration.sessionInnerStrategy == "session-affinity"
            || (try? routers.router(named: configuration.sessionInnerStrategy)) == nil {
            throw GatewayStartError(description: "unknown --session-inner-strategy '\(configuration.sessionInnerStrategy)'; "
                + "valid: \(routers.names.filter { $0 != "session-affinity" }.joined(separator: ", ")), or a blend")
        }
        if let d = configuration.defaultStrategy, !routers.names.contains(d) {
            throw GatewayStartError(description: "unknown default strategy '\(d)'; valid strategies: \(routers.names.joined(separator: ", ")), or none")
        }
        let publish: @Sendable (ModelTable) -> Void = { [logger] table in
            for (model, name) in table.defaultStrategies.sorted(by: { $0.key < $1.key }) where !routers.names.contains(name) {
                logger.warning("gateway.model.unknown_strategy", metadata: [
                    "request.model": "\(model)", "router.name": "\(name)",
                    "router.available": "\(routers.names.joined(separator: ","))",
                ])
            }
            registry.publish(models: table.endpoints, strategies: table.defaultStrategies)
            scraper.setEndpoints(registry.snapshot.allEndpoints)
        }
        let provider: any PodDiscoveryProvider
        switch configuration.discovery {
        case .podsFile(let path):
            provider = try StaticPodsFileProvider(path: path, pollNanos: UInt64(configuration.podsFilePollSeconds * 1e9),
                                                  loop: control, logger: logger, onChange: publish)
            let models = registry.snapshot.models
            logger.notice("gateway.pods.loaded", metadata: [
                "pods.file": "\(path)",
                "pods.models": "\(models.keys.sorted().joined(separator: ","))",
                "pods.endpoints": "\(models.values.reduce(0) { $0 + $1.count })",
                "scrape.interval_ms": "\(configuration.scraper.intervalNanos / 1_000_000)",
            ])
        case .kubernetes(let k):
            provider = KubernetesPodsProvider(configuration: k, logger: logger, onChange: publish)
            logger.notice("gateway.discovery.kubernetes", metadata: [
                "k8s.api": "\(k.host):\(k.port)",
                "k8s.namespaces": "\(k.namespaces.isEmpty ? "all" : k.namespaces.joined(separator: ","))",
                "k8s.label": "\(KubernetesPods.modelLabel)",
            ])
        }

        var apiKeys: APIKeyStore?
        if let path = configuration.apiKeysFile {
            do {
                apiKeys = try APIKeyStore(path: path, pollNanos: UInt64(configuration.podsFilePollSeconds * 1e9),
                                          loop: control, logger: logger)
            } catch {
                throw GatewayStartError(description: "\(error)")
            }
            logger.notice("auth.keys.loaded", metadata: ["auth.file": "\(path)", "auth.keys": "\(apiKeys!.count)"])
        }
        var limiter: Limiter?
        if let l = configuration.limits {
            do {
                limiter = try Limiter(configuration: l, loop: control, pollNanos: UInt64(configuration.podsFilePollSeconds * 1e9),
                                      logger: logger)
            } catch {
                throw GatewayStartError(description: "\(error)")
            }
            if let r = l.redis {
                logger.notice("limits.store.redis", metadata: [
                    "redis.address": "\(r.host):\(r.port)", "redis.db": "\(r.database)", "limits.failure_policy": "\(l.failOpen ? "open" : "closed")",
                    "limits.window": "\(l.window.rawValue) \(l.windowSeconds)s",
                ])
            } else {
                logger.notice("limits.users.loaded", metadata: [
                    "limits.file": "\(l.usersFile)", "limits.users": "\(limiter!.userCount)", "limits.store": "embedded",
                    "limits.window": "\(l.window.rawValue) \(l.windowSeconds)s",
                ])
            }
        }
        let extProc = ExtProcConfiguration(requestBodyMode: configuration.requestBodyMode,
                                           responseBodyMode: .none, maxBodyBytes: configuration.maxBodyBytes)
        let context = GatewayContext(registry: registry, routers: routers, logger: logger,
                                     extProc: extProc, skipResponseBody: configuration.skipResponseBody,
                                     usageAccounting: configuration.usageAccounting, apiKeys: apiKeys,
                                     injectStreamUsage: configuration.injectStreamUsage,
                                     passThroughUnknownPaths: configuration.passThroughUnknownPaths,
                                     endpointPickerFallbacks: configuration.endpointPickerFallbacks, limiter: limiter,
                                     shared: shared, tracer: tracer)
        if let tracer {
            tracer.start(on: control)
            let t = tracer.configuration
            logger.notice("tracing.enabled", metadata: [
                "otlp.endpoint": "http://\(t.host):\(t.port)\(t.path)", "tracing.sample_ratio": "\(t.sampleRatio)",
                "tracing.service": "\(t.serviceName)",
            ])
        }
        if let shared {
            shared.start(on: control, targets: .init(registry: registry, prefix: routers.prefixCache, fairness: routers.fairness) {
                [context] ticket, prompt, completion, estimated in
                context.applyForwardedUsage(ticket: ticket, promptTokens: prompt, completionTokens: completion, estimated: estimated)
            })
            let r = shared.configuration.redis
            logger.notice("shared_state.enabled", metadata: [
                "redis.address": "\(r.host):\(r.port)", "replica": "\(shared.replicaID)",
                "shared_state.interval_ms": "\(shared.configuration.intervalNanos / 1_000_000)",
                "shared_state.keys": "\(shared.configuration.keyPrefix):events, \(shared.configuration.keyPrefix):inflight",
            ])
        }
        let extStats = context.extProcStats
        var grpc = GRPCServerConfiguration(listen: configuration.listen)
        grpc.maxMessageSize = configuration.maxMessageBytes
        grpc.drainTimeoutNanos = UInt64(configuration.drainTimeoutSeconds * 1e9)
        grpc.keepaliveIntervalNanos = UInt64(configuration.keepaliveSeconds * 1e9)
        grpc.keepaliveTimeoutNanos = UInt64(configuration.keepaliveTimeoutSeconds * 1e9)
        grpc.handshakeTimeoutNanos = UInt64(configuration.handshakeTimeoutSeconds * 1e9)
        grpc.healthServices = ["", ExtProcService.serviceName]

        let loopCount = configuration.loops > 0 ? configuration.loops : System.coreCount
        let group = try EventLoopGroup(count: loopCount)
        let server = GRPCServer(configuration: grpc, group: group, logger: logger, services: [
            ExtProcService.path: ExtProcService.factory(configuration: extProc, stats: extStats) { stream in
                context.makeFilter(on: stream.loop)
            },
        ])
        if let l = limiter, l.shared != nil {
            // Connect every loop's Redis connection now, not at its first request.
            for loop in group.loops { loop.execute { _ = l.connection(on: loop) } }
        }
        let bound = try server.start()
        var admin: AdminServer?
        if let a = configuration.adminListen {
            admin = try AdminServer(address: a, group: group,
                                    routes: GatewayAdmin.routes(context: context, grpc: server, scraper: scraper, discovery: provider))
        }
        provider.start()
        scraper.start()
        let exit = ExitCode()
        try signals.attach(to: control) { [logger] sig in
            if server.isDraining {
                logger.warning("gateway.signal.again", metadata: ["signal": "\(sig)"])
                return
            }
            logger.notice("gateway.draining", metadata: ["signal": "\(sig)", "grpc.open_streams": "\(server.openStreams)"])
            server.drain(controlLoop: control) { timedOut in
                exit.set(timedOut ? 1 : 0)
                control.stop()
            }
        }
        group.start()
        logger.notice("gateway.listening", metadata: [
            "grpc.listen": "\(bound.map(\.description).joined(separator: ","))",
            "loops": "\(loopCount)",
            "admin.listen": "\(admin.map { "\($0.server.listener.address)" } ?? "off")",
            "router.default": "\(configuration.defaultStrategy ?? "(header required)")",
            "router.available": "\(routers.names.joined(separator: ","))",
        ])
        control.run()
        withExtendedLifetime((admin, provider)) {}
        group.stopAll()
        group.join()
        logger.notice("gateway.stopped", metadata: [
            "requests.routed": "\(context.stats.routed.value)",
            "requests.completed": "\(context.stats.completed.value)",
            "requests.rejected": "\(context.stats.rejected.value)",
            "requests.reset": "\(context.stats.reset.value)",
            "requests.aborted": "\(context.stats.aborted.value)",
            "extproc.violations": "\(extStats.violations.value)",
            "grpc.protocol_errors": "\(server.stats.protocolErrors.value)",
        ])
        return exit.value
    }
}

/// The exit code chosen on the control loop, read after it returns.
final class ExitCode: Sendable {
    private let code = Atomic<Int32>(0)
    func set(_ c: Int32) { code.store(c, ordering: .relaxed) }
    var value: Int32 { code.load(ordering: .relaxed) }
}

/// A setting that stops the gateway before it serves, with the reason.
public struct GatewayStartError: Error, CustomStringConvertible {
    public let description: String
}
