// swift-tools-version: 6.2
//
// Switchboard: an Envoy ext_proc gateway for vLLM fleets, a KV-cache node
// agent, and the tools to measure them. Dependencies point one way:
// C modules -> bindings -> protocol core -> domain -> composition root -> executables.
// See docs/architecture.md for the map.
import PackageDescription

let strict: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .treatAllWarnings(as: .error),
]

let package = Package(
    name: "Switchboard",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "switchboard", targets: ["switchboard"]),
        .executable(name: "vllm-sim", targets: ["vllm-sim"]),
        .executable(name: "switchboard-kv-agent", targets: ["switchboard-kv-agent"]),
        .executable(name: "switchboard-kv-server", targets: ["switchboard-kv-server"]),
        // The KV agent's C client, loaded by engine connectors (connectors/vllm) with ctypes.
        .library(name: "switchboard_kv", type: .dynamic, targets: ["CKVClient"]),
        // The parsers and decoders the fuzz targets drive (Tests/Fuzz, its own package; scripts/fuzz).
        .library(name: "SwitchboardFuzzing", targets: ["ExtProcProto", "HTTP2", "GRPCServer", "OpenAIAPI", "PodMetrics", "PodDiscovery",
                                                       "RateLimit", "KVProtocol", "KVServer"]),
        // The CUDA shim (runtime loaded with dlopen; "unavailable" without a GPU).
        .library(name: "switchboard_cuda", type: .dynamic, targets: ["CCudaShim"]),
    ],
    dependencies: [
        // Chosen on purpose and kept few (2-core CI builds from scratch):
        // argument parsing for the thin executables, the logging API, and a
        // YAML reader for the pods file.
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.0"),
    ],
    targets: [
        // MARK: C modules (system libraries and tiny shims). Each is imported
        // by exactly one Swift binding module.
        .systemLibrary(name: "CNghttp2", pkgConfig: "libnghttp2",
                       providers: [.apt(["libnghttp2-dev"])]),
        .systemLibrary(name: "CProtobufC", pkgConfig: "libprotobuf-c",
                       providers: [.apt(["libprotobuf-c-dev"])]),
        // hiredis: module map ready for the Redis binding of the rate-limit issue.
        // No pkgConfig: Debian's hiredis.pc adds -D_FILE_OFFSET_BITS=64, which SwiftPM
        // refuses with a warning; the headers are in /usr/include/hiredis.
        .systemLibrary(name: "CHiredis", providers: [.apt(["libhiredis-dev"])]),
        .systemLibrary(name: "COpenSSL", pkgConfig: "openssl",
                       providers: [.apt(["libssl-dev"])]),
        .target(name: "CSystem"),
        .target(name: "CExtProcProto", dependencies: ["CProtobufC"],
                path: "Sources/CExtProcProto", sources: ["generated"]),

        // MARK: bindings: the only Swift modules that import a C module (each
        // `internal import`, so no C type leaks upward) and the only places
        // with unsafe pointer work. scripts/check-architecture enforces it.
        .target(name: "EventLoop", dependencies: ["CSystem"], swiftSettings: strict),
        .target(name: "HTTP2", dependencies: ["CNghttp2", "EventLoop"], swiftSettings: strict),
        .target(name: "ExtProcProto", dependencies: ["CExtProcProto", "CProtobufC"], swiftSettings: strict),
        .target(name: "TLS", dependencies: ["COpenSSL"], swiftSettings: strict),
        // The only user of hiredis: an async Redis connection on a gateway event loop.
        .target(name: "Redis", dependencies: ["CHiredis", "EventLoop"], swiftSettings: strict),
        // Whether RDMA is usable here (the RDMA shim's probe, in safe Swift).
        .target(name: "RDMA", dependencies: ["CRdmaShim"], swiftSettings: strict),
        // The KV agent's shared-memory page pool (memfd, mmap, SCM_RIGHTS through CSystem).
        .target(name: "HostMemory", dependencies: ["CSystem"], swiftSettings: strict),

        // MARK: small utilities (standard library + Synchronization, or one library)
        // Counters, histograms and the one Prometheus text writer (gateway, KV agent, simulator).
        .target(name: "Metrics", swiftSettings: strict),
        // Option groups every executable shares (--log-level and the one swift-log bootstrap).
        .target(name: "CommandOptions", dependencies: [
            "Metrics", .product(name: "ArgumentParser", package: "swift-argument-parser"), .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: strict),

        // MARK: protocol core
        .target(name: "GRPCServer", dependencies: [
            "HTTP2", "EventLoop", "Metrics", .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: strict),
        .target(name: "HTTP1", dependencies: ["EventLoop"], swiftSettings: strict),
        // The plain-HTTP admin side door (probes, /metrics, debug pages) of the
        // gateway and the KV agent: one route table over HTTP1.
        .target(name: "AdminHTTP", dependencies: ["HTTP1", "EventLoop"], swiftSettings: strict),
        .target(name: "ExtProc", dependencies: [
            "ExtProcProto", "GRPCServer", "EventLoop", "Metrics", .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: strict),

        // MARK: domain: the gateway's
        .target(name: "OpenAIAPI", dependencies: ["Metrics"], swiftSettings: strict),
        // What routers read: endpoints, per-pod metrics, health, gateway load,
        // published as immutable snapshots. Standard library + Synchronization only.
        .target(name: "PodSnapshot", swiftSettings: strict),
        // Where endpoints come from: the pods file, the Kubernetes API over TLS.
        .target(name: "PodDiscovery", dependencies: [
            "PodSnapshot", "EventLoop", "Metrics", "TLS", "Yams", .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: strict),
        // Scraping /metrics: the scraper, the Prometheus parsers, the vLLM metric model.
        .target(name: "PodMetrics", dependencies: [
            "PodSnapshot", "EventLoop", "HTTP1", "Metrics", .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: strict),
        // Per-user request and token limits: window arithmetic and the in-process store.
        .target(name: "RateLimit", dependencies: ["Redis", "PodDiscovery"], swiftSettings: strict),
        // Native byte-level BPE from Hugging Face tokenizer.json (GPT-2, Llama-3, Qwen2 families).
        .target(name: "Tokenization", swiftSettings: strict),
        // Chained prefix-block keys and the bounded index of which pod holds which block.
        .target(name: "PrefixIndex", dependencies: ["PodSnapshot"], swiftSettings: strict),
        // Router protocol and strategies: a request summary and a pod snapshot in, a pod out.
        .target(name: "Routing", dependencies: ["PodSnapshot", "PrefixIndex", "Tokenization"], swiftSettings: strict),
        // Request-path spans: W3C traceparent, OTLP/protobuf over HTTP.
        .target(name: "Tracing", dependencies: ["EventLoop", "HTTP1", "Metrics", .product(name: "Logging", package: "swift-log")],
                swiftSettings: strict),
        // Routing state gateway replicas exchange through Redis (prefix insertions, fairness charges, in-flight counts).
        .target(name: "SharedState", dependencies: ["Redis", "Routing", "PodSnapshot", "EventLoop", "Metrics",
                                                    .product(name: "Logging", package: "swift-log")], swiftSettings: strict),

        // MARK: domain: the KV-cache node agent
        // The agent's wire protocol and block keys: what an engine client or
        // an L2 cache server needs to speak to an agent, without the store.
        .target(name: "KVProtocol", swiftSettings: strict),
        // Key spaces, eviction policies, the block store, the in-process L1 cache.
        // Where KV blocks live among L2 cache servers: a consistent-hash ring.
        .target(name: "KVPlacement", dependencies: ["KVProtocol"], swiftSettings: strict),
        .target(name: "KVCache", dependencies: ["KVProtocol", "HostMemory"], swiftSettings: strict),
        // The agent server (one event loop) and its process wiring (KVAgentService).
        // The agent's side of the L2 tier: connections to cache servers, the ring
        // over the healthy ones, reads with deadlines and failover, write-behind.
        .target(name: "KVL2Client", dependencies: ["KVPlacement", "KVProtocol", "HostMemory", "EventLoop"], swiftSettings: strict),
        // L2 membership through Redis: servers register with heartbeats, agents list them.
        .target(name: "KVMembership", dependencies: ["Redis", "EventLoop"], swiftSettings: strict),
        .target(name: "KVAgent", dependencies: [
            "KVL2Client", "KVMembership", "Redis", "RDMA", "KVCache", "KVProtocol", "HostMemory", "EventLoop", "Metrics", "AdminHTTP", .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: strict),
        // The L2 cache server: slot pool, checksummed index, watermark eviction, TCP protocol server.
        .target(name: "KVServer", dependencies: [
            "KVMembership", "Redis", "RDMA", "KVCache", "KVProtocol", "HostMemory", "EventLoop", "Metrics", "AdminHTTP", .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: strict),
        .target(name: "KVAgentClient", dependencies: ["KVProtocol", "KVCache", "HostMemory", "EventLoop"], swiftSettings: strict),
        // C libraries loaded by engine connectors (connectors/): the agent's C
        // client and the CUDA shim. Plain C, no Swift above them.
        .target(name: "CKVClient"),
        .target(name: "CCudaShim", linkerSettings: [.linkedLibrary("dl")]),
        // The RDMA shim (libibverbs loaded with dlopen; "unavailable" without a device or the library).
        .target(name: "CRdmaShim", linkerSettings: [.linkedLibrary("dl")]),

        // MARK: domain: the simulated vLLM pod (studies and tests; never linked by the gateway or agent)
        .target(name: "VLLMSim", dependencies: [
            "KVAgentClient", "KVCache", "KVProtocol", "HTTP1", "EventLoop", "Metrics", "OpenAIAPI", "Tokenization", .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: strict),

        // MARK: composition root
        .target(name: "Gateway", dependencies: [
            "GRPCServer", "ExtProc", "ExtProcProto", "OpenAIAPI", "Routing", "Tokenization", "RateLimit", "SharedState", "Tracing", "PodSnapshot", "PodDiscovery", "PodMetrics", "EventLoop", "HTTP1", "Metrics", "AdminHTTP",
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: strict),

        // MARK: thin executables
        .executableTarget(name: "switchboard", dependencies: [
            "Gateway", "SharedState", "Tracing", "PodSnapshot", "PodDiscovery", "PodMetrics", "CommandOptions", .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: strict),
        .executableTarget(name: "switchboard-kv-agent", dependencies: [
            "KVAgent", "KVCache", "KVL2Client", "EventLoop", "CommandOptions", .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], swiftSettings: strict),
        .executableTarget(name: "switchboard-kv-server", dependencies: [
            "KVServer", "KVCache", "EventLoop", "CommandOptions", .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], swiftSettings: strict),
        .executableTarget(name: "vllm-sim", dependencies: [
            "VLLMSim", "CommandOptions", .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], swiftSettings: strict),

        // MARK: benchmarks (Swift side; drivers are scripts/bench-*)
        // Keys-only cache model for eviction studies (benchmarks and tests only).
        .target(name: "KVBench", dependencies: ["KVCache", "KVProtocol"], path: "Benchmarks/KVBench", swiftSettings: strict),
        .executableTarget(name: "switchboard-bench", dependencies: ["PodSnapshot", "PodMetrics", "Routing", "PrefixIndex", "Tokenization", "KVProtocol", "KVCache", "KVAgent", "KVAgentClient", "KVServer", "KVBench", "EventLoop", "OpenAIAPI"],
                          path: "Benchmarks/switchboard-bench", swiftSettings: strict),

        // MARK: tests (unit, in process; integration tests live in Tests/integration, pytest)
        .testTarget(name: "ExtProcProtoTests", dependencies: ["ExtProcProto"], resources: [.copy("Inputs")], swiftSettings: strict),
        .testTarget(name: "ExtProcTests", dependencies: ["ExtProc", "ExtProcProto"], swiftSettings: strict),
        .testTarget(name: "GRPCServerTests", dependencies: ["GRPCServer", "HTTP2", "EventLoop"], swiftSettings: strict),
        .testTarget(name: "OpenAIAPITests", dependencies: ["OpenAIAPI"], swiftSettings: strict),
        .testTarget(name: "RoutingTests", dependencies: ["Routing", "PodSnapshot", "PrefixIndex"], swiftSettings: strict),
        .testTarget(name: "RateLimitTests", dependencies: ["RateLimit"], swiftSettings: strict),
        .testTarget(name: "KVPlacementTests", dependencies: ["KVPlacement", "KVProtocol"], swiftSettings: strict),
        .testTarget(name: "TracingTests", dependencies: ["Tracing", .product(name: "Logging", package: "swift-log")], swiftSettings: strict),
        .testTarget(name: "SharedStateTests", dependencies: ["SharedState", "Redis", "PodSnapshot", .product(name: "Logging", package: "swift-log")],
                    swiftSettings: strict),
        .testTarget(name: "RedisTests", dependencies: ["Redis", "EventLoop", "RateLimit", "SharedState", "Routing", "PodSnapshot"],
                    swiftSettings: strict),
        .testTarget(name: "TokenizationTests", dependencies: ["Tokenization"], swiftSettings: strict),
        .testTarget(name: "PrefixIndexTests", dependencies: ["PrefixIndex", "PodSnapshot"], swiftSettings: strict),
        .testTarget(name: "PodMetricsTests", dependencies: ["PodMetrics", "PodSnapshot", "EventLoop", "HTTP1"], resources: [.copy("Inputs")], swiftSettings: strict),
        .testTarget(name: "MetricsTests", dependencies: ["Metrics", "PodMetrics"], swiftSettings: strict),
        .testTarget(name: "PodDiscoveryTests", dependencies: ["PodDiscovery", "PodSnapshot"], swiftSettings: strict),
        .testTarget(name: "GatewayTests", dependencies: ["Gateway", "ExtProc", "ExtProcProto", "PodSnapshot", "PodMetrics"], swiftSettings: strict),
        .testTarget(name: "KVCacheTests", dependencies: ["KVCache", "KVProtocol", "KVBench"], resources: [.copy("Inputs")], swiftSettings: strict),
        .testTarget(name: "KVAgentTests", dependencies: ["KVAgent", "KVAgentClient", "KVProtocol", "KVCache", "EventLoop", "HostMemory"], swiftSettings: strict),
        .testTarget(name: "KVServerTests", dependencies: ["KVServer", "KVL2Client", "RDMA", "KVProtocol", "KVPlacement", "EventLoop", "HostMemory"], swiftSettings: strict),
        .testTarget(name: "VLLMSimTests", dependencies: ["VLLMSim", "HTTP1", "EventLoop", "KVAgent"], swiftSettings: strict),
    ]
)
