import Redis

/// Per-user limits in Redis, shared by every gateway replica. One Lua
/// script per admission reads the user's record (the reference's key
/// `aibrix-users/<name>`, JSON `{"name","rpm","tpm"}`), reads the counters,
/// decides and reserves — atomically, on Redis's clock — so concurrent
/// requests on any replica never over-admit. The window arithmetic after
/// the decision (quota, retry-after) is `LimitMath`'s, as in process.
public struct RedisLimitStore: Sendable {
    public let windowSeconds: Int
    public let mode: LimitWindow
    /// Counter keys: `<prefix>{<user>}:<window>` (hash fields r, t), so a
    /// user's keys share a cluster slot.
    public let prefix: String

    public init(windowSeconds: Int = 60, mode: LimitWindow = .sliding, prefix: String = "switchboard:limits:") {
        self.windowSeconds = max(1, windowSeconds)
        self.mode = mode
        self.prefix = prefix
    }

    /// The reference's user record key.
    public static func userKey(_ name: String) -> String { "aibrix-users/\(name)" }

    func counterPrefix(_ user: String) -> String { "\(prefix){\(user)}:" }

    static let admitScript = """
    local rec = redis.call('GET', KEYS[1])
    if not rec then return {-1} end
    local ok, u = pcall(cjson.decode, rec)
    if not ok or type(u) ~= 'table' then return {-2} end
    local rpm = tonumber(u['rpm']) or 0
    local tpm = tonumber(u['tpm']) or 0
    if rpm <= 0 then rpm = 100 end
    if tpm <= 0 then tpm = rpm * 1000 end
    local t = redis.call('TIME')
    local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
    local W = tonumber(ARGV[1])
    local sliding = ARGV[2] == 'sliding'
    local need = tonumber(ARGV[3])
    local w = math.floor(now / W)
    local elapsed = now - w * W
    local cur = KEYS[2] .. w
    local r = tonumber(redis.call('HGET', cur, 'r') or 0)
    local tk = tonumber(redis.call('HGET', cur, 't') or 0)
    local pr, pt, weight = 0, 0, 0
    if sliding then
      local prev = KEYS[2] .. (w - 1)
      pr = tonumber(redis.call('HGET', prev, 'r') or 0)
      pt = tonumber(redis.call('HGET', prev, 't') or 0)
      weight = math.max(0, 1 - elapsed / W)
    end
    local verdict = 0
    if pr * weight + r + 1 > rpm then
      verdict = 1
    elseif pt * weight + tk + need > tpm then
      verdict = 2
    else
      redis.call('HINCRBY', cur, 'r', 1)
      redis.call('HINCRBY', cur, 't', need)
      redis.call('PEXPIRE', cur, W * 2000)
    end
    return {verdict, rpm, tpm, r, tk, pr, pt, tostring(now)}
    """

    static let adjustScript = """
    if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
    if ARGV[1] ~= '0' and redis.call('HINCRBY', KEYS[1], 't', ARGV[1]) < 0 then redis.call('HSET', KEYS[1], 't', 0) end
    if ARGV[2] ~= '0' and redis.call('HINCRBY', KEYS[1], 'r', ARGV[2]) < 0 then redis.call('HSET', KEYS[1], 'r', 0) end
    return 1
    """

    /// Admits `tokens` for `user`; `done` gets nil when the user has no
    /// record (not limited), or the admission. Runs on the connection's loop.
    public func admit(user: String, tokens: Int, on c: RedisConnection,
                      _ done: @escaping (Result<Admission?, RedisError>) -> Void) {
        c.send(["EVAL", Self.admitScript, "2", Self.userKey(user), counterPrefix(user), "\(windowSeconds)", mode.rawValue, "\(tokens)"]) { r in
            switch r {
            case .failure(let e): done(.failure(e))
            case .success(.array(let v)):
                guard let verdict = v.first?.int else { return done(.failure(.disconnected("unexpected reply \(v)"))) }
                if verdict < 0 { return done(.success(nil)) }  // -1 no record, -2 unreadable record: not limited
                guard v.count == 8, let rpm = v[1].int, let tpm = v[2].int, let cr = v[3].int, let ct = v[4].int,
                      let pr = v[5].int, let pt = v[6].int, let nowText = v[7].text, let now = Double(nowText) else {
                    return done(.failure(.disconnected("unexpected reply \(v)")))
                }
                let request = AdmissionRequest(user: UserLimits(name: user, rpm: Int(rpm), tpm: Int(tpm)), tokens: tokens, now: now)
                let math = LimitMath(windowSeconds: windowSeconds, mode: mode, now: now)
                let kind: LimitKind? = verdict == 1 ? .requests : verdict == 2 ? .tokens : nil
                done(.success(math.outcome(refusedBy: kind, prevRequests: Int(pr), requests: Int(cr), prevTokens: Int(pt),
                                           tokens: Int(ct), request: request)))
            case .success(.error(let e)): done(.failure(.disconnected("script error: \(e)")))
            case .success(let other): done(.failure(.disconnected("unexpected reply \(other)")))
            }
        }
    }

    /// Replaces a reservation's tokens with the real usage (fire and forget).
    public func settle(_ res: Reservation, actualTokens: Int, on c: RedisConnection) {
        adjust(res, tokens: actualTokens - res.tokens, requests: 0, on: c)
    }

    /// Gives back an admitted request that was never served.
    public func release(_ res: Reservation, on c: RedisConnection) {
        adjust(res, tokens: -res.tokens, requests: -1, on: c)
    }

    private func adjust(_ res: Reservation, tokens: Int, requests: Int, on c: RedisConnection) {
        guard tokens != 0 || requests != 0 else { return }
        c.send(["EVAL", Self.adjustScript, "1", counterPrefix(res.user) + "\(res.window)", "\(tokens)", "\(requests)"]) { _ in }
    }
}
