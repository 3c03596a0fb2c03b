import EventLoop
import Foundation
import Logging
import Metrics
import PodSnapshot
import Synchronization
import TLS

/// Discovery from the Kubernetes API: LIST then WATCH pods carrying
/// `model.aibrix.ai/name` (all namespaces, or each of a chosen set), over
/// TLS with the cluster CA verified. Resumes a dropped or expired watch from
/// the last resourceVersion (bookmarks keep it fresh), relists on 410 Gone,
/// backs off on errors, and re-reads a rotated token on every connection.
///
/// Control-plane work on its own threads (blocking I/O); every change is
/// published as a whole model → endpoints map through `onChange`.
public final class KubernetesPodsProvider: Sendable {
    let configuration: KubernetesConfiguration
    let logger: Logger
    let onChange: @Sendable (ModelTable) -> Void
    private let entries = Mutex<[String: [String: KubernetesPods.Entry]]>([:])  // by namespace scope
    private let stopped = Atomic<Bool>(false)
    public let stats = KubernetesStats()

    public init(configuration: KubernetesConfiguration, logger: Logger,
                onChange: @escaping @Sendable (ModelTable) -> Void) {
        self.configuration = configuration
        self.logger = logger
        self.onChange = onChange
    }

    /// Starts one list/watch thread per namespace (one for all when none is named).
    public func start() {
        let scopes = configuration.namespaces.isEmpty ? [nil] : configuration.namespaces.map { Optional($0) }
        for scope in scopes {
            let t = Thread { [self] in run(namespace: scope) }
            t.name = "k8s-watch-\(scope ?? "all")"
            t.start()
        }
    }

    public func stop() { stopped.store(true, ordering: .relaxed) }

    private func basePath(_ ns: String?) -> String {
        let selector = "labelSelector=" + KubernetesPods.modelLabel.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._")))!
        return (ns.map { "/api/v1/namespaces/\($0)/pods" } ?? "/api/v1/pods") + "?" + selector
    }

    private func run(namespace ns: String?) {
        let scope = ns ?? "*"
        var resourceVersion: String?
        var backoff = 0.25
        while !stopped.load(ordering: .relaxed) {
            do {
                if resourceVersion == nil {
                    resourceVersion = try list(ns, scope: scope)
                    stats.lists.add(1)
                }
                // Returns normally when the server ends the watch (timeoutSeconds);
                // either way `resourceVersion` holds the newest version seen, to resume from.
                var rv = resourceVersion!
                defer { resourceVersion = rv }
                try watch(ns, scope: scope, resourceVersion: &rv)
                backoff = 0.25
            } catch let e as WatchError where e == .gone {
                logger.info("k8s.watch.expired", metadata: ["k8s.namespace": "\(scope)", "action": "relist"])
                resourceVersion = nil
                stats.relists.add(1)
            } catch {
                stats.errors.add(1)
                logger.warning("k8s.watch.error", metadata: [
                    "k8s.namespace": "\(scope)", "error": "\(error)", "retry_in_s": "\(backoff)",
                ])
                Thread.sleep(forTimeInterval: backoff * Double.random(in: 0.8...1.2))
                backoff = min(backoff * 2, 30)
            }
        }
    }

    /// LIST: replaces this scope's pods; returns the list's resourceVersion.
    private func list(_ ns: String?, scope: String) throws -> String {
        let conn = try KubernetesConnection(configuration: configuration, path: basePath(ns), timeoutSeconds: 30)
        let body = try conn.readAll()
        guard conn.status == 200 else {
            throw WatchError.http(conn.status, String(decoding: body.prefix(300), as: UTF8.self))
        }
        guard let obj = (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any],
              let items = obj["items"] as? [[String: Any]],
              let rv = (obj["metadata"] as? [String: Any])?["resourceVersion"] as? String else {
            throw WatchError.malformed("pod list without items or metadata.resourceVersion")
        }
        var scoped: [String: KubernetesPods.Entry] = [:]
        for p in items { if let e = KubernetesPods.entry(p) { scoped[e.key] = e } }
        entries.withLock { $0[scope] = scoped }
        publish()
        logger.notice("k8s.pods.listed", metadata: ["k8s.namespace": "\(scope)", "k8s.pods": "\(items.count)",
                                                    "k8s.resource_version": "\(rv)"])
        return rv
    }

