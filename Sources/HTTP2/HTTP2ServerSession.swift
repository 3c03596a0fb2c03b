internal import CNghttp2

/// An nghttp2 server session driven entirely in memory: feed it received
/// bytes, take the bytes it wants to send.
///
/// Ownership: this object owns the `nghttp2_session` and frees it in `deinit`.
/// Threading: confined to one thread (the connection's event loop); not Sendable.
/// Callbacks recover `self` from `user_data` (unretained: the session never
/// outlives its owner) and only record events or copy bytes.
public final class HTTP2ServerSession {
    private var session: OpaquePointer?
    fileprivate var events: [HTTP2ServerEvent] = []
    fileprivate var pendingHeaders: [Int32: [HTTP2Header]] = [:]
    fileprivate var outbound: [Int32: StreamOutbound] = [:]
    /// Streams to reset (NO_ERROR) once their trailers are on the wire.
    fileprivate var resetAfterTrailers: Set<Int32> = []
    /// Interned header values with their bytes, for `onHeader`.
    fileprivate let interned: [(bytes: [UInt8], string: String)]
    /// Filled by the frame-sent callback; acted on after mem_send returns.
    fileprivate var trailersSent: [Int32] = []

    struct StreamOutbound {
        var bytes: [UInt8] = []
        var offset = 0
        var trailers: HTTP2PreparedHeaders?
        var deferred = false
    }

