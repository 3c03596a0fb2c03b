import EventLoop
import ExtProcProto
import PodSnapshot

/// Renders the Envoy bootstrap Switchboard expects: one HTTP listener, the
/// anti-spoof `header_mutation` filter that strips client `target-pod`, the
/// ext_proc filter pointing at the gateway (TCP or Unix socket, h2c), and the
/// ORIGINAL_DST cluster that dials whatever `target-pod` the gateway set.
///
/// How the response is seen is `responsePhase` (docs/decisions/0005):
/// by default the routing stream ends its work at the routing decision (two
/// messages per request), Envoy itself names the pod and request id in the
/// response and shapes its own errors as OpenAI JSON, and a second ext_proc
/// filter in observability mode reads usage without ever holding a byte.
///
/// The template lives in `envoy/envoy.yaml.tmpl` for readers; this renderer
/// is its single source of truth (a test checks the two agree).
public struct EnvoyConfigRenderer: Sendable {
    public var listen: SocketAddress = .tcp(host: "127.0.0.1", port: 10000)
    public var admin: SocketAddress = .tcp(host: "127.0.0.1", port: 9901)
    public var processor: SocketAddress = .tcp(host: "127.0.0.1", port: 50051)
    /// Further gateway replicas (`serve --shared-state`): the processor
    /// cluster lists them all, health-checked over gRPC, picked at random.
    public var moreProcessors: [SocketAddress] = []
    public var requestBodyMode: BodySendMode = .buffered
    public var responseBodyMode: BodySendMode = .streamed
    public var messageTimeoutMillis = 5000
    public var routeTimeoutSeconds = 300
    public var connectTimeoutSeconds = 6
    /// Per-connection buffer: the largest BUFFERED body Envoy accepts (larger gets 413).
    public var bufferLimitBytes = 8 << 20
    public var failureModeAllow = false
    public var targetHeader = "target-pod"
    public var responsePhase: ResponsePhase = .observer
    /// Endpoint-picker mode: the upstream cluster lists these endpoints and
    /// Envoy's override_host policy sends each request to the first
    /// reachable address of `x-gateway-destination-endpoint` (retrying the
    /// next on connect failure); nil: ORIGINAL_DST on `target-pod`.
    public var endpointPicker: [PodEndpoint]?

    /// Who sees the response.
    public enum ResponsePhase: String, Sendable, CaseIterable {
        /// The routing stream stops at the routing decision; a second
        /// ext_proc filter in observability mode (send and go: Envoy never
        /// waits on it) reads usage and TTFT from the response.
        case observer
        /// As `observer` without the observer: no per-request usage.
        case none
        /// The routing stream also answers the response headers, and reads
        /// bodies for usage chunk by chunk (one more message per request,
        /// and every read chunk waits on the gateway). Needed for
        /// `--inject-stream-usage` and for rewriting upstream errors that
        /// are not in OpenAI's shape.
        case inBand = "in-band"
    }

    public init() {}

    public enum RenderError: Error, CustomStringConvertible, Sendable {
        case unsupported(String)
        public var description: String {
            switch self { case .unsupported(let s): return s }
        }
    }

