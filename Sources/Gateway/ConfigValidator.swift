import Foundation
import PodDiscovery
import RateLimit
import Yams

/// `switchboard validate`: checks the files a deployment hands the gateway
/// (pods files, users files, API key files, rendered Envoy configs) the way
/// the gateway reads them, so a bad file fails a rollout's init step instead
/// of the traffic. Errors name the file and line.
public enum ConfigValidator {
    public enum Kind: String, CaseIterable, Sendable {
        case pods, users, keys, envoy
    }

    public struct Result: Sendable {
        public var kind: Kind
        /// What was found, for the ok line ("2 models, 5 endpoints").
        public var summary = ""
        /// "FILE:LINE: message" (or "FILE: message" when no line is known).
        public var errors: [String] = []
    }

    /// Guesses a file's kind from its content: a JSON array (or `.json`) is
    /// a users file, YAML with `static_resources` an Envoy config, YAML with
    /// `models` (or any other `.yaml`) a pods file, anything else a key file.
    public static func detect(_ text: String, path: String = "") -> Kind {
        let trimmed = text.drop { $0.isWhitespace }
        if trimmed.first == "[" || path.hasSuffix(".json") { return .users }
        if let top = (try? YAMLLocation.load(text)) as? [String: Any] {
            if top["static_resources"] != nil || top["admin"] != nil { return .envoy }
            if top["models"] != nil { return .pods }
        }
        // Not parseable: go by the top-level keys it names, then the extension.
        let lines = text.split(separator: "\n")
        if lines.contains(where: { $0.hasPrefix("static_resources:") || $0.hasPrefix("admin:") }) { return .envoy }
        if lines.contains(where: { $0.hasPrefix("models:") }) || path.hasSuffix(".yaml") || path.hasSuffix(".yml") { return .pods }
        return .keys
    }

    public static func validate(path: String, as kind: Kind? = nil) -> Result {
        guard let data = FileManager.default.contents(atPath: path) else {
            return Result(kind: kind ?? .pods, errors: ["\(path): cannot read the file"])
        }
        let text = String(decoding: data, as: UTF8.self)
        let k = kind ?? detect(text, path: path)
        var r = Result(kind: k)
        switch k {
        case .pods:
            do {
                let t = try StaticPodsFile.parseTable(text, path: path)
                let eps = t.endpoints.values.reduce(0) { $0 + $1.count }
                r.summary = "\(t.endpoints.count) models, \(eps) endpoints"
            } catch {
                r.errors.append(located(path, error.line, error.reason))
            }
        case .users:
            do {
                r.summary = "\(try UsersFile.parse(data, path: path).count) users"
            } catch {
                r.errors.append(error.description)
            }
        case .keys:
            do {
                r.summary = "\(try APIKeyStore.parse(text, path: path).count) keys"
            } catch {
                r.errors.append(error.description)
            }
        case .envoy:
            r.errors = EnvoyConfigCheck(path: path, text: text).run()
            if r.errors.isEmpty { r.summary = "listener, ext_proc filter and clusters consistent" }
        }
        return r
    }

    static func located(_ path: String, _ line: Int?, _ message: String) -> String {
        line.map { "\(path):\($0): \(message)" } ?? "\(path): \(message)"
    }
}

/// The parts of a rendered Envoy config the gateway depends on: the
/// listener's HTTP connection manager with the anti-spoof header mutation
/// before the ext_proc filter, the ext_proc filter's gRPC cluster (HTTP/2),
/// and the route's cluster dialing the header the gateway sets. Envoy's own
/// `--mode validate` checks the rest of the schema.
struct EnvoyConfigCheck {
    let path: String
    let text: String
    private let at: YAMLLocation

    init(path: String, text: String) {
        self.path = path
        self.text = text
        at = YAMLLocation(text)
    }

    func run() -> [String] {
        let root: Any?
        do {
            root = try YAMLLocation.load(text)
        } catch {
            return [ConfigValidator.located(path, YAMLLocation.line(of: error), "invalid YAML: \(error)")]
        }
        var errors: [String] = []
        func fail(_ node: [any Sendable], _ message: String) { errors.append(ConfigValidator.located(path, at.line(node), message)) }
        guard let top = root as? [String: Any] else { return [ConfigValidator.located(path, 1, "expected an Envoy bootstrap mapping")] }
        guard let sr = top["static_resources"] as? [String: Any] else {
            fail([], "no static_resources: the gateway's Envoy config has a static listener and clusters")
            return errors
        }
        let clusters = (sr["clusters"] as? [Any] ?? []).compactMap { $0 as? [String: Any] }
        var clusterIndex: [String: Int] = [:]
        for (i, c) in clusters.enumerated() {
            if let n = c["name"] as? String { clusterIndex[n] = i }
        }
        guard let listeners = sr["listeners"] as? [Any], !listeners.isEmpty else {
            fail(["static_resources"], "no listeners")
            return errors
        }
        var sawExtProc = false
        for (li, l) in listeners.enumerated() {
            let lp: [any Sendable] = ["static_resources", "listeners", li]
            let chains = ((l as? [String: Any])?["filter_chains"] as? [Any]) ?? []
            for (ci, chain) in chains.enumerated() {
                let filters = ((chain as? [String: Any])?["filters"] as? [Any]) ?? []
                for (fi, f) in filters.enumerated() {
                    guard let fm = f as? [String: Any], (fm["name"] as? String) == "envoy.filters.network.http_connection_manager",
                          let hcm = fm["typed_config"] as? [String: Any] else { continue }
                    let hp: [any Sendable] = lp + ["filter_chains", ci, "filters", fi, "typed_config"]
                    sawExtProc = checkConnectionManager(hcm, at: hp, clusters: clusters, index: clusterIndex, fail: fail) || sawExtProc
                }
            }
        }
        if !sawExtProc { fail(["static_resources", "listeners"], "no listener runs the envoy.filters.http.ext_proc filter: requests would never reach the gateway") }
        return errors
    }

