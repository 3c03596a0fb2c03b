import Testing
@testable import Tracing

@Suite struct TraceContextTests {
    @Test func validHeadersParseAndRoundTrip() throws {
        let h = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        let c = try #require(TraceContext(traceparent: h))
        #expect(c.sampled && c.traceID.count == 16 && c.spanID.count == 8)
        #expect(c.traceparent == h)
        #expect(TraceContext(traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")?.sampled == false)
        // A later version with more fields is read as version 00.
        #expect(TraceContext(traceparent: "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra") != nil)
    }

    @Test(arguments: [
        "", "garbage", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",           // missing flags
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",                       // zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",                       // zero span id
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",                       // upper case
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",                       // forbidden version
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",                 // extra field on 00
        "00-4bf92f3577b34da6a3ce929d0e0e47-00f067aa0ba902b7-01",                         // short trace id
    ])
    func invalidHeadersStartANewTrace(_ h: String) {
        #expect(TraceContext(traceparent: h) == nil)
    }

    @Test func endpointsParse() throws {
        let c = try #require(TracingConfiguration(endpoint: "http://otel.monitoring:4318/v1/traces"))
        #expect(c.host == "otel.monitoring" && c.port == 4318 && c.path == "/v1/traces")
        let d = try #require(TracingConfiguration(endpoint: "http://collector"))
        #expect(d.port == 4318 && d.path == "/v1/traces")
        #expect(TracingConfiguration(endpoint: "https://collector:4318") == nil)
        #expect(TracingConfiguration(endpoint: "http://:4318/") == nil)
    }

    @Test func newIDsAreValid() {
        let t = Tracer(configuration: TracingConfiguration(endpoint: "http://c:1")!, logger: .init(label: "t"))
        let (parent, ctx) = t.start(traceparent: nil)
        #expect(parent.isEmpty && ctx.traceID.count == 16 && ctx.spanID.count == 8 && ctx.sampled)
        #expect(TraceContext(traceparent: ctx.traceparent) == ctx)
        let (p2, c2) = t.start(traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")
        #expect(TraceContext.hexString(p2) == "00f067aa0ba902b7" && TraceContext.hexString(c2.traceID) == "4bf92f3577b34da6a3ce929d0e0e4736")
        #expect(!c2.sampled && c2.spanID != p2)
    }
}