    public func render() throws(RenderError) -> String {
        guard case .tcp(let lh, let lp) = listen else { throw .unsupported("the Envoy listener must be host:port") }
        guard case .tcp(let ah, let ap) = admin else { throw .unsupported("the Envoy admin address must be host:port") }
        let allowed: [BodySendMode] = [.buffered, .bufferedPartial, .fullDuplexStreamed, .streamed, .none]
        guard allowed.contains(requestBodyMode), allowed.contains(responseBodyMode) else {
            throw .unsupported("body modes must be one of none, streamed, buffered, buffered_partial, full_duplex_streamed")
        }
        // Envoy requires trailers to be sent when a body is FULL_DUPLEX_STREAMED.
        let reqTrailers = requestBodyMode == .fullDuplexStreamed ? "SEND" : "SKIP"
        let respTrailers = responseBodyMode == .fullDuplexStreamed ? "SEND" : "SKIP"
        let reduced = responsePhase != .inBand
        let observer = responsePhase == .observer
        let ticket = ObservedRequests.header
        func address(_ a: SocketAddress) -> String {
            switch a {
            case .tcp(let h, let p): return "socket_address: { address: \(h), port_value: \(p) }"
            case .unix(let path): return "pipe: { path: \(path) }"
            }
        }
        let processorAddress = address(processor) + moreProcessors.map {
            "\n        - endpoint:\n            address:\n              " + address($0)
        }.joined()
        // Replicas: a stream must not be sent to one that died or is
        // draining. RANDOM, not round robin: each request opens a routing
        // and an observer stream, so round robin over two replicas would
        // send every routing stream to one and every observer to the other.
        let processorHealth = moreProcessors.isEmpty ? "" : [
            "", "    lb_policy: RANDOM", "    health_checks:", "    - timeout: 1s", "      interval: 1s", "      unhealthy_threshold: 1", "      healthy_threshold: 1",
            "      grpc_health_check: {}",
        ].joined(separator: "\n")
        return """
        # Rendered by `switchboard envoy-config`. Envoy 1.40.
        admin:
          address:
            socket_address: { address: \(ah), port_value: \(ap) }
        layered_runtime:
          layers:
          - name: static
            static_layer:
              # Half-close ext_proc streams and wait for trailers instead of
              # resetting each one (the RST_STREAM storm; see docs/decisions).
              envoy.reloadable_features.ext_proc_graceful_grpc_close: true
        static_resources:
          listeners:
          - name: openai
            address:
              socket_address: { address: \(lh), port_value: \(lp) }
            per_connection_buffer_limit_bytes: \(bufferLimitBytes)
            filter_chains:
            - filters:
              - name: envoy.filters.network.http_connection_manager
                typed_config:
                  "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
                  stat_prefix: openai
                  codec_type: AUTO
                  stream_idle_timeout: \(routeTimeoutSeconds)s\(reduced ? reducedConnectionManager : "")
                  route_config:
                    name: pods
                    virtual_hosts:
                    - name: all
                      domains: ["*"]
                      routes:
                      - match: { prefix: "/" }
                        route:
                          cluster: vllm_pods
                          timeout: \(routeTimeoutSeconds)s\(endpointPicker == nil ? "" : Self.pickerRetry)\(reduced ? namingHeaders(ticket: observer) : "")
                  http_filters:
                  # 1. Never let a client choose the upstream: drop any
                  #    client-sent \(targetHeader) before ext_proc runs.
                  - name: envoy.filters.http.header_mutation
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation
                      mutations:
                        request_mutations:
                        - remove: \(targetHeader)\(endpointPicker == nil ? "" : "\n                - remove: x-gateway-destination-endpoint")\(reduced ? "\n                - remove: x-switchboard-strategy\n                - remove: x-switchboard-fallback" + Self.rateLimitHeaders.map { "\n                - remove: x-switchboard-\($0.dropFirst(2))" }.joined() : "")\(observer ? "\n                - remove: \(ticket)\n                response_mutations:\n                - remove: \(ticket)" : "")
                  # 2. Switchboard decides the pod and sets \(targetHeader).
                  - name: envoy.filters.http.ext_proc
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor
                      grpc_service:
                        envoy_grpc: { cluster_name: switchboard }
                      stat_prefix: routing
                      failure_mode_allow: \(failureModeAllow)\(endpointPicker == nil ? "" : Self.pickerNamespaces)
                      message_timeout: \(Double(messageTimeoutMillis) / 1000)s
                      allow_mode_override: true
                      processing_mode:
                        request_header_mode: SEND
                        response_header_mode: \(reduced ? "SKIP" : "SEND")
                        request_body_mode: \(Self.modeName(requestBodyMode))
                        response_body_mode: \(reduced ? "NONE" : Self.modeName(responseBodyMode))
                        request_trailer_mode: \(reqTrailers)
                        response_trailer_mode: \(reduced ? "SKIP" : respTrailers)\(observer ? observerFilter : "")
                  - name: envoy.filters.http.router
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
          clusters:
          # The gateway, over h2c (HTTP/2 with prior knowledge).
          - name: switchboard
            type: STATIC
            connect_timeout: 1s
            typed_extension_protocol_options:
              envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
                "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
                explicit_http_config:
                  http2_protocol_options:
                    connection_keepalive: { interval: 30s, timeout: 10s }
            # One ext_proc stream per in-flight request: keep the breakers
            # far above any real concurrency (the reference's collapse near
            # 1000 in-flight requests came from Envoy's default of 1024).
            circuit_breakers:
              thresholds:
              - { max_connections: 100000, max_pending_requests: 100000, max_requests: 100000 }\(processorHealth)
            load_assignment:
              cluster_name: switchboard
              endpoints:
              - lb_endpoints:
                - endpoint:
                    address:
                      \(processorAddress)
        \(endpointPicker.map(pickerCluster) ?? originalDestinationCluster)
        """
    }

