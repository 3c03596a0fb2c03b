import Foundation
import PodSnapshot
import Yams

/// Reads the static pods file (YAML): which endpoints serve which model.
///
/// ```yaml
/// models:
///   - name: llama-3-8b
///     endpoints:
///       - 10.0.0.7:8000                 # host:port
///       - address: 10.0.0.8:8000        # or a mapping
///         metricsPort: 9000
///         engine: vllm
///     routingStrategy: random           # optional: this model's default strategy
/// ```
public enum StaticPodsFile {
    /// A pods file that cannot be used, with the reason.
    public struct LoadError: Error, CustomStringConvertible, Sendable {
        public let path: String
        public let reason: String
        /// 1-based line of the value the reason is about, when known.
        public var line: Int?
        public init(path: String, reason: String, line: Int? = nil) {
            self.path = path
            self.reason = reason
            self.line = line
        }
        public var description: String { "pods file \(path)\(line.map { " line \($0)" } ?? ""): \(reason)" }
    }

    /// Loads and validates a pods file.
    public static func load(path: String) throws(LoadError) -> ModelTable {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw LoadError(path: path, reason: "cannot read: \(error.localizedDescription)")
        }
        return try parseTable(text, path: path)
    }

    /// Parses pods-file YAML text: the endpoints only.
    public static func parse(_ text: String, path: String = "<inline>") throws(LoadError) -> [String: [PodEndpoint]] {
        try parseTable(text, path: path).endpoints
    }

    /// Parses pods-file YAML text: endpoints and per-model settings.
    public static func parseTable(_ text: String, path: String = "<inline>") throws(LoadError) -> ModelTable {
        let root: Any?
        do {
            root = try YAMLLocation.load(text)
        } catch {
            throw LoadError(path: path, reason: "invalid YAML: \(error)", line: YAMLLocation.line(of: error))
        }
        let at = YAMLLocation(text)
        func fail(_ node: [any Sendable], _ reason: String) -> LoadError { LoadError(path: path, reason: reason, line: at.line(node)) }
        guard let top = root as? [String: Any] else { throw fail([], "expected a mapping with a 'models' list") }
        guard let models = top["models"] as? [Any] else { throw fail(["models"], "'models' must be a list") }
        var out: [String: [PodEndpoint]] = [:]
        var strategies: [String: String] = [:]
        for (i, m) in models.enumerated() {
            guard let entry = m as? [String: Any] else { throw fail(["models", i], "models[\(i)] must be a mapping") }
            guard let name = entry["name"] as? String, !name.isEmpty else {
                throw fail(["models", i, "name"], "models[\(i)].name must be a non-empty string")
            }
            guard out[name] == nil else { throw fail(["models", i, "name"], "model '\(name)' is listed twice") }
            if let v = entry["routingStrategy"] {
                guard let st = v as? String, !st.isEmpty else {
                    throw fail(["models", i, "routingStrategy"], "models[\(i)].routingStrategy must be a strategy name")
                }
                strategies[name] = st
            }
            let engine = entry["engine"] as? String ?? "vllm"
            if let v = entry["endpoints"], !(v is [Any]) { throw fail(["models", i, "endpoints"], "models[\(i)].endpoints must be a list") }
            let eps = entry["endpoints"] as? [Any] ?? []
            var list: [PodEndpoint] = []
            for (j, e) in eps.enumerated() {
                let whereText = "models[\(i)].endpoints[\(j)]"
                let here: [any Sendable] = ["models", i, "endpoints", j]
                if let s = e as? String {
                    list.append(try endpoint(s, metricsPort: nil, engine: engine, at: whereText, path: path, line: at.line(here)))
                } else if let d = e as? [String: Any], let a = d["address"] as? String {
                    let mp: Int?
                    if let v = d["metricsPort"] {
                        guard let p = v as? Int, (1...65535).contains(p) else {
                            throw fail(here + ["metricsPort"], "\(whereText).metricsPort must be a port number")
                        }
                        mp = p
                    } else {
                        mp = nil
                    }
                    list.append(try endpoint(a, metricsPort: mp, engine: d["engine"] as? String ?? engine, at: whereText, path: path,
                                            line: at.line(here + ["address"])))
                } else {
                    throw fail(here, "\(whereText) must be 'host:port' or a mapping with 'address'")
                }
            }
            out[name] = list
        }
        return ModelTable(endpoints: out, defaultStrategies: strategies)
    }

    private static func endpoint(_ text: String, metricsPort: Int?, engine: String, at whereText: String, path: String,
                                 line: Int?) throws(LoadError) -> PodEndpoint {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (1...65535).contains(port) else {
            throw LoadError(path: path, reason: "\(whereText) '\(text)' is not host:port", line: line)
        }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty else { throw LoadError(path: path, reason: "\(whereText) '\(text)' has no host", line: line) }
        return PodEndpoint(host: host, port: port, metricsPort: metricsPort, engine: engine)
    }
}
