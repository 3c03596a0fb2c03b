import Foundation
import PodDiscovery

/// The users file: the reference's records (`{"name","rpm","tpm"}`, 0 =
/// its defaults), as a JSON array. `switchboard users` edits it; the
/// gateway reloads it on change.
public enum UsersFile {
    public struct LoadError: Error, CustomStringConvertible, Sendable {
        public let description: String
        public init(description: String) { self.description = description }
    }

    private struct Record: Decodable {
        let name: String
        let rpm: Int?
        let tpm: Int?
    }

    public static func parse(_ data: Data, path: String) throws(LoadError) -> [UserLimits] {
        let records: [Record]
        // JSON is YAML: its nodes give each record's line for the messages.
        let text = String(decoding: data, as: UTF8.self)
        let at = YAMLLocation(text)
        func name(_ node: [any Sendable]) -> String {
            "users file \(path)" + (at.line(node).map { " line \($0)" } ?? "")
        }
        do {
            records = try JSONDecoder().decode([Record].self, from: data)
        } catch let DecodingError.typeMismatch(_, ctx), let DecodingError.valueNotFound(_, ctx), let DecodingError.keyNotFound(_, ctx) {
            let node: [any Sendable] = ctx.codingPath.map { $0.intValue.map { $0 as any Sendable } ?? $0.stringValue }
            let what = ctx.codingPath.map { $0.intValue.map { "record \($0 + 1)" } ?? $0.stringValue }.joined(separator: ", ")
            throw LoadError(description: "\(name(node)): \(what.isEmpty ? "" : what + ": ")\(ctx.debugDescription) (expected a JSON array of {\"name\": string, \"rpm\": integer, \"tpm\": integer})")
        } catch {
            let line = YAMLLocation.errorLine(text).map { " line \($0)" } ?? ""
            throw LoadError(description: "users file \(path)\(line) is not a JSON array of {\"name\", \"rpm\", \"tpm\"} records: \(error)")
        }
        var out: [UserLimits] = []
        var seen = Set<String>()
        for (i, r) in records.enumerated() {
            guard !r.name.isEmpty else { throw LoadError(description: "\(name([i, "name"])): record \(i + 1): \"name\" is empty") }
            guard (r.rpm ?? 0) >= 0, (r.tpm ?? 0) >= 0 else {
                throw LoadError(description: "\(name([i, (r.rpm ?? 0) < 0 ? "rpm" : "tpm"])): record \(i + 1) (\(r.name)): rpm and tpm must be non-negative")
            }
            guard seen.insert(r.name).inserted else {
                throw LoadError(description: "\(name([i, "name"])): record \(i + 1): user '\(r.name)' listed twice")
            }
            out.append(UserLimits(name: r.name, rpm: r.rpm ?? 0, tpm: r.tpm ?? 0))
        }
        return out
    }

    public static func load(path: String) throws(LoadError) -> [UserLimits] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw LoadError(description: "cannot read users file \(path)")
        }
        return try parse(data, path: path)
    }

    /// One record as the reference stores it, `{"name","rpm","tpm"}`.
    public static func record(_ u: UserLimits) -> [String: Any] { ["name": u.name, "rpm": u.rpm, "tpm": u.tpm] }

    /// One record's JSON (a Redis `aibrix-users/<name>` value).
    public static func encode(_ u: UserLimits) throws -> Data {
        try JSONSerialization.data(withJSONObject: record(u), options: [.sortedKeys])
    }

    /// Writes the records (sorted by name) atomically: a reloading gateway never sees half a file.
    public static func write(_ users: [UserLimits], path: String) throws {
        let records = users.sorted { $0.name < $1.name }.map(record)
        let data = try JSONSerialization.data(withJSONObject: records, options: [.prettyPrinted, .sortedKeys])
        try (data + Data("\n".utf8)).write(to: URL(fileURLWithPath: path), options: .atomic)
    }
}
