import Foundation
import Logging
import Metrics

/// One log line per event on standard error, as logfmt
/// (`ts=… level=info logger=switchboard msg=gateway.request request.id=…`) or
/// as a JSON object per line, for log pipelines that parse fields.
/// Each line is one `write` to standard error, so lines from different
/// threads never interleave.
public struct StructuredLogHandler: LogHandler {
    public enum Format: String, CaseIterable, Sendable {
        case logfmt, json
    }

    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .info
    let label: String
    let format: Format

    public init(label: String, format: Format) {
        self.label = label
        self.format = format
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var fields = self.metadata
        if let e = event.metadata { fields.merge(e) { $1 } }
        if let err = event.error { fields["error"] = "\(err)" }
        let line = Self.render(format: format, timestamp: Self.timestamp(), level: event.level, logger: label, source: event.source,
                               message: event.message.description, fields: fields)
        FileHandle.standardError.write(Data(line.utf8))
    }

    /// One line (with its newline); fields sorted by key.
    public static func render(format: Format, timestamp: String, level: Logger.Level, logger: String, source: String,
                              message: String, fields: Logger.Metadata) -> String {
        let sorted = fields.sorted { $0.key < $1.key }
        switch format {
        case .logfmt:
            var s = "ts=\(timestamp) level=\(level.rawValue) logger=\(logfmt(logger)) source=\(logfmt(source)) msg=\(logfmt(message))"
            for (k, v) in sorted { s += " \(logfmt(k))=\(logfmt(v.description))" }
            return s + "\n"
        case .json:
            var s = "{\"ts\":\(json(timestamp)),\"level\":\(json(level.rawValue)),\"logger\":\(json(logger)),\"source\":\(json(source)),\"msg\":\(json(message))"
            for (k, v) in sorted where !["ts", "level", "logger", "source", "msg"].contains(k) { s += ",\(json(k)):\(json(v.description))" }
            return s + "}\n"
        }
    }

    /// A logfmt value: bare when it has no space, quote, equals sign or
    /// control character, else quoted with escapes.
    static func logfmt(_ v: String) -> String {
        if !v.isEmpty && !v.unicodeScalars.contains(where: { $0 == " " || $0 == "\"" || $0 == "=" || $0.value < 0x20 || $0 == "\\" }) {
            return v
        }
        return json(v)
    }

    static func json(_ v: String) -> String { JSONText.quote(v) }

    /// UTC, RFC 3339 with milliseconds.
    static func timestamp() -> String {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        var t = tm()
        var secs = ts.tv_sec
        gmtime_r(&secs, &t)
        let ms = Int(ts.tv_nsec / 1_000_000)
        func two(_ x: Int32) -> String { x < 10 ? "0\(x)" : "\(x)" }
        let msText = ms < 10 ? "00\(ms)" : ms < 100 ? "0\(ms)" : "\(ms)"
        return "\(t.tm_year + 1900)-\(two(t.tm_mon + 1))-\(two(t.tm_mday))T\(two(t.tm_hour)):\(two(t.tm_min)):\(two(t.tm_sec)).\(msText)Z"
    }
}
