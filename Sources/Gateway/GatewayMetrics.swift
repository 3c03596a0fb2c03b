import EventLoop
import ExtProc
import GRPCServer
import Metrics
import PodMetrics
import PodSnapshot
import Routing
import SharedState

/// The gateway's own Prometheus page (text format 0.0.4), served on the
/// admin endpoint at `/metrics`. Names follow `switchboard_<subsystem>_<name>_<unit>`.
enum GatewayMetrics {
    static func render(context: GatewayContext, grpc: GRPCServer, scraper: PodMetricsScraper) -> String {
        var w = PrometheusWriter()
        let s = context.stats
        w.family("switchboard_gateway_requests_total", .counter, help: "Requests by how their ext_proc stream ended.")
        for (outcome, c) in [("completed", s.completed), ("rejected", s.rejected), ("reset", s.reset),
                             ("aborted", s.aborted), ("protocol_violation", s.violations)] {
            w.sample("switchboard_gateway_requests_total", labels: "outcome=\"\(outcome)\"", Double(c.value))
        }
        w.family("switchboard_gateway_routed_total", .counter, help: "Requests given a target pod.")
        w.sample("switchboard_gateway_routed_total", Double(s.routed.value))
        w.family("switchboard_gateway_request_duration_seconds", .histogram,
                 help: "Requests from their headers to the end of their stream (the whole request through Envoy), by served model, strategy, pod and the HTTP status the client got (none: the gateway did not see the response).")
        for (labels, h) in s.requestDuration.snapshots {
            w.histogram("switchboard_gateway_request_duration_seconds", h, before: labels)
        }
        w.family("switchboard_extproc_phase_duration_seconds", .histogram,
                 help: "The gateway's time per ext_proc message, by phase (what Envoy waits on at each point of a request; observer messages included).")
        for (i, phase) in ExtProcStats.phases.enumerated() {
            w.histogram("switchboard_extproc_phase_duration_seconds", context.extProcStats.phaseDurations[i].snapshot,
                        before: "phase=\"\(phase)\"")
        }
        w.family("switchboard_gateway_routing_duration_seconds", .histogram, help: "Time to decide a request's pod.")
        w.histogram("switchboard_gateway_routing_duration_seconds", s.routingDuration.snapshot)
        w.family("switchboard_gateway_time_to_first_token_seconds", .histogram,
                 help: "From routing to the first content event of a streamed response.")
        w.histogram("switchboard_gateway_time_to_first_token_seconds", s.timeToFirstToken.snapshot)
        w.family("switchboard_gateway_usage_total", .counter,
                 help: "Successful responses by where their token usage came from (reported, estimated from content events, missing).")
        for (source, c) in [("reported", s.usageReported), ("estimated", s.usageEstimated), ("missing", s.usageMissing)] {
            w.sample("switchboard_gateway_usage_total", labels: "source=\"\(source)\"", Double(c.value))
        }
        w.family("switchboard_routing_decision_duration_seconds", .histogram,
                 help: "Time a strategy took to pick a pod (the router alone; blends share strategy=\"blend\").")
        for (name, h) in context.decisionDurations.sorted(by: { $0.key < $1.key }) where h.snapshot.count > 0 {
            w.histogram("switchboard_routing_decision_duration_seconds", h.snapshot,
                        before: PrometheusWriter.labels(["strategy": name]))
        }
        w.family("switchboard_routing_fallbacks_total", .counter,
                 help: "Decisions whose strategy could not use its own signal and fell back (x-switchboard-fallback), by strategy and reason.")
        for f in s.fallbackCounts {
            w.sample("switchboard_routing_fallbacks_total",
                     labels: PrometheusWriter.labels(["strategy": f.strategy, "reason": f.reason]), Double(f.count))
        }
        if let l = context.limiter {
            w.family("switchboard_limits_rejected_total", .counter,
                     help: "Requests answered 429 by a user's limits, by the limit that refused them.")
            w.sample("switchboard_limits_rejected_total", labels: "limit=\"requests\"", Double(s.rateLimitedRequests.value))
            w.sample("switchboard_limits_rejected_total", labels: "limit=\"tokens\"", Double(s.rateLimitedTokens.value))
            if l.shared == nil {
                w.family("switchboard_limits_users", .gauge, help: "Users with limits (the users file's records).")
                w.sample("switchboard_limits_users", Double(l.userCount))
            } else {
                w.family("switchboard_limits_store_errors_total", .counter,
                         help: "Admissions that found Redis slow or down, by what the failure policy did (admitted uncounted, or refused with 503).")
                w.sample("switchboard_limits_store_errors_total", labels: "outcome=\"admitted\"", Double(l.storeErrorsAdmitted.value))
                w.sample("switchboard_limits_store_errors_total", labels: "outcome=\"refused\"", Double(l.storeErrorsRefused.value))
            }
        }
        if let sh = context.shared { Self.renderSharedState(sh.counters, into: &w) }
        if let t = context.tracer {
            w.family("switchboard_tracing_spans_total", .counter,
                     help: "Request spans by what became of them: exported to the OTLP collector, or dropped (queue full, or the collector refused or was unreachable).")
            w.sample("switchboard_tracing_spans_total", labels: "result=\"exported\"", Double(t.exported.value))
            w.sample("switchboard_tracing_spans_total", labels: "result=\"dropped\"", Double(t.dropped.value))
        }
        if let p = context.routers.prefixCache {
            w.family("switchboard_prefix_cache_decisions_total", .counter,
                     help: "prefix-cache decisions by how the pod was chosen: the longest cached prefix (prefix_match), the least loaded pods because the in-flight imbalance gate tripped (imbalance), or the least loaded because no pod within the load guard held the prompt's first block (no_match).")
            for (sel, c) in p.decisionCounts {
                w.sample("switchboard_prefix_cache_decisions_total", labels: "selection=\"\(sel)\"", Double(c))
            }
            w.family("switchboard_prefix_cache_blocks_total", .counter,
                     help: "Prompt blocks routed by the prefix strategies (kind=prompt) and those the chosen pod held by the gateway's index (kind=cached).")
            w.sample("switchboard_prefix_cache_blocks_total", labels: "kind=\"prompt\"", Double(p.promptBlocks.load(ordering: .relaxed)))
            w.sample("switchboard_prefix_cache_blocks_total", labels: "kind=\"cached\"", Double(p.hitBlocks.load(ordering: .relaxed)))
            w.family("switchboard_prefix_cache_index_entries", .gauge, help: "Block-pod entries in the gateway's prefix index.")
            w.sample("switchboard_prefix_cache_index_entries", Double(p.index.count))
        }
        w.family("switchboard_gateway_observed_responses_total", .counter,
                 help: "Responses the usage observer (envoy-config --response-phase observer) saw, by whether they matched a routed request by ticket (false: gateway or Envoy errors, or the request had already ended).")
        w.sample("switchboard_gateway_observed_responses_total", labels: "matched=\"true\"", Double(s.observed.value))
        w.sample("switchboard_gateway_observed_responses_total", labels: "matched=\"false\"", Double(s.observedUnmatched.value))
        w.family("switchboard_gateway_observed_requests_open", .gauge,
                 help: "Routed requests registered for the usage observer and not yet ended.")
        w.sample("switchboard_gateway_observed_requests_open", Double(context.observed.count))

        let snap = context.registry.snapshot
        renderModelSignals(snap, into: &w)
        w.family("switchboard_pod_up", .gauge, help: "1 when the pod's metrics are fresh, 0 when stale or not scraped yet.")
        w.family("switchboard_pod_scrape_age_seconds", .gauge,
                 help: "Seconds since the pod's /metrics was last scraped successfully (absent until the first success).")
        let now = monotonicNanos()
        w.family("switchboard_pod_in_flight_requests", .gauge, help: "Requests this replica routed to the pod and not finished (other replicas' are not included: sum over replicas).")
        w.family("switchboard_pod_in_flight_tokens", .gauge, help: "Estimated prompt tokens of those requests.")
        w.family("switchboard_pod_routed_total", .counter, help: "Requests routed to the pod.")
        w.family("switchboard_pod_prompt_tokens_total", .counter, help: "Prompt tokens the pod's responses reported.")
        w.family("switchboard_pod_completion_tokens_total", .counter,
                 help: "Completion tokens the pod's responses reported, or counted from streamed content when they reported none.")
        for model in snap.modelNames {
            for e in snap.models[model]! {
                let labels = PrometheusWriter.labels(["model": model, "pod": e.address])
                w.sample("switchboard_pod_up", labels: labels, snap.pods[e.address]?.health.isFresh == true ? 1.0 : 0.0)
                if let at = snap.pods[e.address]?.lastSuccessNanos {
                    w.sample("switchboard_pod_scrape_age_seconds", labels: labels, Double(now &- at) / 1e9)
                }
                if let l = snap.loads[e.address] {
                    w.sample("switchboard_pod_in_flight_requests", labels: labels, Double(l.localRequests))
                    w.sample("switchboard_pod_in_flight_tokens", labels: labels, Double(l.localTokens))
                    w.sample("switchboard_pod_routed_total", labels: labels, Double(l.routed))
                    w.sample("switchboard_pod_prompt_tokens_total", labels: labels, Double(l.promptTokensTotal))
                    w.sample("switchboard_pod_completion_tokens_total", labels: labels, Double(l.completionTokensTotal))
                }
            }
        }
        w.family("switchboard_scrape_total", .counter, help: "Scrapes of pod /metrics pages by result.")
        w.sample("switchboard_scrape_total", labels: "result=\"succeeded\"", Double(scraper.counters.succeeded.value))
        w.sample("switchboard_scrape_total", labels: "result=\"failed\"", Double(scraper.counters.failed.value))
        w.family("switchboard_scrape_postponed_total", .counter, help: "Due scrapes that waited for a free slot at the end of a tick.")
        w.sample("switchboard_scrape_postponed_total", Double(scraper.counters.skippedSaturated.value))
        w.family("switchboard_grpc_connections_accepted_total", .counter, help: "ext_proc (gRPC) connections accepted.")
        w.sample("switchboard_grpc_connections_accepted_total", Double(grpc.stats.connectionsAccepted.value))
        w.family("switchboard_grpc_streams_open", .gauge, help: "ext_proc streams open now (one per in-flight request).")
        w.sample("switchboard_grpc_streams_open", Double(grpc.openStreams))
        w.family("switchboard_grpc_protocol_errors_total", .counter, help: "HTTP/2 or gRPC framing errors from peers.")
        w.sample("switchboard_grpc_protocol_errors_total", Double(grpc.stats.protocolErrors.value))
        w.family("switchboard_grpc_handshake_timeouts_total", .counter, help: "ext_proc connections closed for not sending the HTTP/2 preface in time.")
        w.sample("switchboard_grpc_handshake_timeouts_total", Double(grpc.stats.handshakeTimeouts.value))
        w.family("switchboard_grpc_serving", .gauge, help: "1 while serving, 0 while draining.")
        w.sample("switchboard_grpc_serving", grpc.isServing ? 1.0 : 0.0)
        return w.text
    }

