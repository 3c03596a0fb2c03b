internal import CExtProcProto
internal import CProtobufC

/// A message that libprotobuf-c could not decode.
public struct ExtProcCodecError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public var description: String { message }
}

/// Converts ext_proc messages between Swift values and protobuf wire bytes
/// using the protobuf-c code generated from `proto/` (scripts/gen-proto).
///
/// All C structs live only inside these functions: decoded messages are
/// copied into Swift values and freed before returning; encoded messages are
/// built in a `CArena` that frees everything when the call ends.
public enum ExtProcCodec {
    // MARK: ProcessingRequest

    /// Decodes a ProcessingRequest. Unknown fields are skipped (protobuf rules).
    public static func decodeRequest(_ bytes: [UInt8]) throws(ExtProcCodecError) -> ProcessingRequest {
        try decodeRequest(bytes[...])
    }

    /// Decodes a ProcessingRequest from a slice (a gRPC message inside a received chunk).
    public static func decodeRequest(_ bytes: ArraySlice<UInt8>) throws(ExtProcCodecError) -> ProcessingRequest {
        // protobuf-c allocates every submessage, string and byte field; the
        // arena makes that one bump allocation, freed in one go (no
        // free_unpacked walk).
        let arena = CArena()
        let msg = arena.withAllocator { allocator in
            bytes.withUnsafeBufferPointer { buf in
                envoy__service__ext_proc__v3__processing_request__unpack(allocator, buf.count, buf.baseAddress)
            }
        }
        guard let m = msg else { throw ExtProcCodecError(message: "ProcessingRequest: invalid protobuf (\(bytes.count) bytes)") }
        var out = ProcessingRequest(phase: nil, observabilityMode: m.pointee.observability_mode != 0)
        if let pc = m.pointee.protocol_config {
            out.requestBodyMode = BodySendMode(rawValue: Int(pc.pointee.request_body_mode.rawValue))
            out.responseBodyMode = BodySendMode(rawValue: Int(pc.pointee.response_body_mode.rawValue))
        }
        switch m.pointee.request_case {
        case ENVOY__SERVICE__EXT_PROC__V3__PROCESSING_REQUEST__REQUEST_REQUEST_HEADERS:
            out.phase = .requestHeaders(headers(m.pointee.request_headers))
        case ENVOY__SERVICE__EXT_PROC__V3__PROCESSING_REQUEST__REQUEST_RESPONSE_HEADERS:
            out.phase = .responseHeaders(headers(m.pointee.response_headers))
        case ENVOY__SERVICE__EXT_PROC__V3__PROCESSING_REQUEST__REQUEST_REQUEST_BODY:
            out.phase = .requestBody(body(m.pointee.request_body))
        case ENVOY__SERVICE__EXT_PROC__V3__PROCESSING_REQUEST__REQUEST_RESPONSE_BODY:
            out.phase = .responseBody(body(m.pointee.response_body))
        case ENVOY__SERVICE__EXT_PROC__V3__PROCESSING_REQUEST__REQUEST_REQUEST_TRAILERS:
            out.phase = .requestTrailers(headerMap(m.pointee.request_trailers?.pointee.trailers))
        case ENVOY__SERVICE__EXT_PROC__V3__PROCESSING_REQUEST__REQUEST_RESPONSE_TRAILERS:
            out.phase = .responseTrailers(headerMap(m.pointee.response_trailers?.pointee.trailers))
        default:
            out.phase = nil
        }
        return out
    }