    /// Whatever pod the gateway named in `target-pod`.
    var originalDestinationCluster: String {
        """
          # Whatever pod the gateway named in \(targetHeader).
          - name: vllm_pods
            type: ORIGINAL_DST
            lb_policy: CLUSTER_PROVIDED
            connect_timeout: \(connectTimeoutSeconds)s
            original_dst_lb_config:
              use_http_header: true
              http_header_name: \(targetHeader)
            circuit_breakers:
              thresholds:
              - { max_connections: 100000, max_pending_requests: 100000, max_requests: 100000 }

        """
    }

    /// Endpoint-picker mode: the known pods, and override_host choosing among
    /// them by the gateway's `x-gateway-destination-endpoint` list.
    func pickerCluster(_ endpoints: [PodEndpoint]) -> String {
        var eps = ""
        for e in endpoints {
            eps += "\n        - endpoint: { address: { socket_address: { address: \"\(e.host)\", port_value: \(e.port) } } }"
        }
        return """
          # The pods, chosen per request by the endpoint picker's
          # x-gateway-destination-endpoint (first reachable of its list).
          - name: vllm_pods
            type: STATIC
            connect_timeout: \(connectTimeoutSeconds)s
            load_assignment:
              cluster_name: vllm_pods
              endpoints:
              - lb_endpoints:\(eps)
            load_balancing_policy:
              policies:
              - typed_extension_config:
                  name: envoy.load_balancing_policies.override_host
                  typed_config:
                    "@type": type.googleapis.com/envoy.extensions.load_balancing_policies.override_host.v3.OverrideHost
                    override_host_sources:
                    - metadata: { key: envoy.lb, path: [{ key: x-gateway-destination-endpoint }] }
                    fallback_policy:
                      policies:
                      - typed_extension_config:
                          name: envoy.load_balancing_policies.least_request
                          typed_config:
                            "@type": type.googleapis.com/envoy.extensions.load_balancing_policies.least_request.v3.LeastRequest
            circuit_breakers:
              thresholds:
              - { max_connections: 100000, max_pending_requests: 100000, max_requests: 100000 }

        """
    }

    /// Reduced paths: Envoy returns the request id, and its own failures
    /// (pod unreachable, reset, timed out; no healthy upstream) reach
    /// clients as OpenAI error objects. The gateway's own answers carry no
    /// response flag and pass unchanged.
    var reducedConnectionManager: String {
        var s = """

                  always_set_request_id_in_response: true
                  local_reply_config:
                    mappers:
                    # 503 (no healthy upstream, overflow): retryable, as the gateway's own 503s say.
                    - filter:
                        and_filter:
                          filters:
                          - response_flag_filter: {}
                          - status_code_filter:
                              comparison: { op: EQ, value: { default_value: 503, runtime_key: switchboard.unused } }
                      body_format_override:
                        json_format:
                          error:
                            message: "%LOCAL_REPLY_BODY% (pod %UPSTREAM_HOST%, request %REQ(x-request-id)%)"
                            type: overloaded_error
                            param: null
                            code: upstream_error
                        content_type: application/json
                    - filter:
                        response_flag_filter: {}
                      body_format_override:
                        json_format:
                          error:
                            message: "%LOCAL_REPLY_BODY% (pod %UPSTREAM_HOST%, request %REQ(x-request-id)%)"
                            type: api_error
                            param: null
                            code: upstream_error
                        content_type: application/json
        """
        if requestBodyMode == .buffered || requestBodyMode == .bufferedPartial {
            // Envoy's own 413 (a body over its buffer limit; no response
            // flag). In these modes the gateway never answers 413 itself.
            s += """

                        - filter:
                            status_code_filter:
                              comparison: { op: EQ, value: { default_value: 413, runtime_key: switchboard.unused } }
                          body_format_override:
                            json_format:
                              error:
                                message: "request body is larger than the gateway accepts (\(bufferLimitBytes) bytes, Envoy's buffer limit); request %REQ(x-request-id)%"
                                type: invalid_request_error
                                param: null
                                code: request_too_large
                            content_type: application/json
            """
        }
        return s
    }

    /// Endpoint-picker mode: the gateway may write its decision into the
    /// `envoy.lb` dynamic-metadata namespace that override_host reads.
    static let pickerNamespaces = """

                  metadata_options: { receiving_namespaces: { untyped: [envoy.lb] } }
    """

    /// Endpoint-picker mode: a pod that refuses the connection or resets
    /// before answering is retried on the list's next address.
    static let pickerRetry = """

                      retry_policy: { retry_on: "connect-failure,reset", num_retries: 2 }
    """

    /// OpenAI's rate-limit response headers (per-user limits).
    static let rateLimitHeaders = ["x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests",
                                   "x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens"]

