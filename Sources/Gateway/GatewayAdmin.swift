import AdminHTTP
import EventLoop
import Foundation
import GRPCServer
import HTTP1
import PodDiscovery
import PodMetrics
import PodSnapshot
import Routing

/// The gateway's plain-HTTP side door for operators and probes:
///   GET /healthz       200 while serving, 503 while draining
///   GET /v1/models     the registry's models, OpenAI list shape
///   GET /debug/pods    every endpoint: health, scrape errors, metrics, in-flight load
///   GET /debug/stats   request outcomes and scrape counters
///   GET /debug/vtc     vtc-basic's weighted tokens (in + 2 × out) per user in its window
///   GET /debug/limits  per-user limits and the current window's counts (?user=NAME)
///   GET /debug/route?model=M[&strategy=S][&max_tokens=N][&session=ID]
///                      one decision explained: each pod's inputs, its cost
///                      per scoring part and score, and the pick (a real
///                      decision: it draws randomness and places sessions)
///   GET /metrics       the gateway's own metrics, Prometheus text format
/// Served by `AdminHTTP.AdminServer`; bind it to loopback or a pod-internal
/// address: it is not authenticated.
enum GatewayAdmin {
    static func routes(context: GatewayContext, grpc: GRPCServer, scraper: PodMetricsScraper,
                       discovery: any PodDiscoveryProvider) -> [AdminRoute] {
        [
            AdminRoute("/healthz") { grpc.isServing ? .text("ok\n") : .text("draining\n", status: 503) },
            AdminRoute("/v1/models") { .json(GatewayAdmin.models(context.registry.snapshot)) },
            AdminRoute("/debug/pods") { .json(GatewayAdmin.pods(context.registry.snapshot)) },
            AdminRoute("/debug/route", query: { q in GatewayAdmin.route(context: context, query: q) }),
            AdminRoute("/debug/vtc") {
                let vtc = (try? context.routers.router(named: "vtc-basic")) as? VTCBasicRouter
                return .json(GatewayAdmin.encode(["window_seconds": 300,
                                                  "users": vtc?.userTokens ?? [:]] as [String: Any]))
            },
            AdminRoute("/debug/limits", query: { q in GatewayAdmin.limits(context: context, query: q) }),
            AdminRoute("/metrics") { .prometheus(GatewayMetrics.render(context: context, grpc: grpc, scraper: scraper)) },
            AdminRoute("/debug/stats") {
                let s = context.stats
                let obj: [String: Any] = [
                    "requests": ["routed": s.routed.value, "completed": s.completed.value, "rejected": s.rejected.value,
                                 "reset": s.reset.value, "aborted": s.aborted.value, "protocol_violations": s.violations.value],
                    "usage": ["reported": s.usageReported.value, "estimated": s.usageEstimated.value,
                              "missing": s.usageMissing.value],
                    "scrapes": ["succeeded": scraper.counters.succeeded.value, "failed": scraper.counters.failed.value,
                                "postponed_saturated": scraper.counters.skippedSaturated.value],
                    "grpc": ["open_streams": grpc.openStreams, "connections_accepted": grpc.stats.connectionsAccepted.value,
                             "protocol_errors": grpc.stats.protocolErrors.value,
                             "handshake_timeouts": grpc.stats.handshakeTimeouts.value],
                    "discovery": (["kind": discovery.kind] as [String: Any]).merging(discovery.debugCounters) { a, _ in a },
                ]
                return .json(GatewayAdmin.encode(obj))
            },
        ]
    }

    static func route(context: GatewayContext, query: [String: String]) -> AdminResponse {
        guard let model = query["model"], !model.isEmpty else {
            return .json(encode(["error": "name a model: /debug/route?model=M[&strategy=S][&max_tokens=N][&session=ID][&prompt=TEXT]"]), status: 400)
        }
        let snap = context.registry.snapshot
        guard let view = snap.view(for: model) else {
            return .json(encode(["error": "unknown model '\(model)'", "models": snap.modelNames]), status: 404)
        }
        let router: any Router
        do {
            router = try context.routers.router(named: query["strategy"] ?? snap.defaultStrategies[model])
        } catch {
            return .json(encode(["error": "\(error)"]), status: 400)
        }
        let req = RoutingRequest(model: model, stream: false, bodyBytes: 0, requestID: "debug",
                                 sessionID: query["session"], maxTokens: query["max_tokens"].flatMap { Int($0) },
                                 prompt: router.needsPrompt ? query["prompt"].map { Array($0.utf8) } : nil)
        let x = router.explain(req, view: view)
        func v(_ d: Double?) -> Any { if let d, d.isFinite { return d } else { return NSNull() } }
        let rows: [[String: Any]] = x.rows.map { r in
            var o: [String: Any] = ["address": r.address, "fresh": r.fresh, "usable": r.usable, "in_flight": r.inFlight,
                                    "score": v(r.score)]
            if let m = r.metrics {
                o["inputs"] = ["running": v(m.running), "waiting": v(m.waiting), "kv_cache_usage": v(m.kvCacheUsage),
                               "prompt_tokens_per_s": v(m.promptTokensPerSecond),
                               "generation_tokens_per_s": v(m.generationTokensPerSecond), "ttft_mean_s": v(m.ttftMean),
                               "tpot_mean_s": v(m.tpotMean), "queue_time_mean_s": v(m.queueTimeMean)]
            }
            if let c = r.cachedBlocks { o["cached_blocks"] = c }
            if !r.costs.isEmpty {
                o["costs"] = Dictionary(r.costs.map { ($0.part, v($0.cost)) }, uniquingKeysWith: { a, _ in a })
            }
            return o
        }
        var out: [String: Any] = ["model": model, "strategy": x.strategy, "pods": rows]
        if let d = x.decision {
            out["pick"] = d.pod.address
            out["fallback"] = d.fallback ?? NSNull()
        }
        if let e = x.error { out["error"] = e }
        return .json(encode(out))
    }

