/// A user's limits, as the reference stores them (`aibrix-users/<name>` =
/// `{"name","rpm","tpm"}`): requests and tokens per window. 0 means the
/// reference's defaults: 100 requests, and rpm × 1,000 tokens.
public struct UserLimits: Sendable, Equatable {
    public var name: String
    public var rpm: Int
    public var tpm: Int

    public init(name: String, rpm: Int, tpm: Int) {
        self.name = name
        self.rpm = rpm
        self.tpm = tpm
    }

    /// The limits in force (defaults applied).
    public var requests: Int { rpm > 0 ? rpm : 100 }
    public var tokens: Int { tpm > 0 ? tpm : requests * 1000 }
}

/// How counters age.
public enum LimitWindow: String, Sendable, CaseIterable {
    /// Counts reset at each window boundary (the reference's behaviour;
    /// allows up to 2× the limit across a boundary).
    case fixed
    /// The previous window's count, weighted by how much of it still
    /// overlaps the last `seconds`, plus the current one: no boundary burst.
    case sliding
}

/// What one admission asks for, and what the store answered.
public struct AdmissionRequest: Sendable, Equatable {
    public var user: UserLimits
    /// Tokens reserved until the response's real usage settles them: the
    /// prompt's estimate plus the request's output cap (or a default).
    public var tokens: Int
    /// Seconds on the store's clock (tests pass their own).
    public var now: Double

    public init(user: UserLimits, tokens: Int, now: Double) {
        self.user = user
        self.tokens = tokens
        self.now = now
    }
}

/// The numbers behind OpenAI's rate-limit headers.
public struct Quota: Sendable, Equatable {
    public var limitRequests: Int
    public var remainingRequests: Int
    /// Seconds until the request count frees up.
    public var resetRequests: Double
    public var limitTokens: Int
    public var remainingTokens: Int
    public var resetTokens: Double

    public init(limitRequests: Int, remainingRequests: Int, resetRequests: Double, limitTokens: Int,
                remainingTokens: Int, resetTokens: Double) {
        self.limitRequests = limitRequests
        self.remainingRequests = remainingRequests
        self.resetRequests = resetRequests
        self.limitTokens = limitTokens
        self.remainingTokens = remainingTokens
        self.resetTokens = resetTokens
    }

    /// OpenAI's header names and formats: counts as integers, resets as
    /// durations ("1s", "6m0s", "250ms").
    public var headers: [(String, String)] {
        [("x-ratelimit-limit-requests", "\(limitRequests)"), ("x-ratelimit-remaining-requests", "\(max(0, remainingRequests))"),
         ("x-ratelimit-reset-requests", Self.duration(resetRequests)),
         ("x-ratelimit-limit-tokens", "\(limitTokens)"), ("x-ratelimit-remaining-tokens", "\(max(0, remainingTokens))"),
         ("x-ratelimit-reset-tokens", Self.duration(resetTokens))]
    }

    static func duration(_ s: Double) -> String {
        let ms = Int((max(0, s) * 1000).rounded(.up))
        if ms < 1000 { return "\(ms)ms" }
        let whole = (ms + 999) / 1000
        if whole < 60 { return "\(whole)s" }
        return "\(whole / 60)m\(whole % 60)s"
    }
}

/// Which limit refused a request.
public enum LimitKind: String, Sendable {
    case requests, tokens
}

/// A store's answer.
public enum Admission: Sendable, Equatable {
    /// Counted: `reservation` settles the tokens when the response's usage is known.
    case admitted(Quota, Reservation)
    /// Refused: retry after `retryAfter` seconds (nil: retrying cannot help,
    /// the request alone needs more tokens than the limit).
    case limited(Quota, LimitKind, retryAfter: Int?)
}

/// An admitted request's charge: where its counts went, to settle or refund.
public struct Reservation: Sendable, Equatable {
    public let user: String
    public let window: Int64
    public let tokens: Int

    public init(user: String, window: Int64, tokens: Int) {
        self.user = user
        self.window = window
        self.tokens = tokens
    }
}