    /// Per-model autoscaling signals (HPA through a metrics adapter, KEDA's
    /// Prometheus scaler): requests the gateway has in flight, requests the
    /// engines report waiting, and how full their KV caches are, over the
    /// model's pods with fresh metrics.
    static func renderModelSignals(_ snap: PodSnapshot, into w: inout PrometheusWriter) {
        w.family("switchboard_model_in_flight_requests", .gauge,
                 help: "Requests this replica routed to the model's pods and not finished.")
        w.family("switchboard_model_queue_depth", .gauge,
                 help: "Requests waiting in the model's engines (vllm:num_requests_waiting summed over pods with fresh metrics).")
        w.family("switchboard_model_kv_cache_saturation_ratio", .gauge,
                 help: "Mean KV-cache usage (0-1) of the model's pods with fresh metrics: above ~0.9 engines start preempting.")
        w.family("switchboard_model_pods", .gauge, help: "The model's endpoints, by whether their metrics are fresh.")
        for model in snap.modelNames {
            let eps = snap.models[model]!
            let label = PrometheusWriter.labels(["model": model])
            var inFlight = 0, waiting = 0.0, kv = 0.0, kvPods = 0, fresh = 0
            for e in eps {
                inFlight += snap.loads[e.address]?.localRequests ?? 0
                guard let p = snap.pods[e.address], p.health.isFresh else { continue }
                fresh += 1
                if let m = p.models[model] {
                    waiting += m.waiting ?? 0
                    if let u = m.kvCacheUsage { kv += u; kvPods += 1 }
                }
            }
            w.sample("switchboard_model_in_flight_requests", labels: label, inFlight)
            w.sample("switchboard_model_queue_depth", labels: label, waiting)
            if kvPods > 0 { w.sample("switchboard_model_kv_cache_saturation_ratio", labels: label, kv / Double(kvPods)) }
            w.sample("switchboard_model_pods", labels: PrometheusWriter.labels(["model": model, "fresh": "true"]), fresh)
            w.sample("switchboard_model_pods", labels: PrometheusWriter.labels(["model": model, "fresh": "false"]), eps.count - fresh)
        }
    }