    /// Each limited user's records and the counts in the current window (`?user=NAME` for one).
    static func limits(context: GatewayContext, query: [String: String]) -> AdminResponse {
        guard let l = context.limiter else {
            return .json(encode(["error": "per-user limits are off (serve --users-file)"]), status: 404)
        }
        let now = Limiter.now
        var users: [String: Any] = [:]
        for u in l.allUsers where query["user"] == nil || query["user"] == u.name {
            let used = l.store.usage(of: u.name, now: now)
            users[u.name] = ["rpm": u.requests, "tpm": u.tokens, "requests": used.requests, "tokens": used.tokens]
        }
        return .json(encode(["store": "embedded", "window": l.configuration.window.rawValue,
                             "window_seconds": l.configuration.windowSeconds, "users": users] as [String: Any]))
    }

    static func models(_ snap: PodSnapshot) -> [UInt8] {
        encode(["object": "list", "data": snap.modelNames.map { ["id": $0, "object": "model", "created": 0, "owned_by": "switchboard"] }])
    }

    static func pods(_ snap: PodSnapshot) -> [UInt8] {
        let now = monotonicNanos()
        var models: [String: Any] = [:]
        for name in snap.modelNames {
            models[name] = snap.models[name]!.map { e -> [String: Any] in
                var o: [String: Any] = ["address": e.address, "metrics_port": e.metricsPort, "engine": e.engine]
                if let p = snap.pods[e.address] {
                    switch p.health {
                    case .fresh: o["health"] = "fresh"
                    case .unknown: o["health"] = "unknown"
                    case .stale(let why): o["health"] = "stale"; o["stale_reason"] = why
                    }
                    o["last_error"] = p.lastError ?? NSNull()
                    o["scrapes"] = p.scrapes
                    o["scrape_failures"] = p.failures
                    o["last_scrape_ms"] = p.lastScrapeNanos.map { Double($0) / 1e6 } ?? NSNull()
                    var mm: [String: Any] = [:]
                    for (model, m) in p.models {
                        func v(_ x: Double?) -> Any { if let x, x.isFinite { return x } else { return NSNull() } }
                        mm[model] = [
                            "age_ms": Double(now &- m.scrapedAtNanos) / 1e6,
                            "running": v(m.running), "waiting": v(m.waiting), "kv_cache_usage": v(m.kvCacheUsage),
                            "prefix_cache_hit_rate": v(m.prefixCacheHitRate),
                            "prompt_tokens_per_s": v(m.promptTokensPerSecond),
                            "generation_tokens_per_s": v(m.generationTokensPerSecond),
                            "ttft_mean_s": v(m.ttftMean), "ttft_p90_s": v(m.ttftP90), "tpot_mean_s": v(m.tpotMean),
                            "queue_time_mean_s": v(m.queueTimeMean), "requests_in_window": v(m.requestsInWindow),
                        ]
                    }
                    o["metrics"] = mm
                }
                if let l = snap.loads[e.address] {
                    o["in_flight_requests"] = l.localRequests
                    o["in_flight_tokens"] = l.localTokens
                    // Other replicas' last report (shared state): routers weigh both.
                    o["peer_in_flight_requests"] = l.peerRequests
                    o["routed_total"] = l.routed
                    o["prompt_tokens_total"] = l.promptTokensTotal
                    o["completion_tokens_total"] = l.completionTokensTotal
                }
                return o
            }
        }
        return encode(["snapshot_version": snap.version, "models": models])
    }

    static func encode(_ obj: Any) -> [UInt8] {
        Array((try? JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys])) ?? Data("{}".utf8))
    }
}
