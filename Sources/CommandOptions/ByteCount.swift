import Foundation

/// Byte counts as operators write them on command lines.
public enum ByteCount {
    /// `8G`, `512M`, `64K`, `1T` (binary multiples) or a plain number; nil
    /// when the text is none of these or the value overflows.
    public static func parse(_ text: String) -> Int? {
        let t = text.trimmingCharacters(in: .whitespaces).uppercased()
        let mult: [Character: Int] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40]
        if let last = t.last, let m = mult[last] {
            guard let n = Int(t.dropLast()), n >= 0 else { return nil }
            let (v, overflow) = n.multipliedReportingOverflow(by: m)
            return overflow ? nil : v
        }
        return Int(t).flatMap { $0 >= 0 ? $0 : nil }
    }
}

/// Secrets read from the environment (never from arguments, which other
/// users of the machine can list).
public enum SecretEnvironment {
    /// `$name` when set and not empty.
    public static func value(_ name: String) -> String? {
        ProcessInfo.processInfo.environment[name].flatMap { $0.isEmpty ? nil : $0 }
    }

    /// A secret file's content without its trailing newline (a mounted
    /// Kubernetes Secret); nil when unreadable or empty.
    public static func file(_ path: String) -> String? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        var s = String(decoding: data, as: UTF8.self)
        while s.last == "\n" || s.last == "\r" { s.removeLast() }
        return s.isEmpty ? nil : s
    }
}