    /// `--shared-state`: the exchange with the other replicas.
    static func renderSharedState(_ c: SharedRoutingState.Counters, into w: inout PrometheusWriter) {
        w.family("switchboard_shared_state_connected", .gauge, help: "1 while this replica's shared-state connection to Redis is up.")
        w.sample("switchboard_shared_state_connected", c.connected.load(ordering: .relaxed) ? 1.0 : 0.0)
        w.family("switchboard_shared_state_peers", .gauge, help: "Other replicas whose in-flight report is fresh.")
        w.sample("switchboard_shared_state_peers", Double(c.peers.load(ordering: .relaxed)))
        w.family("switchboard_shared_state_batches_total", .counter,
                 help: "Batches of this replica's changes: published, or lost because Redis was down or slow (peers then ask for a resync).")
        w.sample("switchboard_shared_state_batches_total", labels: "result=\"published\"", Double(c.batchesPublished.value))
        w.sample("switchboard_shared_state_batches_total", labels: "result=\"lost\"", Double(c.batchesLost.value))
        w.family("switchboard_shared_state_events_total", .counter,
                 help: "Changes this replica published, dropped (batch full or lost), and peers' changes applied here, by kind.")
        w.sample("switchboard_shared_state_events_total", labels: "direction=\"out\",result=\"published\"", Double(c.eventsPublished.value))
        w.sample("switchboard_shared_state_events_total", labels: "direction=\"out\",result=\"dropped\"", Double(c.eventsDropped.value))
        w.sample("switchboard_shared_state_events_total", labels: "direction=\"in\",result=\"prefix\"", Double(c.prefixApplied.value))
        w.sample("switchboard_shared_state_events_total", labels: "direction=\"in\",result=\"charge\"", Double(c.chargesApplied.value))
        w.sample("switchboard_shared_state_events_total", labels: "direction=\"in\",result=\"usage\"", Double(c.usageApplied.value))
        w.sample("switchboard_shared_state_events_total", labels: "direction=\"in\",result=\"unknown_pod\"", Double(c.unknownPods.value))
        w.sample("switchboard_shared_state_events_total", labels: "direction=\"in\",result=\"malformed\"", Double(c.malformed.value))
        w.family("switchboard_shared_state_usage_forwarded_total", .counter,
                 help: "Responses this replica's usage observer read for a request another replica routed (usage sent to it).")
        w.sample("switchboard_shared_state_usage_forwarded_total", Double(c.usageForwarded.value))
        w.family("switchboard_shared_state_gaps_total", .counter, help: "Gaps seen in a peer's batches (each asks that peer for a resync).")
        w.sample("switchboard_shared_state_gaps_total", Double(c.gaps.value))
        w.family("switchboard_shared_state_resyncs_served_total", .counter, help: "Times this replica republished its prefix index for peers.")
        w.sample("switchboard_shared_state_resyncs_served_total", Double(c.resyncsServed.value))
        w.family("switchboard_shared_state_errors_total", .counter, help: "Exchanges with Redis that failed (down, slow, error reply).")
        w.sample("switchboard_shared_state_errors_total", Double(c.errors.value))
    }
}
