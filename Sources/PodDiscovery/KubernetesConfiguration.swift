import Foundation
import Yams

/// Where the Kubernetes API is and how to authenticate: in-cluster (service
/// account) or from a kubeconfig. The token is re-read from its file on every
/// connection, so rotated service-account tokens are picked up.
public struct KubernetesConfiguration: Sendable {
    public var host: String
    public var port: Int
    public var caPEM: [UInt8]?
    public var token: String?
    public var tokenFile: String?
    /// Namespaces to watch; empty watches all.
    public var namespaces: [String] = []

    public struct ConfigError: Error, CustomStringConvertible, Sendable {
        public let message: String
        public var description: String { message }
    }

    public static let serviceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount"

    /// The service-account configuration a pod gets.
    public static func inCluster(environment: [String: String] = ProcessInfo.processInfo.environment,
                                 directory: String = serviceAccountDir) throws(ConfigError) -> KubernetesConfiguration {
        guard let host = environment["KUBERNETES_SERVICE_HOST"], let port = environment["KUBERNETES_SERVICE_PORT"].flatMap(Int.init) else {
            throw ConfigError(message: "not in a cluster: KUBERNETES_SERVICE_HOST/KUBERNETES_SERVICE_PORT are unset (use --kubeconfig)")
        }
        guard let ca = FileManager.default.contents(atPath: "\(directory)/ca.crt") else {
            throw ConfigError(message: "cannot read \(directory)/ca.crt")
        }
        return KubernetesConfiguration(host: host, port: port, caPEM: Array(ca), token: nil, tokenFile: "\(directory)/token")
    }

    /// The current context of a kubeconfig file (token or tokenFile users).
    public static func kubeconfig(path: String) throws(ConfigError) -> KubernetesConfiguration {
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw ConfigError(message: "cannot read kubeconfig \(path)")
        }
        let root: [String: Any]
        do {
            guard let r = try YAMLLocation.load(text) as? [String: Any] else { throw ConfigError(message: "kubeconfig \(path): not a mapping") }
            root = r
        } catch let e as ConfigError {
            throw e
        } catch {
            throw ConfigError(message: "kubeconfig \(path): invalid YAML: \(error)")
        }
        func named(_ key: String, _ name: String) -> [String: Any]? {
            (root[key] as? [[String: Any]])?.first { ($0["name"] as? String) == name }
        }
        guard let current = root["current-context"] as? String, let ctx = named("contexts", current)?["context"] as? [String: Any],
              let clusterName = ctx["cluster"] as? String, let cluster = named("clusters", clusterName)?["cluster"] as? [String: Any],
              let server = cluster["server"] as? String, let url = URL(string: server), url.scheme == "https", let host = url.host else {
            throw ConfigError(message: "kubeconfig \(path): needs current-context, its cluster and an https server URL")
        }
        var c = KubernetesConfiguration(host: host, port: url.port ?? 443, caPEM: nil, token: nil, tokenFile: nil)
        let base = (path as NSString).deletingLastPathComponent
        if let b64 = cluster["certificate-authority-data"] as? String {
            guard let d = Data(base64Encoded: b64) else { throw ConfigError(message: "kubeconfig \(path): certificate-authority-data is not base64") }
            c.caPEM = Array(d)
        } else if let f = cluster["certificate-authority"] as? String {
            let p = f.hasPrefix("/") ? f : "\(base)/\(f)"
            guard let d = FileManager.default.contents(atPath: p) else { throw ConfigError(message: "cannot read CA file \(p)") }
            c.caPEM = Array(d)
        }
        if let userName = ctx["user"] as? String, let user = named("users", userName)?["user"] as? [String: Any] {
            c.token = user["token"] as? String
            c.tokenFile = (user["tokenFile"] as? String).map { $0.hasPrefix("/") ? $0 : "\(base)/\($0)" }
            if c.token == nil && c.tokenFile == nil && (user["client-certificate"] != nil || user["client-certificate-data"] != nil) {
                throw ConfigError(message: "kubeconfig \(path): user '\(userName)' uses client certificates, which are not supported yet; use a token")
            }
        }
        return c
    }

    /// The bearer token to send now (re-read from its file when there is one).
    func currentToken() -> String? {
        if let f = tokenFile, let d = FileManager.default.contents(atPath: f) {
            return String(decoding: d, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        }
        return token
    }
}