    /// Encodes a ProcessingRequest (used by tests and load generators, the
    /// way Envoy would send it).
    public static func encodeRequest(_ r: ProcessingRequest) -> [UInt8] {
        let a = CArena()
        let m = a.make(Envoy__Service__ExtProc__V3__ProcessingRequest.self, envoy__service__ext_proc__v3__processing_request__init)
        m.pointee.observability_mode = r.observabilityMode ? 1 : 0
        if r.requestBodyMode != nil || r.responseBodyMode != nil {
            let pc = a.make(Envoy__Service__ExtProc__V3__ProtocolConfiguration.self, envoy__service__ext_proc__v3__protocol_configuration__init)
            pc.pointee.request_body_mode = .init(UInt32(r.requestBodyMode?.rawValue ?? 0))
            pc.pointee.response_body_mode = .init(UInt32(r.responseBodyMode?.rawValue ?? 0))
            m.pointee.protocol_config = pc
        }
        switch r.phase {
        case .requestHeaders(let h):
            m.pointee.request_case = ENVOY__SERVICE__EXT_PROC__V3__PROCESSING_REQUEST__REQUEST_REQUEST_HEADERS
            m.pointee.request_headers = makeHeaders(a, h)
        case .responseHeaders(let h):
            m.pointee.request_case = ENVOY__SERVICE__EXT_PROC__V3__PROCESSING_REQUEST__REQUEST_RESPONSE_HEADERS
            m.pointee.response_headers = makeHeaders(a, h)
        case .requestBody(let b):
            m.pointee.request_case = ENVOY__SERVICE__EXT_PROC__V3__PROCESSING_REQUEST__REQUEST_REQUEST_BODY
            m.pointee.request_body = makeBody(a, b)
        case .responseBody(let b):
            m.pointee.request_case = ENVOY__SERVICE__EXT_PROC__V3__PROCESSING_REQUEST__REQUEST_RESPONSE_BODY
            m.pointee.response_body = makeBody(a, b)
        case .requestTrailers(let t):
            m.pointee.request_case = ENVOY__SERVICE__EXT_PROC__V3__PROCESSING_REQUEST__REQUEST_REQUEST_TRAILERS
            m.pointee.request_trailers = makeTrailers(a, t)
        case .responseTrailers(let t):
            m.pointee.request_case = ENVOY__SERVICE__EXT_PROC__V3__PROCESSING_REQUEST__REQUEST_RESPONSE_TRAILERS
            m.pointee.response_trailers = makeTrailers(a, t)
        case nil:
            break
        }
        return pack(m, envoy__service__ext_proc__v3__processing_request__get_packed_size,
                    envoy__service__ext_proc__v3__processing_request__pack)
    }

    // MARK: ProcessingResponse