    public init(settings: HTTP2Settings = HTTP2Settings()) throws(HTTP2Error) {
        interned = settings.internedValues.map { (Array($0.utf8), $0) }
        var callbacks: OpaquePointer?
        var rv = nghttp2_session_callbacks_new(&callbacks)
        guard rv == 0, let cbs = callbacks else { throw HTTP2Error(rv) }
        defer { nghttp2_session_callbacks_del(cbs) }
        nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, onBeginHeaders)
        nghttp2_session_callbacks_set_on_header_callback(cbs, onHeader)
        nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, onFrameRecv)
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, onDataChunk)
        nghttp2_session_callbacks_set_on_stream_close_callback(cbs, onStreamClose)
        nghttp2_session_callbacks_set_on_frame_send_callback(cbs, onFrameSend)

        var option: OpaquePointer?
        rv = nghttp2_option_new(&option)
        guard rv == 0, let opt = option else { throw HTTP2Error(rv) }
        defer { nghttp2_option_del(opt) }
        nghttp2_option_set_stream_reset_rate_limit(opt, settings.streamResetBurst, settings.streamResetRate)
        nghttp2_option_set_max_send_header_block_length(opt, 64 * 1024)

        var s: OpaquePointer?
        rv = nghttp2_session_server_new2(&s, cbs, Unmanaged.passUnretained(self).toOpaque(), opt)
        guard rv == 0, let made = s else { throw HTTP2Error(rv) }
        session = made

        var iv = [
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS.rawValue), value: settings.maxConcurrentStreams),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE.rawValue), value: settings.initialWindowSize),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE.rawValue), value: settings.maxHeaderListSize),
        ]
        rv = nghttp2_submit_settings(made, UInt8(NGHTTP2_FLAG_NONE.rawValue), &iv, iv.count)
        guard rv == 0 else { throw HTTP2Error(rv) }
        // Open the connection-level window as wide as the per-stream one so a
        // large body on one stream does not stall the others.
        _ = nghttp2_session_set_local_window_size(made, UInt8(NGHTTP2_FLAG_NONE.rawValue), 0, Int32(settings.initialWindowSize) * 4)
    }

    deinit {
        if let s = session { nghttp2_session_del(s) }
    }

    /// Feeds received bytes; returns what happened. Throws when the peer broke
    /// the protocol badly enough that the session must end (after `drainOutput`
    /// has sent the GOAWAY nghttp2 queued).
    public func receive(_ bytes: ArraySlice<UInt8>) throws(HTTP2Error) -> [HTTP2ServerEvent] {
        guard let s = session else { return [] }
        let rv = bytes.withUnsafeBufferPointer { buf in
            nghttp2_session_mem_recv(s, buf.baseAddress, buf.count)
        }
        let out = events
        events = []
        if rv < 0 { throw HTTP2Error(Int32(rv)) }
        return out
    }

    /// Appends everything nghttp2 wants to send to `sink`.
    public func drainOutput(into sink: (UnsafeRawBufferPointer) -> Void) throws(HTTP2Error) {
        guard let s = session else { return }
        while true {
            var ptr: UnsafePointer<UInt8>?
            let n = nghttp2_session_mem_send(s, &ptr)
            if n < 0 { throw HTTP2Error(Int32(n)) }
            if n == 0 {
                guard !trailersSent.isEmpty else { return }
                // Trailers of an early-ended stream went out: now stop the
                // client from sending more (RST_STREAM NO_ERROR, as gRPC does).
                for id in trailersSent where resetAfterTrailers.remove(id) != nil {
                    _ = nghttp2_submit_rst_stream(s, UInt8(NGHTTP2_FLAG_NONE.rawValue), id, 0)
                }
                trailersSent.removeAll()
                continue
            }
            sink(UnsafeRawBufferPointer(start: ptr, count: n))
        }
    }

    /// False once both sides are done (after GOAWAY and all streams closed).
    public var isAlive: Bool {
        guard let s = session else { return false }
        return nghttp2_session_want_read(s) != 0 || nghttp2_session_want_write(s) != 0
    }

    /// Sends response headers. With `body == false` the headers end the stream
    /// (a gRPC trailers-only response); otherwise a deferred data source is
    /// attached and bytes flow through `sendData` / `finish`.
    public func submitResponse(streamID: Int32, headers: [HTTP2Header], body: Bool) {
        submitResponse(streamID: streamID, headers: HTTP2PreparedHeaders(headers), body: body)
    }

    /// `submitResponse` with a header block built once and reused.
    public func submitResponse(streamID: Int32, headers: HTTP2PreparedHeaders, body: Bool) {
        guard let s = session else { return }
        if body {
            outbound[streamID] = StreamOutbound()
            var provider = nghttp2_data_provider(source: nghttp2_data_source(fd: streamID), read_callback: readData)
            _ = nghttp2_submit_response(s, streamID, headers.nva, headers.count, &provider)
        } else {
            _ = nghttp2_submit_response(s, streamID, headers.nva, headers.count, nil)
        }
    }

    /// Queues body bytes on a stream opened with `submitResponse(body: true)`,
    /// after an optional short prefix (a gRPC length prefix) without
    /// concatenating them first.
    public func sendData(streamID: Int32, prefix: [UInt8] = [], _ bytes: [UInt8]) {
        guard outbound[streamID] != nil else { return }
        outbound[streamID]!.bytes.append(contentsOf: prefix)
        outbound[streamID]!.bytes.append(contentsOf: bytes)
        resume(streamID)
    }

    /// Ends a body stream with trailers, after the queued bytes. With
    /// `resetAfter`, the stream is reset with NO_ERROR once the trailers are
    /// sent (for a server that ends an RPC before the client half-closed).
    public func finish(streamID: Int32, trailers: HTTP2PreparedHeaders, resetAfter: Bool = false) {
        guard outbound[streamID] != nil else { return }
        if resetAfter { resetAfterTrailers.insert(streamID) }
        outbound[streamID]!.trailers = trailers
        resume(streamID)
    }

    /// Resets the stream once its (trailers-only) response headers are sent.
    public func resetAfterHeaders(streamID: Int32) {
        resetAfterTrailers.insert(streamID)
    }

    private func resume(_ streamID: Int32) {
        guard let s = session, outbound[streamID]?.deferred == true else { return }
        outbound[streamID]!.deferred = false
        _ = nghttp2_session_resume_data(s, streamID)
    }

    /// Graceful-shutdown step 1: a GOAWAY with the maximum stream id.
    public func submitShutdownNotice() {
        guard let s = session else { return }
        _ = nghttp2_submit_shutdown_notice(s)
    }

    /// Final GOAWAY naming the last stream processed; the session ends once
    /// those streams close.
    public func submitGoaway(errorCode: UInt32 = 0, debug: String = "") {
        guard let s = session else { return }
        let last = nghttp2_session_get_last_proc_stream_id(s)
        var d = Array(debug.utf8)
        _ = nghttp2_submit_goaway(s, UInt8(NGHTTP2_FLAG_NONE.rawValue), last, errorCode, &d, d.count)
    }

    /// Sends a PING (keepalive); the ack arrives as `.pingAck`.
    public func submitPing() {
        guard let s = session else { return }
        _ = nghttp2_submit_ping(s, UInt8(NGHTTP2_FLAG_NONE.rawValue), nil)
    }

    // MARK: callback bodies (called only from the file-level callbacks below)

    fileprivate func fillData(streamID: Int32, into buf: UnsafeMutablePointer<UInt8>, length: Int, flags: UnsafeMutablePointer<UInt32>) -> Int {
        guard var o = outbound[streamID] else {
            flags.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue
            return 0
        }
        let available = o.bytes.count - o.offset
        if available > 0 {
            let n = min(available, length)
            o.bytes.withUnsafeBufferPointer { src in
                buf.update(from: src.baseAddress! + o.offset, count: n)
            }
            o.offset += n
            if o.offset == o.bytes.count {
                o.bytes.removeAll(keepingCapacity: true)
                o.offset = 0
            }
            if o.offset == 0, o.bytes.isEmpty, let t = o.trailers {
                flags.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue | NGHTTP2_DATA_FLAG_NO_END_STREAM.rawValue
                outbound[streamID] = nil
                submitTrailer(streamID, t)
                return n
            }
            outbound[streamID] = o
            return n
        }
        if let t = o.trailers {
            flags.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue | NGHTTP2_DATA_FLAG_NO_END_STREAM.rawValue
            outbound[streamID] = nil
            submitTrailer(streamID, t)
            return 0
        }
        o.deferred = true
        outbound[streamID] = o
        return Int(NGHTTP2_ERR_DEFERRED.rawValue)
    }

    private func submitTrailer(_ streamID: Int32, _ trailers: HTTP2PreparedHeaders) {
        guard let s = session else { return }
        _ = nghttp2_submit_trailer(s, streamID, trailers.nva, trailers.count)
    }

    fileprivate func streamClosed(_ id: Int32, _ code: UInt32) {
        outbound[id] = nil
        resetAfterTrailers.remove(id)
        pendingHeaders[id] = nil
        events.append(.streamClosed(streamID: id, errorCode: code))
    }
}

