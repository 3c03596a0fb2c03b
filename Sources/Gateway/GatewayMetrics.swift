import EventLoop
import GRPCServer
import PodMetrics

/// The gateway's own Prometheus page (text format 0.0.4), served on the
/// admin endpoint at `/metrics`. Names follow `switchboard_<subsystem>_<name>_<unit>`.
enum GatewayMetrics {
    static func render(context: GatewayContext, grpc: GRPCServer, scraper: PodMetricsScraper) -> String {
        var out = ""
        func family(_ name: String, _ type: String, _ help: String) {
            out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
        }
        func line(_ name: String, _ labels: [(String, String)], _ value: Double) {
            let l = labels.isEmpty ? "" : "{" + labels.map { "\($0.0)=\"\(escape($0.1))\"" }.joined(separator: ",") + "}"
            out += "\(name)\(l) \(value)\n"
        }
        func line(_ name: String, _ value: Double) { line(name, [], value) }
        let s = context.stats
        family("switchboard_gateway_requests_total", "counter", "Requests by how their ext_proc stream ended.")
        for (outcome, c) in [("completed", s.completed), ("rejected", s.rejected), ("reset", s.reset),
                             ("aborted", s.aborted), ("protocol_violation", s.violations)] {
            line("switchboard_gateway_requests_total", [("outcome", outcome)], Double(c.value))
        }
        family("switchboard_gateway_routed_total", "counter", "Requests given a target pod.")
        line("switchboard_gateway_routed_total", Double(s.routed.value))
        family("switchboard_gateway_routing_duration_seconds", "histogram", "Time to decide a request's pod.")
        let h = s.routingDuration.snapshot
        for (i, b) in s.routingDuration.bounds.enumerated() {
            line("switchboard_gateway_routing_duration_seconds_bucket", [("le", "\(b)")], Double(h.cumulative[i]))
        }
        line("switchboard_gateway_routing_duration_seconds_bucket", [("le", "+Inf")], Double(h.count))
        line("switchboard_gateway_routing_duration_seconds_sum", h.sum)
        line("switchboard_gateway_routing_duration_seconds_count", Double(h.count))

        let snap = context.registry.snapshot
        family("switchboard_pod_up", "gauge", "1 when the pod's metrics are fresh, 0 when stale or not scraped yet.")
        family("switchboard_pod_in_flight_requests", "gauge", "Requests routed to the pod and not finished.")
        family("switchboard_pod_in_flight_tokens", "gauge", "Estimated prompt tokens of those requests.")
        family("switchboard_pod_routed_total", "counter", "Requests routed to the pod.")
        for model in snap.modelNames {
            for e in snap.models[model]! {
                let labels = [("model", model), ("pod", e.address)]
                line("switchboard_pod_up", labels, snap.pods[e.address]?.health.isFresh == true ? 1 : 0)
                if let l = snap.loads[e.address] {
                    line("switchboard_pod_in_flight_requests", labels, Double(l.requests))
                    line("switchboard_pod_in_flight_tokens", labels, Double(l.tokens))
                    line("switchboard_pod_routed_total", labels, Double(l.routed))
                }
            }
        }
        family("switchboard_scrape_total", "counter", "Scrapes of pod /metrics pages by result.")
        line("switchboard_scrape_total", [("result", "succeeded")], Double(scraper.counters.succeeded.value))
        line("switchboard_scrape_total", [("result", "failed")], Double(scraper.counters.failed.value))
        family("switchboard_scrape_postponed_total", "counter", "Due scrapes that waited for a free slot at the end of a tick.")
        line("switchboard_scrape_postponed_total", Double(scraper.counters.skippedSaturated.value))
        family("switchboard_grpc_connections_accepted_total", "counter", "ext_proc (gRPC) connections accepted.")
        line("switchboard_grpc_connections_accepted_total", Double(grpc.stats.connectionsAccepted.value))
        family("switchboard_grpc_streams_open", "gauge", "ext_proc streams open now (one per in-flight request).")
        line("switchboard_grpc_streams_open", Double(grpc.openStreams))
        family("switchboard_grpc_protocol_errors_total", "counter", "HTTP/2 or gRPC framing errors from peers.")
        line("switchboard_grpc_protocol_errors_total", Double(grpc.stats.protocolErrors.value))
        family("switchboard_grpc_serving", "gauge", "1 while serving, 0 while draining.")
        line("switchboard_grpc_serving", grpc.isServing ? 1 : 0)
        return out
    }

    static func escape(_ s: String) -> String {
        var out = ""
        for c in s {
            switch c {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            default: out.append(c)
            }
        }
        return out
    }
}