    /// Encodes a ProcessingResponse for Envoy.
    public static func encodeResponse(_ r: ProcessingResponse) -> [UInt8] {
        let a = CArena()
        let m = a.make(Envoy__Service__ExtProc__V3__ProcessingResponse.self, envoy__service__ext_proc__v3__processing_response__init)
        if let o = r.modeOverride {
            let pm = a.make(Envoy__Extensions__Filters__Http__ExtProc__V3__ProcessingMode.self,
                            envoy__extensions__filters__http__ext_proc__v3__processing_mode__init)
            pm.pointee.request_header_mode = .init(UInt32(o.requestHeaderMode.rawValue))
            pm.pointee.response_header_mode = .init(UInt32(o.responseHeaderMode.rawValue))
            pm.pointee.request_body_mode = .init(UInt32(o.requestBodyMode.rawValue))
            pm.pointee.response_body_mode = .init(UInt32(o.responseBodyMode.rawValue))
            pm.pointee.request_trailer_mode = .init(UInt32(o.requestTrailerMode.rawValue))
            pm.pointee.response_trailer_mode = .init(UInt32(o.responseTrailerMode.rawValue))
            m.pointee.mode_override = pm
        }
        if let md = r.dynamicMetadata, !md.isEmpty {
            m.pointee.dynamic_metadata = makeStruct(a, md.sorted { $0.key < $1.key }.map { ns, kv in
                (ns, .nested(kv.sorted { $0.key < $1.key }.map { ($0.key, .text($0.value)) }))
            })
        }
        switch r.reply {
        case .requestHeaders(let c):
            m.pointee.response_case = ENVOY__SERVICE__EXT_PROC__V3__PROCESSING_RESPONSE__RESPONSE_REQUEST_HEADERS
            m.pointee.request_headers = makeHeadersResponse(a, c)
        case .responseHeaders(let c):
            m.pointee.response_case = ENVOY__SERVICE__EXT_PROC__V3__PROCESSING_RESPONSE__RESPONSE_RESPONSE_HEADERS
            m.pointee.response_headers = makeHeadersResponse(a, c)
        case .requestBody(let c):
            m.pointee.response_case = ENVOY__SERVICE__EXT_PROC__V3__PROCESSING_RESPONSE__RESPONSE_REQUEST_BODY
            m.pointee.request_body = makeBodyResponse(a, c)
        case .responseBody(let c):
            m.pointee.response_case = ENVOY__SERVICE__EXT_PROC__V3__PROCESSING_RESPONSE__RESPONSE_RESPONSE_BODY
            m.pointee.response_body = makeBodyResponse(a, c)
        case .requestTrailers(let hm):
            m.pointee.response_case = ENVOY__SERVICE__EXT_PROC__V3__PROCESSING_RESPONSE__RESPONSE_REQUEST_TRAILERS
            m.pointee.request_trailers = makeTrailersResponse(a, hm)
        case .responseTrailers(let hm):
            m.pointee.response_case = ENVOY__SERVICE__EXT_PROC__V3__PROCESSING_RESPONSE__RESPONSE_RESPONSE_TRAILERS
            m.pointee.response_trailers = makeTrailersResponse(a, hm)
        case .immediate(let ir):
            m.pointee.response_case = ENVOY__SERVICE__EXT_PROC__V3__PROCESSING_RESPONSE__RESPONSE_IMMEDIATE_RESPONSE
            let i = a.make(Envoy__Service__ExtProc__V3__ImmediateResponse.self, envoy__service__ext_proc__v3__immediate_response__init)
            let st = a.make(Envoy__Type__V3__HttpStatus.self, envoy__type__v3__http_status__init)
            st.pointee.code = .init(UInt32(ir.status))
            i.pointee.status = st
            if !ir.headers.isEmpty { i.pointee.headers = makeMutation(a, ir.headers) }
            i.pointee.body = a.binary(ir.body)
            if !ir.details.isEmpty { i.pointee.details = a.cString(ir.details) }
            m.pointee.immediate_response = i
        }
        return pack(m, envoy__service__ext_proc__v3__processing_response__get_packed_size,
                    envoy__service__ext_proc__v3__processing_response__pack)
    }

