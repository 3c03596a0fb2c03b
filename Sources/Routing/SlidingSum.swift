/// A sum over a sliding window of whole seconds, as a ring of per-second
/// buckets; buckets leave the window exactly once, looking only at the
/// seconds elapsed since the last look. (vtc-basic's user windows,
/// prefix-cache-preble's pod loads.)
struct SlidingSum {
    var buckets: [Double]
    var seconds: [Int]
    var total: Double = 0
    /// Every second up to this one has been checked for expiry.
    var swept: Int

    init(size: Int, now: Int) {
        buckets = Array(repeating: 0, count: size)
        seconds = Array(repeating: -1, count: size)
        swept = now
    }

    mutating func add(_ tokens: Double, at second: Int) {
        expire(now: second)
        let i = second % buckets.count
        if seconds[i] != second {
            total -= buckets[i]
            buckets[i] = 0
            seconds[i] = second
        }
        buckets[i] += tokens
        total += tokens
    }

    /// Drops the buckets that left the window since the last sweep: a
    /// bucket of second t leaves once t <= now - size, so only the
    /// seconds elapsed since then are looked at (the whole ring at most).
    mutating func expire(now: Int) {
        guard now > swept else { return }
        let size = buckets.count
        if now - swept >= size {
            for i in buckets.indices where seconds[i] >= 0 && seconds[i] <= now - size { clear(i) }
        } else {
            for t in max(0, swept - size + 1)...max(0, now - size) where t <= now - size && seconds[t % size] == t {
                clear(t % size)
            }
        }
        swept = now
        if total < 0 { total = 0 }
    }

    private mutating func clear(_ i: Int) {
        total -= buckets[i]
        buckets[i] = 0
        seconds[i] = -1
    }
}