    /// WATCH from `rv` until the server ends the stream, advancing `rv` with
    /// every event and bookmark (so a dropped stream resumes where it was).
    private func watch(_ ns: String?, scope: String, resourceVersion rv: inout String) throws {
        let path = basePath(ns) + "&watch=1&allowWatchBookmarks=true&timeoutSeconds=300&resourceVersion=\(rv)"
        let conn = try KubernetesConnection(configuration: configuration, path: path, timeoutSeconds: 330)
        if conn.status == 410 { throw WatchError.gone }
        guard conn.status == 200 else {
            throw WatchError.http(conn.status, String(decoding: try conn.readAll().prefix(300), as: UTF8.self))
        }
        stats.watches.add(1)
        var pending: [UInt8] = []
        while let chunk = try conn.nextBodyChunk() {
            pending += chunk
            while let nl = pending.firstIndex(of: 0x0A) {
                let line = Array(pending[..<nl])
                pending.removeFirst(nl + 1)
                if line.allSatisfy({ $0 == 0x20 || $0 == 0x0D }) { continue }
                rv = try apply(line, scope: scope) ?? rv
            }
        }
    }

    /// One watch event; returns its resourceVersion.
    private func apply(_ line: [UInt8], scope: String) throws -> String? {
        guard let ev = (try? JSONSerialization.jsonObject(with: Data(line))) as? [String: Any],
              let type = ev["type"] as? String, let obj = ev["object"] as? [String: Any] else {
            stats.malformed.add(1)
            throw WatchError.malformed("watch event is not {type, object}: \(String(decoding: line.prefix(200), as: UTF8.self))")
        }
        let rv = (obj["metadata"] as? [String: Any])?["resourceVersion"] as? String
        stats.events.add(1)
        switch type {
        case "ADDED", "MODIFIED", "DELETED":
            guard let e = KubernetesPods.entry(obj) else { throw WatchError.malformed("pod without metadata.name") }
            let changed = entries.withLock { all -> Bool in
                var s = all[scope] ?? [:]
                let before = s[e.key]
                if type == "DELETED" { s[e.key] = nil } else { s[e.key] = e }
                all[scope] = s
                return before != s[e.key]
            }
            if changed {
                logger.info("k8s.pod.changed", metadata: [
                    "k8s.event": "\(type)", "k8s.pod": "\(e.key)", "model": "\(e.model ?? "-")",
                    "routable": "\(e.endpoint?.address ?? "no (\(e.notRoutableBecause ?? "deleted"))")",
                ])
                publish()
            }
        case "BOOKMARK":
            stats.bookmarks.add(1)
        case "ERROR":
            if (obj["code"] as? Int) == 410 { throw WatchError.gone }
            throw WatchError.http(obj["code"] as? Int ?? 0, obj["message"] as? String ?? "watch error")
        default:
            throw WatchError.malformed("unknown watch event type \(type)")
        }
        return rv
    }

    private func publish() {
        let merged = entries.withLock { all in all.values.reduce(into: [String: KubernetesPods.Entry]()) { $0.merge($1) { a, _ in a } } }
        onChange(ModelTable(endpoints: KubernetesPods.models(merged)))
    }

    enum WatchError: Error, Equatable, CustomStringConvertible {
        case gone
        case http(Int, String)
        case malformed(String)
        var description: String {
            switch self {
            case .gone: return "410 Gone"
            case .http(let c, let m): return "HTTP \(c): \(m)"
            case .malformed(let m): return m
            }
        }
    }
}

/// Counters for tests and the debug endpoint.
public final class KubernetesStats: Sendable {
    public let lists = Counter(), relists = Counter(), watches = Counter(), events = Counter()
    public let bookmarks = Counter(), errors = Counter(), malformed = Counter()
}

