internal import CNghttp2

/// A header block laid out once as an nghttp2_nv array over one flat byte
/// buffer, for the blocks a server sends on every stream (gRPC response
/// headers, the OK trailers). nghttp2 copies names and values during each
/// submit call, so one instance can serve any number of streams.
///
/// Immutable after init and freed in deinit; the raw buffers are never
/// written after construction, which makes the `@unchecked Sendable` sound.
public final class HTTP2PreparedHeaders: @unchecked Sendable {
    let nva: UnsafeMutablePointer<nghttp2_nv>
    let count: Int
    private let bytes: UnsafeMutablePointer<UInt8>

    public init(_ headers: [HTTP2Header]) {
        let total = headers.reduce(0) { $0 + $1.name.utf8.count + $1.value.utf8.count }
        bytes = .allocate(capacity: max(total, 1))
        nva = .allocate(capacity: max(headers.count, 1))
        count = headers.count
        var at = 0
        for (i, h) in headers.enumerated() {
            let name = bytes + at
            for b in h.name.utf8 { bytes[at] = b; at += 1 }
            let value = bytes + at
            for b in h.value.utf8 { bytes[at] = b; at += 1 }
            nva[i] = nghttp2_nv(name: name, value: value, namelen: h.name.utf8.count, valuelen: h.value.utf8.count,
                                flags: UInt8(NGHTTP2_NV_FLAG_NONE.rawValue))
        }
    }

    deinit {
        bytes.deallocate()
        nva.deallocate()
    }
}
