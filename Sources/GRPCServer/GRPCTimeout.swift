/// Parses a `grpc-timeout` header value: up to 8 ASCII digits and a unit
/// (H, M, S, m, u, n). Returns nanoseconds, or nil when malformed.
public func parseGRPCTimeout(_ value: String) -> UInt64? {
    let u = Array(value.utf8)
    guard u.count >= 2, u.count <= 9 else { return nil }
    var n: UInt64 = 0
    for d in u.dropLast() {
        guard d >= 0x30 && d <= 0x39 else { return nil }
        n = n * 10 + UInt64(d - 0x30)
    }
    let mult: UInt64
    switch u.last! {
    case UInt8(ascii: "H"): mult = 3_600_000_000_000
    case UInt8(ascii: "M"): mult = 60_000_000_000
    case UInt8(ascii: "S"): mult = 1_000_000_000
    case UInt8(ascii: "m"): mult = 1_000_000
    case UInt8(ascii: "u"): mult = 1_000
    case UInt8(ascii: "n"): mult = 1
    default: return nil
    }
    let (r, overflow) = n.multipliedReportingOverflow(by: mult)
    return overflow ? UInt64.max : r
}
