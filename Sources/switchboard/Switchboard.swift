import ArgumentParser
import CommandOptions
import EventLoop
import Foundation
import Gateway
import Logging
import PodDiscovery
import PodMetrics
import PodSnapshot
import SharedState
import Tracing

@main
struct Switchboard: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "switchboard",
        abstract: "Envoy ext_proc gateway that routes OpenAI requests to vLLM pods.",
        discussion: """
        Envoy streams each HTTP request to Switchboard over gRPC (ext_proc). Switchboard \
        reads the model from the OpenAI body, picks a pod with the strategy named in the \
        client's `routing-strategy` header, and sets `target-pod: IP:PORT`, which Envoy's \
        ORIGINAL_DST cluster dials.

        Quick start:
          switchboard envoy-config --processor 127.0.0.1:50051 > envoy.yaml
          switchboard serve --pods-file pods.yaml --listen 127.0.0.1:50051
          envoy -c envoy.yaml
        """,
        subcommands: [Serve.self, EnvoyConfig.self, Tokenize.self, Users.self, Validate.self],
        defaultSubcommand: Serve.self)
}

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the ext_proc gRPC server.",
        discussion: """
        SIGTERM drains: health turns NOT_SERVING, listeners close, connections get GOAWAY, \
        in-flight requests finish, then the process exits 0 (1 if --drain-timeout passed first). \
        SIGINT does the same.
        """)

    @Option(name: .customLong("listen"), help: "Address to serve gRPC on: host:port or unix:/path. Repeatable.")
    var listen: [String] = ["127.0.0.1:50051"]

    @Option(help: "Discovery from a YAML file mapping models to endpoints (see docs/pods-file.md), reloaded on change.")
    var podsFile: String?

    @Flag(help: "Discovery from the Kubernetes API: pods labelled model.aibrix.ai/name (in-cluster service account unless --kubeconfig).")
    var kubernetes = false

    @Option(help: "Kubeconfig file for --kubernetes outside a cluster (its current context; token users).")
    var kubeconfig: String?

    @Option(name: .customLong("namespace"), help: "Namespace to watch with --kubernetes. Repeatable; default: all.")
    var namespaces: [String] = []

    @Option(help: "Strategy when a request has no routing-strategy header and its model has no routingStrategy in the pods file; 'none' makes the header mandatory. Default: $ROUTING_ALGORITHM when set (the reference gateway's variable), else random.")
    var defaultStrategy: String?

    @Option(help: "Strategy that places a new session for 'session-affinity' (any strategy or blend but session-affinity).")
    var sessionInnerStrategy: String = "least-request"

    @Option(help: "prefix-cache strategies: bytes of prompt text per index block (about 16 tokens at 64).")
    var prefixBlockBytes: Int = 64

    @Option(help: "prefix-cache strategies, tokenizer mode: MODEL=PATH of the model's tokenizer.json (byte-level BPE: GPT-2, Llama-3, Qwen2 families); index blocks are then --prefix-block-tokens token ids, aligned with the engine's blocks. Repeatable; models without one use character mode.")
    var prefixTokenizer: [String] = []

    @Option(help: "prefix-cache strategies, tokenizer mode: the engine's KV block size in tokens (vLLM: --block-size; 16 on GPUs by default, 128 on CPU builds).")
    var prefixBlockTokens: Int = 16

    @Option(help: "prefix-cache strategies: seed of the chained block keys (replicas with the same seed agree).")
    var prefixSeed: UInt64 = 0

    @Option(help: "prefix-cache: imbalance gate; when the busiest pod has more than this many requests in flight over the least busy, only the least busy are considered.")
    var prefixImbalance: Int = 8

    @Option(help: "prefix-cache: a matching pod is taken only while its in-flight count is at most mean + K x stddev over the pods.")
    var prefixStddevFactor: Double = 2

    @Option(help: "prefix-cache: a cached prefix counts only when it covers at least this fraction of the prompt's blocks (0-1).")
    var prefixMinMatch: Double = 0.1

    @Option(help: "prefix-cache strategies: block-pod entries the index holds at most (about 60 bytes each).")
    var prefixIndexBlocks: Int = 2_000_000

    @Option(help: "prefix-cache strategies: seconds an index entry lives without being routed to again.")
    var prefixTtl: Int = 1200

    @Option(help: "prefix-cache strategies: blocks the index keeps per pod, mirroring the engine's cache (0: no per-pod bound).")
    var prefixPodBlocks: Int = 0

    @Option(help: "prefix-cache-cost: what one request queued at a pod costs, in prompt tokens to compute (cost = uncached prompt tokens + this x queue length).")
    var prefixQueueTokens: Double = 256

    @Option(help: "Per-user limits: a JSON array of {\"name\", \"rpm\", \"tpm\"} records (the reference's user records; 0 = 100 requests and rpm x 1000 tokens), reloaded on change; edit it with `switchboard users`. A request's user is its API key's user, else the body's `user`, else the `user` header. Limits live in this process (one replica).")
    var usersFile: String?

    @Option(help: "Per-user limits in Redis (host:port), shared by every gateway replica: users are the reference's aibrix-users/<name> records (edit with `switchboard users --redis`), counters live in Redis. Debian's hiredis has no TLS: for a TLS Redis, run a local TLS proxy and point this at it.")
    var redis: String?

    @OptionGroup var redisAccess: RedisAccessOptions

    @Option(help: "Milliseconds a Redis command may take before the failure policy applies.")
    var redisTimeoutMs: Int = 100

    @Option(help: "When Redis is slow or down: open (admit, uncounted; logged and counted) or closed (503 with retry-after).")
    var limitsFailurePolicy: String = "open"

    @Option(help: "Limit windows: sliding (the previous window weighted by its overlap; no boundary bursts) or fixed (the reference's).")
    var limitWindow: String = "sliding"

    @Option(help: "Seconds per limit window (RPM and TPM are per this window).")
    var limitWindowSeconds: Int = 60

    @Option(help: "Output tokens a request without max_tokens reserves against its user's TPM until its real usage settles it.")
    var limitDefaultMaxTokens: Int = 256

    @Flag(help: "Share routing state with the other gateway replicas through --redis: prefix-index insertions, per-pod in-flight counts, vtc-basic's user charges, and usage read by a peer's observer stream (so replicas behind one Envoy route as one would). Off: each replica routes on what it saw itself.")
    var sharedState = false

    @Option(help: "This replica's name among its peers with --shared-state (default: host name and pid; in Kubernetes, the pod name).")
    var replicaId: String?

    @Option(help: "Export a span per request to this OpenTelemetry collector (OTLP/HTTP protobuf, e.g. http://otel-collector:4318/v1/traces). The W3C traceparent of the request is continued (or a trace started) and passed to the engine.")
    var otlpEndpoint: String?

    @Option(help: "With --otlp-endpoint: the share of requests without a sampled parent that start a sampled trace (0-1); a parent's sampling decision is always followed.")
    var traceSampleRatio: Double = 1.0

    @Option(help: "With --otlp-endpoint: the service.name of exported spans.")
    var otlpServiceName: String = "switchboard"

    @Option(help: "Milliseconds between shared-state exchanges (publish this replica's batch of changes, apply the peers', swap in-flight counts).")
    var sharedStateIntervalMs: Int = 20

    @Option(help: "Event loops (threads); 0 = one per core.")
    var loops: Int = 0

    @Option(help: "Envoy's request_body_mode: buffered or full-duplex-streamed (must match the Envoy config).")
    var requestBodyMode: String = "buffered"

    @Option(help: "Largest gRPC message accepted, in bytes.")
    var maxMessageBytes: Int = 16 << 20

    @Option(help: "Largest request body collected in full-duplex mode, in bytes (then 413).")
    var maxBodyBytes: Int = 8 << 20

    @Option(help: "Seconds to wait for in-flight requests on SIGTERM.")
    var drainTimeout: Double = 15

    @Option(help: "Idle seconds before a keepalive PING (0 = off).")
    var keepalive: Double = 30

    @Option(help: "Seconds to wait for the PING's answer before closing the connection.")
    var keepaliveTimeout: Double = 10

    @Option(help: "Seconds a new ext_proc connection has to send its HTTP/2 preface before it is closed (0 = no limit).")
    var handshakeTimeout: Double = 10

    @Option(help: "Seed for the random router (reproducible runs).")
    var seed: UInt64?

    @Option(help: "Plain-HTTP admin address (/healthz, /v1/models, /debug/pods, /debug/stats), or 'off'.")
    var adminListen: String = "127.0.0.1:9102"

    @Option(help: "Require 'Authorization: Bearer KEY' (or x-api-key): a file with one 'KEY [USER]' per line, reloaded on change; a key bound to a USER makes that the request's user.")
    var apiKeys: String?

    @Flag(help: "For streamed chat/completions requests without stream_options: add include_usage upstream and take the extra usage chunk out of the response, so prompt tokens are exact and clients see what they asked for (buffered request bodies only).")
    var injectStreamUsage = false

    @Flag(help: "Route POSTs to /v1/* paths the gateway does not know (an engine's tokenize, score, rerank…) on their body's 'model', instead of answering 404.")
    var passThroughUnknownPaths = false

    @Option(help: ArgumentHelp(
        "Endpoint-picker mode: also answer with x-gateway-destination-endpoint 'POD[,FALLBACK…]' (this many fallbacks, the least loaded other usable pods) and honour x-gateway-destination-endpoint-subset hints.",
        discussion: "For Envoy's override_host load-balancing policy (envoy-config --endpoint-picker) or any gateway that speaks the Gateway API Inference Extension's protocol. The envoy.lb dynamic-metadata form is not emitted yet (header form only)."))
    var endpointPickerFallbacks: Int?

    @Flag(inversion: .prefixedNo, help: ArgumentHelp(
        "Read every routed response's usage (real prompt and completion tokens per pod, TTFT).",
        discussion: "Off by default: the gateway's work then ends at the routing decision (two ext_proc messages per request) and pods are charged an estimate of prompt tokens from the body size until the request ends. On, Envoy's usage observer (envoy-config --response-phase observer) sends each response to the gateway without waiting on it, which costs Envoy about a third more CPU per request (docs/decisions/0005)."))
    var usageAccounting = false

    @Option(help: "Seconds between checks of the pods file and the key file for edits (0 = read once).")
    var podsFilePoll: Double = 1

    @Option(help: "Milliseconds between scrapes of each pod's /metrics.")
    var scrapeIntervalMs: Double = 50

    @Option(help: "Milliseconds before a scrape without a full response fails.")
    var scrapeTimeoutMs: Double = 1000

    @Option(help: "Scrapes in flight at once across all pods (the rest wait a tick).")
    var scrapeMaxInFlight: Int = 256

    @Option(help: "Failed scrapes in a row that mark a pod's metrics stale.")
    var staleAfterFailures: Int = 3

    @Option(help: "Milliseconds after the last good scrape that a pod's metrics go stale.")
    var staleAfterMs: Double = 1000

    @Option(help: "Seconds of scrapes that rates and latency estimates are computed over.")
    var metricsWindow: Double = 10

    @OptionGroup var log: LogOptions

    func run() throws {
        let logger = try log.bootstrap(label: "switchboard")
        let discovery: GatewayConfiguration.Discovery
        switch (podsFile, kubernetes) {
        case (let path?, false):
            discovery = .podsFile(path)
        case (nil, true):
            var k = try kubeconfig.map { try KubernetesConfiguration.kubeconfig(path: $0) } ?? KubernetesConfiguration.inCluster()
            k.namespaces = namespaces
            discovery = .kubernetes(k)
        default:
            throw ValidationError("choose one discovery: --pods-file FILE or --kubernetes")
        }
        var c = GatewayConfiguration(discovery: discovery)
        c.listen = try listen.map { try SocketAddress(parsing: $0) }
        c.loops = loops
        let strategy = defaultStrategy ?? ProcessInfo.processInfo.environment["ROUTING_ALGORITHM"].flatMap { $0.isEmpty ? nil : $0 } ?? "random"
        c.defaultStrategy = strategy == "none" ? nil : strategy
        c.sessionInnerStrategy = sessionInnerStrategy
        if usersFile != nil && redis != nil {
            throw ValidationError("choose one limits store: --users-file (in process) or --redis (shared)")
        }
        if usersFile != nil || redis != nil {
            var l = LimitsConfiguration(usersFile: usersFile ?? "")
            if let address = redis {
                guard var r = try? LimitsConfiguration.redis(address: address) else {
                    throw ValidationError("--redis wants host:port, got '\(address)'")
                }
                r.password = try redisAccess.password
                r.username = redisAccess.redisUsername
                guard redisAccess.redisDb >= 0, redisTimeoutMs > 0 else { throw ValidationError("--redis-db must be >= 0 and --redis-timeout-ms > 0") }
                r.database = redisAccess.redisDb
                r.commandTimeoutNanos = UInt64(redisTimeoutMs) * 1_000_000
                l.redis = r
            }
            switch limitsFailurePolicy {
            case "open": l.failOpen = true
            case "closed": l.failOpen = false
            default: throw ValidationError("--limits-failure-policy must be open or closed")
            }
            guard l.setWindow(named: limitWindow) else { throw ValidationError("--limit-window must be sliding or fixed") }
            guard limitWindowSeconds > 0, limitDefaultMaxTokens >= 0 else {
                throw ValidationError("--limit-window-seconds must be positive and --limit-default-max-tokens non-negative")
            }
            l.windowSeconds = limitWindowSeconds
            l.defaultMaxTokens = limitDefaultMaxTokens
            c.limits = l
        }
        if sharedState {
            guard let r = c.limits?.redis else {
                throw ValidationError("--shared-state exchanges state through Redis: give --redis HOST:PORT (users without an aibrix-users record stay unlimited)")
            }
            guard sharedStateIntervalMs > 0 else { throw ValidationError("--shared-state-interval-ms must be positive") }
            var redis = r
            // Off the request path: a slow reply delays the exchange, not a request.
            redis.commandTimeoutNanos = max(r.commandTimeoutNanos, 500_000_000)
            let id = replicaId ?? "\(ProcessInfo.processInfo.hostName)-\(ProcessInfo.processInfo.processIdentifier)"
            guard !id.isEmpty, !id.contains("@"), !id.contains(" ") else {
                throw ValidationError("--replica-id must be non-empty, without '@' or spaces")
            }
            var sc = SharedStateConfiguration(redis: redis, replicaID: id)
            sc.intervalNanos = UInt64(sharedStateIntervalMs) * 1_000_000
            c.sharedState = sc
        } else if replicaId != nil {
            throw ValidationError("--replica-id names this replica for --shared-state, which is off")
        }
        if let e = otlpEndpoint {
            guard var t = TracingConfiguration(endpoint: e) else {
                throw ValidationError("--otlp-endpoint wants http://host[:port][/path] (OTLP/HTTP; for TLS, a local collector), got '\(e)'")
            }
            guard (0...1).contains(traceSampleRatio) else { throw ValidationError("--trace-sample-ratio must be between 0 and 1") }
            t.sampleRatio = traceSampleRatio
            t.serviceName = otlpServiceName
            c.tracing = t
        }
        guard prefixBlockBytes > 0, prefixIndexBlocks > 0, prefixTtl > 0, prefixPodBlocks >= 0, prefixImbalance >= 0,
              prefixStddevFactor >= 0, prefixQueueTokens >= 0 else {
            throw ValidationError("--prefix-block-bytes, --prefix-index-blocks and --prefix-ttl must be positive; the other --prefix-* options non-negative")
        }
        c.prefix.blockBytes = prefixBlockBytes
        guard prefixBlockTokens > 0 else { throw ValidationError("--prefix-block-tokens must be positive") }
        c.prefix.blockTokens = prefixBlockTokens
        for spec in prefixTokenizer {
            let parts = spec.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
                throw ValidationError("--prefix-tokenizer wants MODEL=PATH, got '\(spec)'")
            }
            c.prefixTokenizers[parts[0]] = parts[1]
        }
        c.prefix.seed = prefixSeed
        c.prefix.imbalance = prefixImbalance
        c.prefix.stddevFactor = prefixStddevFactor
        guard (0...1).contains(prefixMinMatch) else { throw ValidationError("--prefix-min-match must be between 0 and 1") }
        c.prefix.minMatchFraction = prefixMinMatch
        c.prefix.maxEntries = prefixIndexBlocks
        c.prefix.ttlSeconds = prefixTtl
        c.prefix.podCapacityBlocks = prefixPodBlocks > 0 ? prefixPodBlocks : nil
        c.prefix.queueTokens = prefixQueueTokens
        guard let mode = EnvoyConfigRenderer.parseMode(requestBodyMode), mode == .buffered || mode == .fullDuplexStreamed else {
            throw ValidationError("--request-body-mode must be buffered or full-duplex-streamed")
        }
        c.requestBodyMode = mode
        c.maxMessageBytes = maxMessageBytes
        c.maxBodyBytes = maxBodyBytes
        c.drainTimeoutSeconds = drainTimeout
        c.keepaliveSeconds = keepalive
        c.keepaliveTimeoutSeconds = keepaliveTimeout
        c.handshakeTimeoutSeconds = handshakeTimeout
        c.seed = seed
        c.adminListen = adminListen == "off" ? nil : try SocketAddress(parsing: adminListen)
        c.usageAccounting = usageAccounting
        c.injectStreamUsage = injectStreamUsage
        c.passThroughUnknownPaths = passThroughUnknownPaths
        if let n = endpointPickerFallbacks, n < 0 { throw ValidationError("--endpoint-picker-fallbacks must be 0 or more") }
        c.endpointPickerFallbacks = endpointPickerFallbacks
        c.apiKeysFile = apiKeys
        c.podsFilePollSeconds = podsFilePoll
        guard scrapeIntervalMs > 0, scrapeTimeoutMs > 0, staleAfterMs > 0, metricsWindow > 0, staleAfterFailures > 0,
              scrapeMaxInFlight > 0 else {
            throw ValidationError("scrape and staleness settings must be positive")
        }
        c.scraper.intervalNanos = UInt64(scrapeIntervalMs * 1e6)
        c.scraper.timeoutNanos = UInt64(scrapeTimeoutMs * 1e6)
        c.scraper.maxInFlight = scrapeMaxInFlight
        c.scraper.failureThreshold = staleAfterFailures
        c.scraper.maxAgeNanos = UInt64(staleAfterMs * 1e6)
        c.scraper.windowNanos = UInt64(metricsWindow * 1e9)
        let code = try GatewayService(configuration: c, logger: logger).run()
        if code != 0 { throw ExitCode(code) }
    }
}