    /// Reduced paths: Envoy copies the gateway's decision into the
    /// response (the routing stream never sees it), and the observer's ticket.
    func namingHeaders(ticket: Bool) -> String {
        var s = """

                        response_headers_to_add:
                        - header: { key: x-switchboard-pod, value: "%REQ(\(targetHeader))%" }
                          append_action: OVERWRITE_IF_EXISTS_OR_ADD
                        - header: { key: x-switchboard-strategy, value: "%REQ(x-switchboard-strategy)%" }
                          append_action: OVERWRITE_IF_EXISTS_OR_ADD
                        - header: { key: x-switchboard-fallback, value: "%REQ(x-switchboard-fallback)%" }
                          append_action: OVERWRITE_IF_EXISTS_OR_ADD
                        - header: { key: x-session-id, value: "%REQ(x-session-id)%" }
                          append_action: OVERWRITE_IF_EXISTS_OR_ADD
        """
        for h in Self.rateLimitHeaders {
            // A limited user's quota: the gateway sets x-switchboard-ratelimit-*, the client sees OpenAI's names.
            s += """

                            - header: { key: \(h), value: "%REQ(x-switchboard-\(h.dropFirst(2)))%" }
                              append_action: OVERWRITE_IF_EXISTS_OR_ADD
            """
        }
        if ticket {
            s += """

                            - header: { key: \(ObservedRequests.header), value: "%REQ(\(ObservedRequests.header))%" }
                              append_action: OVERWRITE_IF_EXISTS_OR_ADD
            """
        }
        return s
    }

    /// The usage observer: the same gateway, sent the response headers and
    /// body in observability mode (Envoy does not wait for answers, so the
    /// client's bytes never pause). Its failures never fail a request.
    var observerFilter: String {
        """

                  # 3. The usage observer: reads usage and TTFT from responses
                  #    without holding them (observability mode: send and go).
                  #    Only for requests the gateway gave a ticket (those
                  #    whose usage it accounts); skipped for all others.
                  - name: switchboard.usage_observer
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.common.matching.v3.ExtensionWithMatcher
                      xds_matcher:
                        matcher_list:
                          matchers:
                          - predicate:
                              not_matcher:
                                single_predicate:
                                  input:
                                    name: ticket
                                    typed_config:
                                      "@type": type.googleapis.com/envoy.type.matcher.v3.HttpRequestHeaderMatchInput
                                      header_name: \(ObservedRequests.header)
                                  value_match: { safe_regex: { google_re2: {}, regex: ".+" } }
                            on_match:
                              action:
                                name: skip
                                typed_config:
                                  "@type": type.googleapis.com/envoy.extensions.filters.common.matcher.action.v3.SkipFilter
                      extension_config:
                        name: switchboard.usage_observer
                        typed_config:
                          "@type": type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor
                          grpc_service:
                            envoy_grpc: { cluster_name: switchboard }
                          stat_prefix: usage_observer
                          observability_mode: true
                          failure_mode_allow: true
                          # Envoy holds an observer stream open this long after
                          # the request ends (for messages still in flight); the
                          # default 5 s would keep thousands open at load.
                          deferred_close_timeout: 0.25s
                          message_timeout: \(Double(messageTimeoutMillis) / 1000)s
                          processing_mode:
                            request_header_mode: SKIP
                            response_header_mode: SEND
                            request_body_mode: NONE
                            response_body_mode: STREAMED
                            request_trailer_mode: SKIP
                            response_trailer_mode: SKIP
        """
    }

    static func modeName(_ m: BodySendMode) -> String {
        switch m {
        case .none: return "NONE"
        case .streamed: return "STREAMED"
        case .buffered: return "BUFFERED"
        case .bufferedPartial: return "BUFFERED_PARTIAL"
        case .fullDuplexStreamed: return "FULL_DUPLEX_STREAMED"
        case .grpc: return "GRPC"
        }
    }

    /// Parses a body mode name as written on the command line.
    public static func parseMode(_ s: String) -> BodySendMode? {
        switch s.lowercased().replacingOccurrences(of: "-", with: "_") {
        case "none": return BodySendMode.none
        case "streamed": return .streamed
        case "buffered": return .buffered
        case "buffered_partial": return .bufferedPartial
        case "full_duplex_streamed", "full_duplex": return .fullDuplexStreamed
        default: return nil
        }
    }
}

extension String {
    fileprivate func replacingOccurrences(of a: String, with b: String) -> String {
        split(separator: Character(a), omittingEmptySubsequences: false).joined(separator: b)
    }
}