    /// Decodes a ProcessingResponse (tests and load generators use it to
    /// check what the processor sent).
    public static func decodeResponse(_ bytes: [UInt8]) throws(ExtProcCodecError) -> ProcessingResponse {
        let arena = CArena()
        let msg = arena.withAllocator { allocator in
            bytes.withUnsafeBufferPointer { buf in
                envoy__service__ext_proc__v3__processing_response__unpack(allocator, buf.count, buf.baseAddress)
            }
        }
        guard let m = msg else { throw ExtProcCodecError(message: "ProcessingResponse: invalid protobuf") }
        var override: ProcessingModeOverride?
        if let pm = m.pointee.mode_override {
            override = ProcessingModeOverride(
                requestHeaderMode: HeaderSendMode(rawValue: Int(pm.pointee.request_header_mode.rawValue)) ?? .default,
                responseHeaderMode: HeaderSendMode(rawValue: Int(pm.pointee.response_header_mode.rawValue)) ?? .default,
                requestBodyMode: BodySendMode(rawValue: Int(pm.pointee.request_body_mode.rawValue)) ?? .none,
                responseBodyMode: BodySendMode(rawValue: Int(pm.pointee.response_body_mode.rawValue)) ?? .none,
                requestTrailerMode: HeaderSendMode(rawValue: Int(pm.pointee.request_trailer_mode.rawValue)) ?? .default,
                responseTrailerMode: HeaderSendMode(rawValue: Int(pm.pointee.response_trailer_mode.rawValue)) ?? .default)
        }
        let reply: ProcessingReply
        switch m.pointee.response_case {
        case ENVOY__SERVICE__EXT_PROC__V3__PROCESSING_RESPONSE__RESPONSE_REQUEST_HEADERS:
            reply = .requestHeaders(common(m.pointee.request_headers?.pointee.response))
        case ENVOY__SERVICE__EXT_PROC__V3__PROCESSING_RESPONSE__RESPONSE_RESPONSE_HEADERS:
            reply = .responseHeaders(common(m.pointee.response_headers?.pointee.response))
        case ENVOY__SERVICE__EXT_PROC__V3__PROCESSING_RESPONSE__RESPONSE_REQUEST_BODY:
            reply = .requestBody(common(m.pointee.request_body?.pointee.response))
        case ENVOY__SERVICE__EXT_PROC__V3__PROCESSING_RESPONSE__RESPONSE_RESPONSE_BODY:
            reply = .responseBody(common(m.pointee.response_body?.pointee.response))
        case ENVOY__SERVICE__EXT_PROC__V3__PROCESSING_RESPONSE__RESPONSE_REQUEST_TRAILERS:
            reply = .requestTrailers(m.pointee.request_trailers?.pointee.header_mutation.map(mutation))
        case ENVOY__SERVICE__EXT_PROC__V3__PROCESSING_RESPONSE__RESPONSE_RESPONSE_TRAILERS:
            reply = .responseTrailers(m.pointee.response_trailers?.pointee.header_mutation.map(mutation))
        case ENVOY__SERVICE__EXT_PROC__V3__PROCESSING_RESPONSE__RESPONSE_IMMEDIATE_RESPONSE:
            guard let i = m.pointee.immediate_response else { throw ExtProcCodecError(message: "empty immediate_response") }
            reply = .immediate(ImmediateResponse(
                status: Int(i.pointee.status?.pointee.code.rawValue ?? 0),
                headers: i.pointee.headers.map(mutation) ?? HeaderMutation(),
                body: bytesOf(i.pointee.body),
                details: string(i.pointee.details)))
        default:
            throw ExtProcCodecError(message: "ProcessingResponse without a response")
        }
        var metadata: [String: [String: String]]?
        if let st = m.pointee.dynamic_metadata {
            var md: [String: [String: String]] = [:]
            for (ns, value) in entries(st) {
                guard let v = value, v.pointee.kind_case == GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE,
                      let inner = v.pointee.struct_value else { continue }
                var kv: [String: String] = [:]
                for (k, iv) in entries(inner) where iv?.pointee.kind_case == GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE {
                    kv[k] = string(iv!.pointee.string_value)
                }
                md[ns] = kv
            }
            metadata = md
        }
        return ProcessingResponse(reply, modeOverride: override, dynamicMetadata: metadata)
    }

    /// A Struct's (key, value) entries.
    private static func entries(_ st: UnsafeMutablePointer<Google__Protobuf__Struct>)
        -> [(String, UnsafeMutablePointer<Google__Protobuf__Value>?)] {
        (0..<st.pointee.n_fields).compactMap { i in
            st.pointee.fields[i].map { (string($0.pointee.key), $0.pointee.value) }
        }
    }

    /// What a Struct field holds when the gateway writes one.
    private indirect enum StructValue {
        case text(String)
        case nested([(String, StructValue)])
    }

    private static func makeStruct(_ a: CArena, _ fields: [(String, StructValue)])
        -> UnsafeMutablePointer<Google__Protobuf__Struct> {
        let st = a.make(Google__Protobuf__Struct.self, google__protobuf__struct__init)
        let arr = a.array(UnsafeMutablePointer<Google__Protobuf__Struct__FieldsEntry>.self, count: fields.count)
        for (i, (key, value)) in fields.enumerated() {
            let e = a.make(Google__Protobuf__Struct__FieldsEntry.self, google__protobuf__struct__fields_entry__init)
            e.pointee.key = a.cString(key)
            let v = a.make(Google__Protobuf__Value.self, google__protobuf__value__init)
            switch value {
            case .text(let s):
                v.pointee.kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE
                v.pointee.string_value = a.cString(s)
            case .nested(let inner):
                v.pointee.kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE
                v.pointee.struct_value = makeStruct(a, inner)
            }
            e.pointee.value = v
            arr[i] = e
        }
        st.pointee.n_fields = fields.count
        st.pointee.fields = arr
        return st
    }

    // MARK: C -> Swift