struct EnvoyConfig: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "envoy-config",
        abstract: "Print the Envoy bootstrap YAML that fronts this gateway.",
        discussion: "Validate it with: envoy --mode validate -c FILE")

    @Option(help: "Envoy's HTTP listener (host:port).")
    var listen: String = "127.0.0.1:10000"

    @Option(help: "Envoy's admin address (keep it on loopback).")
    var admin: String = "127.0.0.1:9901"

    @Option(help: "Where Switchboard serves gRPC: host:port or unix:/path. Repeat it for gateway replicas behind one Envoy (run them with serve --shared-state); Envoy then health-checks each over gRPC and spreads streams over the healthy ones.")
    var processor: [String] = ["127.0.0.1:50051"]

    @Option(help: "request_body_mode: buffered or full-duplex-streamed.")
    var requestBodyMode: String = "buffered"

    @Option(help: ArgumentHelp(
        "Who sees the response: observer, none or in-band.",
        discussion: """
        observer (default): the routing stream ends at the routing decision (two ext_proc \
        messages per request); Envoy names the pod and request id in the response and shapes \
        its own errors as OpenAI JSON; a second ext_proc filter in observability mode reads \
        usage and TTFT without ever holding the client's bytes. \
        none: the same without the observer (no per-request usage). \
        in-band: the routing stream also answers the response headers and reads bodies for \
        usage chunk by chunk; needed for `serve --inject-stream-usage` and for rewriting \
        upstream errors that are not OpenAI-shaped. See docs/decisions/0005.
        """))
    var responsePhase: String = "observer"

    @Option(help: "response_body_mode of the routing stream with --response-phase in-band: none or streamed.")
    var responseBodyMode: String = "streamed"

    @Option(help: "ext_proc per-message timeout in milliseconds.")
    var messageTimeoutMs: Int = 5000

    @Option(help: "Route and stream-idle timeout in seconds (long generations need minutes).")
    var routeTimeout: Int = 300

    @Option(help: "Largest buffered request body in bytes (Envoy answers 413 above it).")
    var bufferLimit: Int = 8 << 20

    @Flag(help: "Let requests through when the gateway is unreachable (not recommended: no routing then).")
    var failureModeAllow = false

    @Option(help: "Endpoint-picker mode: list this pods file's endpoints in the upstream cluster and let Envoy's override_host policy follow the gateway's x-gateway-destination-endpoint (run serve with --endpoint-picker-fallbacks).")
    var endpointPickerPodsFile: String?

    func run() throws {
        var r = EnvoyConfigRenderer()
        r.listen = try SocketAddress(parsing: listen)
        r.admin = try SocketAddress(parsing: admin)
        guard let first = processor.first else { throw ValidationError("give at least one --processor") }
        r.processor = try SocketAddress(parsing: first)
        r.moreProcessors = try processor.dropFirst().map { try SocketAddress(parsing: $0) }
        guard let rq = EnvoyConfigRenderer.parseMode(requestBodyMode) else { throw ValidationError("bad --request-body-mode") }
        guard let rs = EnvoyConfigRenderer.parseMode(responseBodyMode) else { throw ValidationError("bad --response-body-mode") }
        r.requestBodyMode = rq
        r.responseBodyMode = rs
        guard let phase = EnvoyConfigRenderer.ResponsePhase(rawValue: responsePhase) else {
            throw ValidationError("bad --response-phase '\(responsePhase)': use observer, none or in-band")
        }
        r.responsePhase = phase
        if let path = endpointPickerPodsFile {
            let table: ModelTable
            do {
                table = try StaticPodsFile.load(path: path)
            } catch {
                throw ValidationError("\(error)")
            }
            var seen = Set<String>()
            r.endpointPicker = table.endpoints.keys.sorted().flatMap { table.endpoints[$0]! }.filter { seen.insert($0.address).inserted }
        }
        r.messageTimeoutMillis = messageTimeoutMs
        r.routeTimeoutSeconds = routeTimeout
        r.bufferLimitBytes = bufferLimit
        r.failureModeAllow = failureModeAllow
        print(try r.render(), terminator: "")
    }
}

struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the token ids the gateway's tokenizer gives a text (prefix-cache tokenizer mode).",
        discussion: """
        Reads a Hugging Face tokenizer.json (byte-level BPE: GPT-2, Llama-3, Qwen2 families) \
        and prints the ids of TEXT as a JSON array, or, with --json-lines, the ids of each \
        JSON string read from stdin, one array per line. Compare with the engine's \
        /tokenize endpoint or Python `tokenizers` before relying on tokenizer mode.
        """)

    @Option(help: "Path of the model's tokenizer.json.")
    var tokenizer: String

    @Flag(help: "Add the post-processor's special tokens (as the engine does for completions prompts).")
    var addSpecialTokens = false

    @Flag(help: "Read one JSON string per stdin line; print one JSON array of ids per line.")
    var jsonLines = false

    @Argument(help: "The text (without --json-lines).")
    var text: String?

    func run() throws {
        do {
            try TokenizerTool.run(tokenizer: tokenizer, addSpecialTokens: addSpecialTokens, jsonLines: jsonLines, text: text)
        } catch {
            throw ValidationError("\(error)")
        }
    }
}

struct Validate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check pods files, users files, API key files and rendered Envoy configs before the gateway reads them.",
        discussion: """
        Each file's kind is taken from its content (a JSON array: users; YAML with static_resources: an Envoy \
        config; YAML with models: a pods file; otherwise an API key file) unless --kind says. Prints one line \
        per file, FILE: ok (...) or FILE:LINE: what is wrong, and exits 1 when any file is bad (the Helm \
        chart runs it as an init step, so a bad config fails the rollout, not the traffic). For Envoy configs \
        it checks what the gateway depends on (the ext_proc filter and its HTTP/2 cluster, the anti-spoof \
        header removal, the route's ORIGINAL_DST cluster); `envoy --mode validate` checks the rest.
        """)

    @Option(help: "Treat every file as this kind: pods, users, keys or envoy.")
    var kind: String?

    @Argument(help: "Files to check.")
    var files: [String]

    func run() throws {
        var k: ConfigValidator.Kind?
        if let name = kind {
            guard let v = ConfigValidator.Kind(rawValue: name) else {
                throw ValidationError("--kind must be one of \(ConfigValidator.Kind.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            k = v
        }
        var bad = 0
        for f in files {
            let r = ConfigValidator.validate(path: f, as: k)
            if r.errors.isEmpty {
                print("\(f): ok (\(r.kind.rawValue): \(r.summary))")
            } else {
                bad += 1
                for e in r.errors { print(e) }
            }
        }
        // Argument parsing prints the error on standard error and exits 1.
        if bad > 0 { throw ValidateFailed(bad: bad, of: files.count) }
    }

    struct ValidateFailed: Error, CustomStringConvertible {
        let bad: Int, of: Int
        var description: String { "validate: \(bad) of \(of) file(s) have errors" }
    }
}

struct Users: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Manage per-user limits in a users file (serve --users-file reloads it on change).",
        discussion: """
        Records are the reference gateway's: {"name", "rpm", "tpm"} (0 = its defaults: 100 \
        requests and rpm x 1000 tokens per window). Examples:
          switchboard users --file users.json add alice --rpm 50 --tpm 20000
          switchboard users --file users.json set alice --rpm 100
          switchboard users --file users.json list
          switchboard users --file users.json delete alice
          switchboard users --redis 127.0.0.1:6379 add alice --rpm 50   (the shared store)
        """)

    @Option(help: "The users file (created by add when missing).")
    var file: String?

    @Option(help: "Or Redis (host:port): the aibrix-users/<name> records `serve --redis` reads.")
    var redis: String?

    @OptionGroup var redisAccess: RedisAccessOptions

    @Argument(help: "add, set, delete or list.")
    var action: String

    @Argument(help: "The user's name (add, set, delete).")
    var name: String?

    @Option(help: "Requests per window (add, set).")
    var rpm: Int?

    @Option(help: "Tokens per window (add, set).")
    var tpm: Int?

    func run() throws {
        do {
            switch (file, redis) {
            case (let f?, nil):
                print(try UsersTool.run(file: f, action: action, name: name, rpm: rpm, tpm: tpm), terminator: "")
            case (nil, let r?):
                print(try UsersTool.run(redis: r, password: redisAccess.password, username: redisAccess.redisUsername,
                                        db: redisAccess.redisDb, action: action, name: name, rpm: rpm, tpm: tpm), terminator: "")
            default:
                throw ValidationError("choose one: --file FILE or --redis HOST:PORT")
            }
        } catch let e as ValidationError {
            throw e
        } catch {
            throw ValidationError("\(error)")
        }
    }
}

/// How to log in to Redis (serve --redis, users --redis).
struct RedisAccessOptions: ParsableArguments {
    // The password itself is never an argument: /proc/PID/cmdline is readable by every user of the host.
    @Option(help: "File holding the Redis AUTH password (a mounted Secret); else $REDIS_PASSWORD.")
    var redisPasswordFile: String?

    @Option(help: "Redis ACL user (AUTH user password).")
    var redisUsername: String?

    @Option(help: "Redis database number (SELECT).")
    var redisDb: Int = 0

    var password: String? {
        get throws {
            guard let path = redisPasswordFile else { return SecretEnvironment.value("REDIS_PASSWORD") }
            guard let p = SecretEnvironment.file(path) else {
                throw ValidationError("cannot read --redis-password-file \(path) (or it is empty)")
            }
            return p
        }
    }
}
