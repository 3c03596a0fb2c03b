internal import CSystem
import Glibc

/// Host names to IPv4 addresses (getaddrinfo). Blocking: call it from a
/// thread of its own, never from an event loop.
public enum Resolver {
    /// True for a dotted IPv4 literal (nothing to resolve).
    public static func isIPv4Literal(_ host: String) -> Bool {
        let parts = host.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts.allSatisfy { p in UInt8(p) != nil }
    }

    /// The first IPv4 address of `host`, or why there is none.
    public static func ipv4(_ host: String) -> Result<String, AddressError> {
        if isIPv4Literal(host) { return .success(host) }
        var buf = [CChar](repeating: 0, count: 64)
        let rc = buf.withUnsafeMutableBufferPointer { csys_resolve_ipv4(host, $0.baseAddress, $0.count) }
        guard rc == 0 else { return .failure(AddressError(host, String(cString: gai_strerror(rc)))) }
        return .success(String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
    }
}