    private static func string(_ p: UnsafeMutablePointer<CChar>?) -> String {
        guard let p else { return "" }
        return String(cString: p)
    }

    private static func bytesOf(_ b: ProtobufCBinaryData) -> [UInt8] {
        guard b.len > 0, let d = b.data else { return [] }
        return Array(UnsafeBufferPointer(start: d, count: b.len))
    }

    private static func headerMap(_ map: UnsafeMutablePointer<Envoy__Config__Core__V3__HeaderMap>?) -> [HeaderField] {
        guard let map, map.pointee.n_headers > 0, let hs = map.pointee.headers else { return [] }
        var out: [HeaderField] = []
        out.reserveCapacity(map.pointee.n_headers)
        for i in 0..<map.pointee.n_headers {
            guard let h = hs[i] else { continue }
            let key = string(h.pointee.key)
            let raw = h.pointee.raw_value
            let value: String
            if raw.len > 0, let d = raw.data {
                value = String(decoding: UnsafeBufferPointer(start: d, count: raw.len), as: UTF8.self)
            } else {
                value = string(h.pointee.value)
            }
            out.append(HeaderField(key, value))
        }
        return out
    }

    private static func headers(_ h: UnsafeMutablePointer<Envoy__Service__ExtProc__V3__HttpHeaders>?) -> HTTPHeadersMessage {
        guard let h else { return HTTPHeadersMessage(headers: [], endOfStream: false) }
        return HTTPHeadersMessage(headers: headerMap(h.pointee.headers), endOfStream: h.pointee.end_of_stream != 0)
    }

    private static func body(_ b: UnsafeMutablePointer<Envoy__Service__ExtProc__V3__HttpBody>?) -> HTTPBodyMessage {
        guard let b else { return HTTPBodyMessage(body: [], endOfStream: false) }
        return HTTPBodyMessage(body: bytesOf(b.pointee.body), endOfStream: b.pointee.end_of_stream != 0,
                               endOfStreamWithoutMessage: b.pointee.end_of_stream_without_message != 0)
    }

    private static func mutation(_ m: UnsafeMutablePointer<Envoy__Service__ExtProc__V3__HeaderMutation>) -> HeaderMutation {
        var out = HeaderMutation()
        if m.pointee.n_set_headers > 0, let hs = m.pointee.set_headers {
            for i in 0..<m.pointee.n_set_headers {
                guard let o = hs[i], let h = o.pointee.header else { continue }
                let raw = h.pointee.raw_value
                let v = raw.len > 0 ? String(decoding: bytesOf(raw), as: UTF8.self) : string(h.pointee.value)
                out.setHeaders.append((HeaderField(string(h.pointee.key), v),
                                HeaderAppendAction(rawValue: Int(o.pointee.append_action.rawValue)) ?? .appendIfExistsOrAdd))
            }
        }
        if m.pointee.n_remove_headers > 0, let rs = m.pointee.remove_headers {
            for i in 0..<m.pointee.n_remove_headers { out.removeHeaders.append(string(rs[i])) }
        }
        return out
    }

    private static func common(_ c: UnsafeMutablePointer<Envoy__Service__ExtProc__V3__CommonResponse>?) -> CommonResponse {
        guard let c else { return CommonResponse() }
        var out = CommonResponse(continueAndReplace: c.pointee.status.rawValue == 1,
                                 headerMutation: c.pointee.header_mutation.map(mutation),
                                 clearRouteCache: c.pointee.clear_route_cache != 0)
        if let bm = c.pointee.body_mutation {
            switch bm.pointee.mutation_case {
            case ENVOY__SERVICE__EXT_PROC__V3__BODY_MUTATION__MUTATION_BODY:
                out.bodyMutation = .replace(bytesOf(bm.pointee.body))
            case ENVOY__SERVICE__EXT_PROC__V3__BODY_MUTATION__MUTATION_CLEAR_BODY:
                out.bodyMutation = .clear
            case ENVOY__SERVICE__EXT_PROC__V3__BODY_MUTATION__MUTATION_STREAMED_RESPONSE:
                let s = bm.pointee.streamed_response
                out.bodyMutation = .streamed(body: s.map { bytesOf($0.pointee.body) } ?? [],
                                             endOfStream: s.map { $0.pointee.end_of_stream != 0 } ?? false)
            default:
                break
            }
        }
        return out
    }

