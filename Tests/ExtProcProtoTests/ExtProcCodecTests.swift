import ExtProcProto
import Foundation
import Testing

@Suite struct ExtProcCodecTests {
    static func fixture(_ name: String) throws -> [UInt8] {
        let url = try #require(Bundle.module.url(forResource: "Inputs/\(name)", withExtension: nil))
        return Array(try Data(contentsOf: url))
    }

    @Test func decodesEnvoyHeadersAndSkipsFieldsOutsideTheSubset() throws {
        let r = try ExtProcCodec.decodeRequest(Self.fixture("extproc.request-headers.with-unknown-fields.xds-protos.bin"))
        #expect(r.requestBodyMode == .fullDuplexStreamed)
        #expect(r.responseBodyMode == .streamed)
        guard case .requestHeaders(let h) = r.phase else { Issue.record("wrong phase \(String(describing: r.phase))"); return }
        #expect(h.value(of: ":path") == "/v1/chat/completions")
        #expect(h.value(of: "routing-strategy") == "random")
        #expect(h.endOfStream == false)
    }

    @Test func readsPlainValueWhenRawValueIsEmpty() throws {
        let r = try ExtProcCodec.decodeRequest(Self.fixture("extproc.request-headers.value-not-raw.xds-protos.bin"))
        guard case .requestHeaders(let h) = r.phase else { Issue.record("wrong phase"); return }
        #expect(h.headers == [HeaderField("x-legacy", "plain-value")])
    }

    @Test func decodesBufferedBody() throws {
        let r = try ExtProcCodec.decodeRequest(Self.fixture("extproc.buffered-body.xds-protos.bin"))
        #expect(r.phase == .requestBody(HTTPBodyMessage(body: Array(#"{"model":"tiny"}"#.utf8), endOfStream: true)))
    }

    @Test(arguments: [
        ProcessingPhaseMessage.requestHeaders(HTTPHeadersMessage(headers: [HeaderField(":path", "/v1/models"), HeaderField("ü", "ß")], endOfStream: true)),
        .responseHeaders(HTTPHeadersMessage(headers: [HeaderField(":status", "200")], endOfStream: false)),
        .requestBody(HTTPBodyMessage(body: Array(repeating: 7, count: 70_000), endOfStream: false)),
        .responseBody(HTTPBodyMessage(body: [], endOfStream: true, endOfStreamWithoutMessage: true)),
        .requestTrailers([HeaderField("grpc-status", "0")]),
        .responseTrailers([]),
    ])
    func requestRoundTrip(_ phase: ProcessingPhaseMessage) throws {
        let r = ProcessingRequest(phase: phase, observabilityMode: true, requestBodyMode: .buffered, responseBodyMode: BodySendMode.none)
        #expect(try ExtProcCodec.decodeRequest(ExtProcCodec.encodeRequest(r)) == r)
    }

    @Test(arguments: [
        ProcessingResponse(.requestHeaders(CommonResponse()), modeOverride: ProcessingModeOverride(
            requestHeaderMode: .send, responseHeaderMode: .skip, requestBodyMode: .buffered, responseBodyMode: .none)),
        ProcessingResponse(.requestBody(CommonResponse(headerMutation: {
            var m = HeaderMutation(removeHeaders: ["x-drop"])
            m.overwrite("target-pod", "10.0.0.1:8000")
            return m
        }(), clearRouteCache: true))),
        ProcessingResponse(.requestBody(CommonResponse(continueAndReplace: true, bodyMutation: .replace([1, 2, 3])))),
        ProcessingResponse(.requestBody(CommonResponse(bodyMutation: .streamed(body: [9, 9], endOfStream: true)))),
        ProcessingResponse(.responseBody(CommonResponse(bodyMutation: .clear))),
        ProcessingResponse(.responseHeaders(CommonResponse())),
        ProcessingResponse(.requestTrailers(nil)),
        ProcessingResponse(.responseTrailers(HeaderMutation(setHeaders: [(HeaderField("a", "b"), .addIfAbsent)]))),
        ProcessingResponse(.immediate(ImmediateResponse(status: 429, headers: HeaderMutation(setHeaders: [
            (HeaderField("content-type", "application/json"), .overwriteIfExistsOrAdd)]),
            body: Array(#"{"error":{}}"#.utf8), details: "limited"))),
    ])
    func responseRoundTrip(_ r: ProcessingResponse) throws {
        #expect(try ExtProcCodec.decodeResponse(ExtProcCodec.encodeResponse(r)) == r)
    }

    @Test func responseFieldNumbersOnTheWire() {
        // ProcessingResponse.immediate_response = 7 (tag 0x3a), ImmediateResponse.status = 1 (0x0a),
        // HttpStatus.code = 1 varint (0x08) 404 = 0x94 0x03.
        let bytes = ExtProcCodec.encodeResponse(ProcessingResponse(.immediate(ImmediateResponse(status: 404))))
        #expect(bytes == [0x3A, 0x05, 0x0A, 0x03, 0x08, 0x94, 0x03])
    }

    @Test(arguments: [[UInt8]([0xFF, 0xFF, 0xFF]), [0x12, 0x05, 0x0A], [0x0A]])
    func garbageIsAnErrorNotACrash(_ bytes: [UInt8]) {
        #expect(throws: ExtProcCodecError.self) { try ExtProcCodec.decodeRequest(bytes) }
    }

    @Test func emptyMessageHasNoPhase() throws {
        #expect(try ExtProcCodec.decodeRequest([]).phase == nil)
    }
}

@Suite struct DynamicMetadataCodecTests {
    @Test func dynamicMetadataRoundTripsAsNestedStructs() throws {
        var m = HeaderMutation()
        m.overwrite("target-pod", "10.0.0.1:8000")
        let r = ProcessingResponse(.requestBody(CommonResponse(headerMutation: m)),
                                   dynamicMetadata: ["envoy.lb": ["x-gateway-destination-endpoint": "10.0.0.1:8000,10.0.0.2:8000"]])
        let back = try ExtProcCodec.decodeResponse(ExtProcCodec.encodeResponse(r))
        #expect(back == r)
        // Field 8, a Struct whose "envoy.lb" value is a Struct (Value.struct_value = 5)
        // holding a string (Value.string_value = 3): the bytes google.protobuf.Struct has.
        let bytes = ExtProcCodec.encodeResponse(ProcessingResponse(.requestBody(CommonResponse()),
                                                                   dynamicMetadata: ["a": ["b": "c"]]))
        #expect(bytes.contains(0x42))  // tag (8 << 3) | 2
        #expect(ExtProcCodec.encodeResponse(ProcessingResponse(.requestBody(CommonResponse()))).contains(0x42) == false)
    }
}
