import Foundation
import RateLimit

/// `switchboard users`: edits the users file the gateway reloads.
public enum UsersTool {
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    /// Runs one action and returns what to print.
    public static func run(file: String, action: String, name: String?, rpm: Int?, tpm: Int?) throws -> String {
        if let r = rpm, r < 0 { throw Failure(description: "--rpm must be non-negative") }
        if let t = tpm, t < 0 { throw Failure(description: "--tpm must be non-negative") }
        let exists = FileManager.default.fileExists(atPath: file)
        var users = exists ? try UsersFile.load(path: file) : []
        func named() throws -> String {
            guard let n = name, !n.isEmpty else { throw Failure(description: "\(action) needs a user name") }
            return n
        }
        switch action {
        case "list":
            guard exists else { throw Failure(description: "no users file at \(file)") }
            return users.sorted { $0.name < $1.name }
                .map { "\($0.name)\trpm \($0.requests)\(($0.rpm == 0 ? " (default)" : ""))\ttpm \($0.tokens)\(($0.tpm == 0 ? " (default)" : ""))\n" }
                .joined()
        case "add":
            let n = try named()
            guard !users.contains(where: { $0.name == n }) else { throw Failure(description: "user '\(n)' exists; use set") }
            users.append(UserLimits(name: n, rpm: rpm ?? 0, tpm: tpm ?? 0))
        case "set":
            let n = try named()
            guard let i = users.firstIndex(where: { $0.name == n }) else { throw Failure(description: "no user '\(n)'; use add") }
            guard rpm != nil || tpm != nil else { throw Failure(description: "set needs --rpm or --tpm") }
            if let r = rpm { users[i].rpm = r }
            if let t = tpm { users[i].tpm = t }
        case "delete":
            let n = try named()
            guard let i = users.firstIndex(where: { $0.name == n }) else { throw Failure(description: "no user '\(n)'") }
            users.remove(at: i)
        default:
            throw Failure(description: "unknown action '\(action)': use add, set, delete or list")
        }
        try UsersFile.write(users, path: file)
        return "\(action == "delete" ? "deleted" : "saved") \(name ?? "") in \(file) (\(users.count) users)\n"
    }
}