@inline(__always)
private func owner(_ userData: UnsafeMutableRawPointer?) -> HTTP2ServerSession {
    Unmanaged<HTTP2ServerSession>.fromOpaque(userData!).takeUnretainedValue()
}

private func onBeginHeaders(_ session: OpaquePointer?, _ frame: UnsafePointer<nghttp2_frame>?, _ userData: UnsafeMutableRawPointer?) -> Int32 {
    guard let f = frame else { return 0 }
    let o = owner(userData)
    if f.pointee.hd.type == UInt8(NGHTTP2_HEADERS.rawValue), f.pointee.headers.cat == NGHTTP2_HCAT_REQUEST {
        o.pendingHeaders[f.pointee.hd.stream_id] = []
    }
    return 0
}

private func onHeader(_ session: OpaquePointer?, _ frame: UnsafePointer<nghttp2_frame>?,
                      _ name: UnsafePointer<UInt8>?, _ namelen: Int,
                      _ value: UnsafePointer<UInt8>?, _ valuelen: Int,
                      _ flags: UInt8, _ userData: UnsafeMutableRawPointer?) -> Int32 {
    guard let f = frame, let name, let value else { return 0 }
    let o = owner(userData)
    let id = f.pointee.hd.stream_id
    guard o.pendingHeaders[id] != nil else { return 0 }  // trailers: content not needed
    let n = String(decoding: UnsafeBufferPointer(start: name, count: namelen), as: UTF8.self)
    let raw = UnsafeBufferPointer(start: value, count: valuelen)
    var known: String?
    for entry in o.interned where entry.bytes.count == valuelen && entry.bytes.elementsEqual(raw) {
        known = entry.string
        break
    }
    let v = known ?? String(decoding: raw, as: UTF8.self)
    o.pendingHeaders[id]!.append(HTTP2Header(n, v))
    return 0
}