    /// Checks one HTTP connection manager; true when it has an ext_proc filter.
    private func checkConnectionManager(_ hcm: [String: Any], at hp: [any Sendable], clusters: [[String: Any]], index: [String: Int],
                                        fail: (_ node: [any Sendable], _ message: String) -> Void) -> Bool {
        let filters = (hcm["http_filters"] as? [Any] ?? []).compactMap { $0 as? [String: Any] }
        guard let extIdx = filters.firstIndex(where: { ($0["name"] as? String) == "envoy.filters.http.ext_proc" }) else { return false }
        let ep: [any Sendable] = hp + ["http_filters", extIdx, "typed_config"]
        let ext = filters[extIdx]["typed_config"] as? [String: Any] ?? [:]
        // The anti-spoof step: a header_mutation before ext_proc removing the routing header.
        let removed = filters[..<extIdx].filter { ($0["name"] as? String) == "envoy.filters.http.header_mutation" }.flatMap { f -> [String] in
            let muts = ((f["typed_config"] as? [String: Any])?["mutations"] as? [String: Any])?["request_mutations"] as? [Any] ?? []
            return muts.compactMap { ($0 as? [String: Any])?["remove"] as? String }
        }
        var target = "target-pod"
        if let router = filters.last, (router["name"] as? String) != "envoy.filters.http.router" {
            fail(hp + ["http_filters", filters.count - 1], "the last HTTP filter must be envoy.filters.http.router")
        }
        // The processor cluster.
        if let g = ext["grpc_service"] as? [String: Any] {
            if let name = (g["envoy_grpc"] as? [String: Any])?["cluster_name"] as? String {
                if let ci = index[name] {
                    let c = clusters[ci]
                    // HTTP/2 with prior knowledge: HttpProtocolOptions' explicit_http_config, or the older cluster field.
                    let options = (c["typed_extension_protocol_options"] as? [String: Any])?["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
                        as? [String: Any]
                    let explicit = options?["explicit_http_config"] as? [String: Any]
                    let h2 = explicit?["http2_protocol_options"] != nil || c["http2_protocol_options"] != nil
                    if !h2 {
                        fail(["static_resources", "clusters", ci], "cluster '\(name)' (the gateway) must speak HTTP/2 (http2_protocol_options): ext_proc is gRPC")
                    }
                } else {
                    fail(ep + ["grpc_service", "envoy_grpc", "cluster_name"], "ext_proc names cluster '\(name)', which is not defined")
                }
            } else if g["google_grpc"] == nil {
                fail(ep + ["grpc_service"], "ext_proc grpc_service needs envoy_grpc.cluster_name (or google_grpc)")
            }
        } else {
            fail(ep, "ext_proc has no grpc_service: it would not know where the gateway is")
        }
        // The route's upstream cluster.
        let routes = (((hcm["route_config"] as? [String: Any])?["virtual_hosts"] as? [Any]) ?? []).enumerated().flatMap { vi, vh in
            (((vh as? [String: Any])?["routes"] as? [Any]) ?? []).enumerated().map { (vi, $0.offset, $0.element) }
        }
        for (vi, ri, r) in routes {
            let rp: [any Sendable] = hp + ["route_config", "virtual_hosts", vi, "routes", ri, "route", "cluster"]
            guard let name = ((r as? [String: Any])?["route"] as? [String: Any])?["cluster"] as? String else { continue }
            guard let ci = index[name] else {
                fail(rp, "the route sends requests to cluster '\(name)', which is not defined")
                continue
            }
            let c = clusters[ci]
            if (c["type"] as? String) == "ORIGINAL_DST" {
                let cfg = c["original_dst_lb_config"] as? [String: Any] ?? [:]
                if (cfg["use_http_header"] as? Bool) != true {
                    fail(["static_resources", "clusters", ci], "ORIGINAL_DST cluster '\(name)' must set original_dst_lb_config.use_http_header: true to dial the pod the gateway names")
                }
                if let h = cfg["http_header_name"] as? String { target = h.lowercased() }
            }
        }
        if !removed.map({ $0.lowercased() }).contains(target) {
            fail(hp + ["http_filters"], "no header_mutation filter before ext_proc removes the client's '\(target)' header: a client could choose its own pod")
        }
        return true
    }
}
