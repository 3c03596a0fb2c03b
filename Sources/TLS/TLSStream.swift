internal import COpenSSL
import Glibc

/// Why a TLS connection failed, with OpenSSL's own words where it had some.
public struct TLSError: Error, CustomStringConvertible, Sendable {
    public let message: String
    init(_ what: String) {
        var detail: [String] = []
        while true {
            let e = ERR_get_error()
            if e == 0 { break }
            var buf = [CChar](repeating: 0, count: 256)
            ERR_error_string_n(e, &buf, buf.count)
            detail.append(String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        message = detail.isEmpty ? what : "\(what): \(detail.joined(separator: "; "))"
    }
    public var description: String { message }
}

/// What a TLS client trusts and presents.
public struct TLSConfiguration: Sendable {
    /// PEM bundle of trusted CAs; nil uses the system store.
    public var trustedCAsPEM: [UInt8]?
    /// Name checked against the server certificate (DNS name or IP literal); also sent as SNI for names.
    public var serverName: String
    public init(trustedCAsPEM: [UInt8]?, serverName: String) {
        self.trustedCAsPEM = trustedCAsPEM
        self.serverName = serverName
    }
}

/// A blocking TLS 1.2+ client connection for control-plane work (the
/// Kubernetes API), used from one thread. The certificate chain and the
/// server name are verified; any failure throws with OpenSSL's reason.
///
/// Ownership: owns the socket, the SSL_CTX and the SSL; `close()` (or
/// deinit) frees them. Not Sendable: one thread at a time.
public final class TLSStream {
    private var fd: Int32 = -1
    private var ctx: OpaquePointer?
    private var ssl: OpaquePointer?

    public init(host: String, port: Int, configuration: TLSConfiguration, timeoutSeconds: Double) throws(TLSError) {
        fd = try Self.connect(host: host, port: port, timeoutSeconds: timeoutSeconds)
        guard let c = SSL_CTX_new(TLS_client_method()) else { close(); throw TLSError("SSL_CTX_new") }
        ctx = c
        _ = COpenSSL_min_tls12(c)
        SSL_CTX_set_verify(c, SSL_VERIFY_PEER, nil)
        if let pem = configuration.trustedCAsPEM {
            let store = SSL_CTX_get_cert_store(c)
            let bio = pem.withUnsafeBytes { BIO_new_mem_buf($0.baseAddress, Int32($0.count)) }
            defer { BIO_free(bio) }
            var added = 0
            while let cert = PEM_read_bio_X509(bio, nil, nil, nil) {
                X509_STORE_add_cert(store, cert)
                X509_free(cert)
                added += 1
            }
            ERR_clear_error()  // the loop ends on a "no start line" error
            guard added > 0 else { close(); throw TLSError("no certificate in the CA bundle") }
        } else {
            SSL_CTX_set_default_verify_paths(c)
        }
        guard let s = SSL_new(c) else { close(); throw TLSError("SSL_new") }
        ssl = s
        let name = configuration.serverName
        if Self.isIPLiteral(name) {
            guard X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(s), name) == 1 else { close(); throw TLSError("bad IP \(name)") }
        } else {
            _ = COpenSSL_set_sni(s, name)
            guard SSL_set1_host(s, name) == 1 else { close(); throw TLSError("bad host name \(name)") }
        }
        SSL_set_fd(s, fd)
        if SSL_connect(s) != 1 {
            let verify = SSL_get_verify_result(s)
            let reason = verify != X509_V_OK
                ? "certificate verification failed: \(String(cString: X509_verify_cert_error_string(verify)))"
                : "TLS handshake with \(host):\(port) failed"
            close()
            throw TLSError(reason)
        }
    }

    deinit { close() }

    /// Writes everything or throws.
    public func write(_ bytes: [UInt8]) throws(TLSError) {
        guard let s = ssl else { throw TLSError("connection closed") }
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { SSL_write(s, $0.baseAddress! + off, Int32($0.count - off)) }
            if n <= 0 { throw TLSError("TLS write failed") }
            off += Int(n)
        }
    }

    /// Reads up to `max` bytes; an empty result means the peer closed. A
    /// read timeout (the socket's receive timeout) throws.
    public func read(max: Int = 64 * 1024) throws(TLSError) -> [UInt8] {
        guard let s = ssl else { return [] }
        var buf = [UInt8](repeating: 0, count: max)
        let n = buf.withUnsafeMutableBytes { SSL_read(s, $0.baseAddress, Int32($0.count)) }
        if n > 0 { return Array(buf[0..<Int(n)]) }
        let e = SSL_get_error(s, n)
        if e == SSL_ERROR_ZERO_RETURN { return [] }
        if e == SSL_ERROR_SYSCALL && (errno == EAGAIN || errno == EWOULDBLOCK) { throw TLSError("read timed out") }
        if e == SSL_ERROR_SYSCALL && n == 0 { return [] }  // EOF without close_notify
        throw TLSError("TLS read failed")
    }

    public func close() {
        if let s = ssl { SSL_free(s); ssl = nil }
        if let c = ctx { SSL_CTX_free(c); ctx = nil }
        if fd >= 0 { Glibc.close(fd); fd = -1 }
    }

    static func isIPLiteral(_ s: String) -> Bool {
        var a4 = in_addr(), a6 = in6_addr()
        return inet_pton(AF_INET, s, &a4) == 1 || inet_pton(AF_INET6, s, &a6) == 1
    }

    /// Blocking TCP connect (getaddrinfo, first address that answers) with send/receive timeouts.
    static func connect(host: String, port: Int, timeoutSeconds: Double) throws(TLSError) -> Int32 {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var res: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, String(port), &hints, &res)
        guard rc == 0, let first = res else { throw TLSError("cannot resolve \(host): \(String(cString: gai_strerror(rc)))") }
        defer { freeaddrinfo(first) }
        var lastErr: Int32 = 0
        var p: UnsafeMutablePointer<addrinfo>? = first
        while let ai = p {
            let fd = socket(ai.pointee.ai_family, ai.pointee.ai_socktype | Int32(SOCK_CLOEXEC.rawValue), ai.pointee.ai_protocol)
            if fd >= 0 {
                var tv = timeval(tv_sec: Int(timeoutSeconds), tv_usec: Int((timeoutSeconds - Double(Int(timeoutSeconds))) * 1e6))
                _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
                _ = setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
                if Glibc.connect(fd, ai.pointee.ai_addr, ai.pointee.ai_addrlen) == 0 { return fd }
                lastErr = errno
                Glibc.close(fd)
            }
            p = ai.pointee.ai_next
        }
        throw TLSError("connect to \(host):\(port) failed: \(String(cString: strerror(lastErr)))")
    }
}
