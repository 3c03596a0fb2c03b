import ArgumentParser
import Logging

/// `--log-level`, shared by every executable; `bootstrap` is the one place
/// a process sets up swift-log (libraries only receive a `Logger`).
public struct LogOptions: ParsableArguments {
    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    public var logLevel: String = "info"

    public init() {}

    /// Sends every log line to standard error at the chosen level.
    public func bootstrap(label: String) throws -> Logger {
        guard let level = Logger.Level(rawValue: logLevel) else {
            throw ValidationError("unknown --log-level '\(logLevel)'")
        }
        LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
        var l = Logger(label: label)
        l.logLevel = level
        return l
    }
}
