import Foundation
import PodSnapshot

/// How a Kubernetes pod becomes a model endpoint, with the labels the
/// reference gateway uses so existing deployments work unchanged:
/// `model.aibrix.ai/name` (model), `model.aibrix.ai/port` (serving port,
/// default 8000), `model.aibrix.ai/metric-port` (default: the serving port),
/// `model.aibrix.ai/engine` (default vllm). A pod counts only when it has an
/// IP, is Ready and is not terminating.
public enum KubernetesPods {
    public static let modelLabel = "model.aibrix.ai/name"
    public static let portLabel = "model.aibrix.ai/port"
    public static let metricPortLabel = "model.aibrix.ai/metric-port"
    public static let engineLabel = "model.aibrix.ai/engine"

    /// A pod as discovery tracks it: its key and, when routable, its model endpoint.
    public struct Entry: Sendable, Equatable {
        public var key: String  // namespace/name
        public var model: String?
        public var endpoint: PodEndpoint?
        /// Why the pod is not routable (nil when it is).
        public var notRoutableBecause: String?
    }

    /// Reads one pod object (decoded JSON).
    public static func entry(_ pod: [String: Any]) -> Entry? {
        guard let meta = pod["metadata"] as? [String: Any], let name = meta["name"] as? String else { return nil }
        let ns = meta["namespace"] as? String ?? "default"
        var e = Entry(key: "\(ns)/\(name)")
        let labels = meta["labels"] as? [String: String] ?? [:]
        guard let model = labels[modelLabel], !model.isEmpty else {
            e.notRoutableBecause = "no \(modelLabel) label"
            return e
        }
        e.model = model
        if meta["deletionTimestamp"] != nil && !(meta["deletionTimestamp"] is NSNull) {
            e.notRoutableBecause = "terminating"
            return e
        }
        let status = pod["status"] as? [String: Any] ?? [:]
        guard let ip = status["podIP"] as? String, !ip.isEmpty else {
            e.notRoutableBecause = "no pod IP yet"
            return e
        }
        let conditions = status["conditions"] as? [[String: Any]] ?? []
        guard conditions.contains(where: { ($0["type"] as? String) == "Ready" && ($0["status"] as? String) == "True" }) else {
            e.notRoutableBecause = "not Ready"
            return e
        }
        guard let port = Int(labels[portLabel] ?? "8000"), (1...65535).contains(port) else {
            e.notRoutableBecause = "bad \(portLabel) label"
            return e
        }
        let metricPort = labels[metricPortLabel].flatMap(Int.init).flatMap { (1...65535).contains($0) ? $0 : nil }
        e.endpoint = PodEndpoint(host: ip, port: port, metricsPort: metricPort, engine: labels[engineLabel] ?? "vllm")
        return e
    }

    /// Model → endpoints, from the tracked entries (sorted for stable output).
    public static func models(_ entries: [String: Entry]) -> [String: [PodEndpoint]] {
        var out: [String: [PodEndpoint]] = [:]
        for key in entries.keys.sorted() {
            let e = entries[key]!
            if let m = e.model {
                if let ep = e.endpoint { out[m, default: []].append(ep) } else if out[m] == nil { out[m] = [] }
            }
        }
        return out
    }
}
