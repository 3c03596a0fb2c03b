import ArgumentParser
import Logging

/// `--log-level` and `--log-format`, shared by every executable; `bootstrap` is the one place
/// a process sets up swift-log (libraries only receive a `Logger`).
public struct LogOptions: ParsableArguments {
    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    public var logLevel: String = "info"

    @Option(help: "Log line format: text (human), logfmt or json (one object per line).")
    public var logFormat: String = "text"

    public init() {}

    /// Sends every log line to standard error at the chosen level.
    public func bootstrap(label: String) throws -> Logger {
        guard let level = Logger.Level(rawValue: logLevel) else {
            throw ValidationError("unknown --log-level '\(logLevel)'")
        }
        switch logFormat {
        case "text": LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
        default:
            guard let f = StructuredLogHandler.Format(rawValue: logFormat) else {
                throw ValidationError("unknown --log-format '\(logFormat)': use text, logfmt or json")
            }
            LoggingSystem.bootstrap { StructuredLogHandler(label: $0, format: f) }
        }
        var l = Logger(label: label)
        l.logLevel = level
        return l
    }
}