    // MARK: Swift -> C (arena-allocated)

    private static func makeHeaderMap(_ a: CArena, _ fields: [HeaderField]) -> UnsafeMutablePointer<Envoy__Config__Core__V3__HeaderMap> {
        let map = a.make(Envoy__Config__Core__V3__HeaderMap.self, envoy__config__core__v3__header_map__init)
        let arr = a.array(UnsafeMutablePointer<Envoy__Config__Core__V3__HeaderValue>.self, count: fields.count)
        for (i, f) in fields.enumerated() {
            let hv = a.make(Envoy__Config__Core__V3__HeaderValue.self, envoy__config__core__v3__header_value__init)
            hv.pointee.key = a.cString(f.name)
            hv.pointee.raw_value = a.binary(f.value)
            arr[i] = hv
        }
        map.pointee.n_headers = fields.count
        map.pointee.headers = arr
        return map
    }

    private static func makeHeaders(_ a: CArena, _ h: HTTPHeadersMessage) -> UnsafeMutablePointer<Envoy__Service__ExtProc__V3__HttpHeaders> {
        let m = a.make(Envoy__Service__ExtProc__V3__HttpHeaders.self, envoy__service__ext_proc__v3__http_headers__init)
        m.pointee.headers = makeHeaderMap(a, h.headers)
        m.pointee.end_of_stream = h.endOfStream ? 1 : 0
        return m
    }

    private static func makeBody(_ a: CArena, _ b: HTTPBodyMessage) -> UnsafeMutablePointer<Envoy__Service__ExtProc__V3__HttpBody> {
        let m = a.make(Envoy__Service__ExtProc__V3__HttpBody.self, envoy__service__ext_proc__v3__http_body__init)
        m.pointee.body = a.binary(b.body)
        m.pointee.end_of_stream = b.endOfStream ? 1 : 0
        m.pointee.end_of_stream_without_message = b.endOfStreamWithoutMessage ? 1 : 0
        return m
    }

    private static func makeTrailers(_ a: CArena, _ t: [HeaderField]) -> UnsafeMutablePointer<Envoy__Service__ExtProc__V3__HttpTrailers> {
        let m = a.make(Envoy__Service__ExtProc__V3__HttpTrailers.self, envoy__service__ext_proc__v3__http_trailers__init)
        m.pointee.trailers = makeHeaderMap(a, t)
        return m
    }

    private static func makeMutation(_ a: CArena, _ hm: HeaderMutation) -> UnsafeMutablePointer<Envoy__Service__ExtProc__V3__HeaderMutation> {
        let m = a.make(Envoy__Service__ExtProc__V3__HeaderMutation.self, envoy__service__ext_proc__v3__header_mutation__init)
        if !hm.setHeaders.isEmpty {
            let arr = a.array(UnsafeMutablePointer<Envoy__Config__Core__V3__HeaderValueOption>.self, count: hm.setHeaders.count)
            for (i, s) in hm.setHeaders.enumerated() {
                let opt = a.make(Envoy__Config__Core__V3__HeaderValueOption.self, envoy__config__core__v3__header_value_option__init)
                let hv = a.make(Envoy__Config__Core__V3__HeaderValue.self, envoy__config__core__v3__header_value__init)
                hv.pointee.key = a.cString(s.field.name)
                hv.pointee.raw_value = a.binary(s.field.value)
                opt.pointee.header = hv
                opt.pointee.append_action = .init(UInt32(s.action.rawValue))
                arr[i] = opt
            }
            m.pointee.n_set_headers = hm.setHeaders.count
            m.pointee.set_headers = arr
        }
        if !hm.removeHeaders.isEmpty {
            let arr = a.array(UnsafeMutablePointer<CChar>.self, count: hm.removeHeaders.count)
            for (i, r) in hm.removeHeaders.enumerated() { arr[i] = a.cString(r) }
            m.pointee.n_remove_headers = hm.removeHeaders.count
            m.pointee.remove_headers = arr
        }
        return m
    }

