import PodSnapshot

/// Health of one scrape target from its recent scrape outcomes. Pure value
/// type with an injected clock (every event carries its time).
public struct ScrapeTargetStateMachine: Sendable, Equatable {
    /// Health lives in PodSnapshot (routers read it without the scraper).
    public typealias Health = PodHealth

    /// Failures in a row that make a target stale.
    public let failureThreshold: Int
    /// Age after which the last good data is stale even without failures.
    public let maxAgeNanos: UInt64
    public private(set) var consecutiveFailures = 0
    public private(set) var lastSuccessNanos: UInt64?
    public private(set) var lastError: String?
    public private(set) var totalFailures = 0
    public private(set) var totalSuccesses = 0

    public init(failureThreshold: Int, maxAgeNanos: UInt64) {
        self.failureThreshold = max(1, failureThreshold)
        self.maxAgeNanos = maxAgeNanos
    }

    public mutating func succeeded(at now: UInt64) {
        consecutiveFailures = 0
        lastSuccessNanos = now
        lastError = nil
        totalSuccesses += 1
    }

    public mutating func failed(at now: UInt64, error: String) {
        consecutiveFailures += 1
        totalFailures += 1
        lastError = error
    }

    public func health(now: UInt64) -> Health {
        if consecutiveFailures >= failureThreshold {
            return .stale("\(consecutiveFailures) scrapes failed in a row: \(lastError ?? "error")")
        }
        guard let last = lastSuccessNanos else {
            return consecutiveFailures > 0 ? .stale("never scraped successfully: \(lastError ?? "error")") : .unknown
        }
        if now > last && now - last > maxAgeNanos {
            return .stale("last good scrape \(String(format3: Double(now - last) / 1e9)) s ago")
        }
        return .fresh
    }
}

extension String {
    init(format3 v: Double) {
        let r = (v * 1000).rounded() / 1000
        self = "\(r)"
    }
}