/// One HTTP/1.1 GET over TLS to the API server; the body is read
/// incrementally (chunked or by length or until close).
final class KubernetesConnection {
    let stream: TLSStream
    private(set) var status = 0
    private var buffer: [UInt8] = []
    private var chunked = false
    private var remaining: Int?
    private var done = false

    init(configuration c: KubernetesConfiguration, path: String, timeoutSeconds: Double) throws {
        stream = try TLSStream(host: c.host, port: c.port,
                               configuration: TLSConfiguration(trustedCAsPEM: c.caPEM, serverName: c.host),
                               timeoutSeconds: timeoutSeconds)
        var req = "GET \(path) HTTP/1.1\r\nHost: \(c.host):\(c.port)\r\nAccept: application/json\r\nUser-Agent: switchboard\r\nConnection: close\r\n"
        if let t = c.currentToken() { req += "Authorization: Bearer \(t)\r\n" }
        req += "\r\n"
        try stream.write(Array(req.utf8))
        // Head
        while true {
            if let end = find([13, 10, 13, 10]) {
                let head = String(decoding: buffer[0..<end], as: UTF8.self)
                buffer.removeFirst(end + 4)
                let lines = head.split(separator: "\r\n")
                guard let first = lines.first, first.hasPrefix("HTTP/1."), let code = Int(first.split(separator: " ")[1]) else {
                    throw KubernetesPodsProvider.WatchError.malformed("bad HTTP status line from the API server")
                }
                status = code
                for l in lines.dropFirst() {
                    let parts = l.split(separator: ":", maxSplits: 1)
                    guard parts.count == 2 else { continue }
                    let name = parts[0].lowercased(), value = parts[1].trimmingCharacters(in: .whitespaces)
                    if name == "transfer-encoding" && value.lowercased().contains("chunked") { chunked = true }
                    if name == "content-length" { remaining = Int(value) }
                }
                return
            }
            let more = try stream.read()
            if more.isEmpty { throw KubernetesPodsProvider.WatchError.malformed("API server closed before the response head") }
            buffer += more
        }
    }

    deinit { stream.close() }

    private func find(_ needle: [UInt8]) -> Int? {
        guard buffer.count >= needle.count else { return nil }
        for i in 0...(buffer.count - needle.count) where buffer[i] == needle[0] && Array(buffer[i..<(i + needle.count)]) == needle {
            return i
        }
        return nil
    }

    private func fill() throws -> Bool {
        let more = try stream.read()
        if more.isEmpty { return false }
        buffer += more
        return true
    }

    /// The next piece of the body, or nil at its end.
    func nextBodyChunk() throws -> [UInt8]? {
        if done { return nil }
        if chunked {
            while true {
                if let e = find([13, 10]) {
                    let sizeText = String(decoding: buffer[0..<e], as: UTF8.self).split(separator: ";").first.map(String.init) ?? ""
                    guard let size = Int(sizeText.trimmingCharacters(in: .whitespaces), radix: 16) else {
                        throw KubernetesPodsProvider.WatchError.malformed("bad chunk size from the API server")
                    }
                    if size == 0 { done = true; return nil }
                    while buffer.count < e + 2 + size + 2 { if try !fill() { done = true; return nil } }
                    let data = Array(buffer[(e + 2)..<(e + 2 + size)])
                    buffer.removeFirst(e + 2 + size + 2)
                    return data
                }
                if try !fill() { done = true; return nil }
            }
        }
        if let r = remaining {
            if r == 0 { done = true; return nil }
            if buffer.isEmpty, try !fill() { done = true; return nil }
            let n = min(r, buffer.count)
            let data = Array(buffer[0..<n])
            buffer.removeFirst(n)
            remaining = r - n
            return data
        }
        if !buffer.isEmpty { defer { buffer = [] }; return buffer }
        if try fill() { defer { buffer = [] }; return buffer }
        done = true
        return nil
    }

    func readAll() throws -> [UInt8] {
        var out: [UInt8] = []
        while let c = try nextBodyChunk() {
            out += c
            if out.count > 64 << 20 { throw KubernetesPodsProvider.WatchError.malformed("response larger than 64 MiB") }
        }
        return out
    }
}