    private static func makeCommon(_ a: CArena, _ c: CommonResponse) -> UnsafeMutablePointer<Envoy__Service__ExtProc__V3__CommonResponse> {
        let m = a.make(Envoy__Service__ExtProc__V3__CommonResponse.self, envoy__service__ext_proc__v3__common_response__init)
        m.pointee.status = .init(c.continueAndReplace ? 1 : 0)
        if let hm = c.headerMutation, !hm.isEmpty { m.pointee.header_mutation = makeMutation(a, hm) }
        if let bm = c.bodyMutation {
            let b = a.make(Envoy__Service__ExtProc__V3__BodyMutation.self, envoy__service__ext_proc__v3__body_mutation__init)
            switch bm {
            case .replace(let bytes):
                b.pointee.mutation_case = ENVOY__SERVICE__EXT_PROC__V3__BODY_MUTATION__MUTATION_BODY
                b.pointee.body = a.binary(bytes)
            case .clear:
                b.pointee.mutation_case = ENVOY__SERVICE__EXT_PROC__V3__BODY_MUTATION__MUTATION_CLEAR_BODY
                b.pointee.clear_body = 1
            case .streamed(let bytes, let eos):
                b.pointee.mutation_case = ENVOY__SERVICE__EXT_PROC__V3__BODY_MUTATION__MUTATION_STREAMED_RESPONSE
                let s = a.make(Envoy__Service__ExtProc__V3__StreamedBodyResponse.self, envoy__service__ext_proc__v3__streamed_body_response__init)
                s.pointee.body = a.binary(bytes)
                s.pointee.end_of_stream = eos ? 1 : 0
                b.pointee.streamed_response = s
            }
            m.pointee.body_mutation = b
        }
        m.pointee.clear_route_cache = c.clearRouteCache ? 1 : 0
        return m
    }

    private static func makeHeadersResponse(_ a: CArena, _ c: CommonResponse) -> UnsafeMutablePointer<Envoy__Service__ExtProc__V3__HeadersResponse> {
        let m = a.make(Envoy__Service__ExtProc__V3__HeadersResponse.self, envoy__service__ext_proc__v3__headers_response__init)
        m.pointee.response = makeCommon(a, c)
        return m
    }

    private static func makeBodyResponse(_ a: CArena, _ c: CommonResponse) -> UnsafeMutablePointer<Envoy__Service__ExtProc__V3__BodyResponse> {
        let m = a.make(Envoy__Service__ExtProc__V3__BodyResponse.self, envoy__service__ext_proc__v3__body_response__init)
        m.pointee.response = makeCommon(a, c)
        return m
    }

    private static func makeTrailersResponse(_ a: CArena, _ hm: HeaderMutation?) -> UnsafeMutablePointer<Envoy__Service__ExtProc__V3__TrailersResponse> {
        let m = a.make(Envoy__Service__ExtProc__V3__TrailersResponse.self, envoy__service__ext_proc__v3__trailers_response__init)
        if let hm, !hm.isEmpty { m.pointee.header_mutation = makeMutation(a, hm) }
        return m
    }

    private static func pack<T>(_ m: UnsafeMutablePointer<T>,
                                _ size: (UnsafePointer<T>?) -> Int,
                                _ packFn: (UnsafePointer<T>?, UnsafeMutablePointer<UInt8>?) -> Int) -> [UInt8] {
        let n = size(m)
        return [UInt8](unsafeUninitializedCapacity: n) { buf, count in
            count = packFn(m, buf.baseAddress)
        }
    }
}

/// Owns every C allocation made while building one message and frees them
/// all on deinit. Small pieces are bump-allocated from 4 KB blocks (one
/// malloc for a typical response instead of one per field); large byte
/// buffers get their own block. Single-use, single-thread.
final class CArena {
    private var blocks: [UnsafeMutableRawPointer] = []
    private var cursor: UnsafeMutableRawPointer?
    private var remaining = 0
    private static let blockSize = 4096

    deinit {
        for b in blocks { b.deallocate() }
    }