private func onFrameRecv(_ session: OpaquePointer?, _ frame: UnsafePointer<nghttp2_frame>?, _ userData: UnsafeMutableRawPointer?) -> Int32 {
    guard let f = frame else { return 0 }
    let o = owner(userData)
    let id = f.pointee.hd.stream_id
    let endStream = (f.pointee.hd.flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue)) != 0
    switch UInt32(f.pointee.hd.type) {
    case NGHTTP2_HEADERS.rawValue:
        if let h = o.pendingHeaders.removeValue(forKey: id) {
            o.events.append(.requestHeaders(streamID: id, headers: h, endStream: endStream))
        } else if endStream {
            o.events.append(.endStream(streamID: id))
        }
    case NGHTTP2_DATA.rawValue:
        if endStream { o.events.append(.endStream(streamID: id)) }
    case NGHTTP2_GOAWAY.rawValue:
        o.events.append(.goaway(errorCode: f.pointee.goaway.error_code))
    case NGHTTP2_PING.rawValue:
        if (f.pointee.hd.flags & UInt8(NGHTTP2_FLAG_ACK.rawValue)) != 0 { o.events.append(.pingAck) }
    case NGHTTP2_SETTINGS.rawValue:
        if (f.pointee.hd.flags & UInt8(NGHTTP2_FLAG_ACK.rawValue)) == 0 { o.events.append(.settings) }
    default:
        break
    }
    return 0
}

private func onFrameSend(_ session: OpaquePointer?, _ frame: UnsafePointer<nghttp2_frame>?, _ userData: UnsafeMutableRawPointer?) -> Int32 {
    guard let f = frame, f.pointee.hd.type == UInt8(NGHTTP2_HEADERS.rawValue),
          (f.pointee.hd.flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue)) != 0 else { return 0 }
    let o = owner(userData)
    if o.resetAfterTrailers.contains(f.pointee.hd.stream_id) { o.trailersSent.append(f.pointee.hd.stream_id) }
    return 0
}

private func onDataChunk(_ session: OpaquePointer?, _ flags: UInt8, _ streamID: Int32,
                         _ data: UnsafePointer<UInt8>?, _ len: Int, _ userData: UnsafeMutableRawPointer?) -> Int32 {
    guard let data, len > 0 else { return 0 }
    owner(userData).events.append(.data(streamID: streamID, bytes: Array(UnsafeBufferPointer(start: data, count: len))))
    return 0
}

private func onStreamClose(_ session: OpaquePointer?, _ streamID: Int32, _ errorCode: UInt32, _ userData: UnsafeMutableRawPointer?) -> Int32 {
    owner(userData).streamClosed(streamID, errorCode)
    return 0
}

private func readData(_ session: OpaquePointer?, _ streamID: Int32, _ buf: UnsafeMutablePointer<UInt8>?, _ length: Int,
                      _ flags: UnsafeMutablePointer<UInt32>?, _ source: UnsafeMutablePointer<nghttp2_data_source>?,
                      _ userData: UnsafeMutableRawPointer?) -> Int {
    guard let buf, let flags else { return Int(NGHTTP2_ERR_CALLBACK_FAILURE.rawValue) }
    return owner(userData).fillData(streamID: streamID, into: buf, length: length, flags: flags)
}