    private func raw(_ size: Int, alignment: Int) -> UnsafeMutableRawPointer {
        if size > Self.blockSize / 4 {
            let p = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: max(alignment, 16))
            blocks.append(p)
            return p
        }
        if let c = cursor {
            let pad = (alignment - Int(bitPattern: c) % alignment) % alignment
            if pad + size <= remaining {
                let p = c + pad
                cursor = p + size
                remaining -= pad + size
                return p
            }
        }
        let b = UnsafeMutableRawPointer.allocate(byteCount: Self.blockSize, alignment: 16)
        blocks.append(b)
        cursor = b + size
        remaining = Self.blockSize - size
        return b
    }

    /// Runs `body` with a ProtobufCAllocator that allocates from this arena
    /// (its free is a no-op: the arena frees everything at deinit). The
    /// allocator only lives for the call; the arena must outlive what was
    /// unpacked with it, which `decodeRequest` guarantees by copying into
    /// Swift values before the arena goes away.
    func withAllocator<R>(_ body: (UnsafeMutablePointer<ProtobufCAllocator>) -> R) -> R {
        var a = ProtobufCAllocator(alloc: arenaAlloc, free: arenaFree,
                                   allocator_data: Unmanaged.passUnretained(self).toOpaque())
        return withExtendedLifetime(self) { withUnsafeMutablePointer(to: &a) { body($0) } }
    }

    fileprivate func allocate(_ size: Int) -> UnsafeMutableRawPointer {
        raw(max(size, 1), alignment: 16)
    }

    /// Allocates a message struct and runs its generated `__init` function.
    func make<T>(_: T.Type, _ initFn: (UnsafeMutablePointer<T>?) -> Void) -> UnsafeMutablePointer<T> {
        let p = raw(MemoryLayout<T>.size, alignment: MemoryLayout<T>.alignment).bindMemory(to: T.self, capacity: 1)
        initFn(p)
        return p
    }

    func array<T>(_: T.Type, count: Int) -> UnsafeMutablePointer<T?> where T: _Pointer {
        let n = max(count, 1)
        let p = raw(MemoryLayout<T?>.stride * n, alignment: MemoryLayout<T?>.alignment).bindMemory(to: T?.self, capacity: n)
        p.initialize(repeating: nil, count: n)
        return p
    }

    func cString(_ s: String) -> UnsafeMutablePointer<CChar> {
        var s = s
        return s.withUTF8 { u in
            let p = raw(u.count + 1, alignment: 1).bindMemory(to: CChar.self, capacity: u.count + 1)
            if let base = u.baseAddress { UnsafeMutableRawPointer(p).copyMemory(from: base, byteCount: u.count) }
            p[u.count] = 0
            return p
        }
    }

    func binary(_ bytes: [UInt8]) -> ProtobufCBinaryData {
        guard !bytes.isEmpty else { return ProtobufCBinaryData(len: 0, data: nil) }
        let p = raw(bytes.count, alignment: 1).bindMemory(to: UInt8.self, capacity: bytes.count)
        bytes.withUnsafeBufferPointer { p.update(from: $0.baseAddress!, count: bytes.count) }
        return ProtobufCBinaryData(len: bytes.count, data: p)
    }

    func binary(_ s: String) -> ProtobufCBinaryData {
        var s = s
        return s.withUTF8 { u in
            guard let base = u.baseAddress, u.count > 0 else { return ProtobufCBinaryData(len: 0, data: nil) }
            let p = raw(u.count, alignment: 1).bindMemory(to: UInt8.self, capacity: u.count)
            p.update(from: base, count: u.count)
            return ProtobufCBinaryData(len: u.count, data: p)
        }
    }
}

/// ProtobufCAllocator callbacks: recover the arena from allocator_data.
private func arenaAlloc(_ data: UnsafeMutableRawPointer?, _ size: Int) -> UnsafeMutableRawPointer? {
    Unmanaged<CArena>.fromOpaque(data!).takeUnretainedValue().allocate(size)
}

private func arenaFree(_ data: UnsafeMutableRawPointer?, _ pointer: UnsafeMutableRawPointer?) {
    // Freed with the arena.
}
