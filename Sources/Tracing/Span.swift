/// One finished span, as exported.
public struct Span: Sendable {
    public enum Kind: UInt64, Sendable { case internal_ = 1, server = 2, client = 3 }
    public enum Attribute: Sendable, Equatable {
        case string(String)
        case int(Int64)
        case double(Double)
        case bool(Bool)
    }

    public var traceID: [UInt8]
    public var spanID: [UInt8]
    /// Empty for a trace's root.
    public var parentSpanID: [UInt8]
    public var name: String
    public var kind: Kind
    public var startUnixNanos: UInt64
    public var endUnixNanos: UInt64
    public var attributes: [(String, Attribute)]
    public var isError: Bool
    public var statusMessage: String

    public init(traceID: [UInt8], spanID: [UInt8], parentSpanID: [UInt8], name: String, kind: Kind,
                startUnixNanos: UInt64, endUnixNanos: UInt64, attributes: [(String, Attribute)] = [],
                isError: Bool = false, statusMessage: String = "") {
        self.traceID = traceID
        self.spanID = spanID
        self.parentSpanID = parentSpanID
        self.name = name
        self.kind = kind
        self.startUnixNanos = startUnixNanos
        self.endUnixNanos = endUnixNanos
        self.attributes = attributes
        self.isError = isError
        self.statusMessage = statusMessage
    }
}

/// OTLP/protobuf encoding of an `ExportTraceServiceRequest`
/// (opentelemetry-proto: collector/trace/v1, trace/v1, common/v1,
/// resource/v1), written by hand: a few dozen lines instead of a protobuf
/// runtime and generated code in the gateway.
public enum OTLPEncoder {
    public static func exportRequest(_ spans: [Span], service: String, scope: String, version: String) -> [UInt8] {
        var resource: [UInt8] = []
        keyValue(1, "service.name", .string(service), into: &resource)           // Resource.attributes
        var scopeMsg: [UInt8] = []
        string(1, scope, into: &scopeMsg)                                          // InstrumentationScope.name
        string(2, version, into: &scopeMsg)                                        // .version
        var scopeSpans: [UInt8] = []
        message(1, scopeMsg, into: &scopeSpans)                                    // ScopeSpans.scope
        for s in spans { message(2, span(s), into: &scopeSpans) }                  // ScopeSpans.spans
        var resourceSpans: [UInt8] = []
        message(1, resource, into: &resourceSpans)                                 // ResourceSpans.resource
        message(2, scopeSpans, into: &resourceSpans)                               // ResourceSpans.scope_spans
        var out: [UInt8] = []
        message(1, resourceSpans, into: &out)                                      // ExportTraceServiceRequest.resource_spans
        return out
    }

    static func span(_ s: Span) -> [UInt8] {
        var m: [UInt8] = []
        bytes(1, s.traceID, into: &m)
        bytes(2, s.spanID, into: &m)
        if !s.parentSpanID.isEmpty { bytes(4, s.parentSpanID, into: &m) }
        string(5, s.name, into: &m)
        varintField(6, s.kind.rawValue, into: &m)
        fixed64(7, s.startUnixNanos, into: &m)
        fixed64(8, s.endUnixNanos, into: &m)
        for (k, v) in s.attributes { keyValue(9, k, v, into: &m) }
        var status: [UInt8] = []
        if !s.statusMessage.isEmpty { string(2, s.statusMessage, into: &status) }
        varintField(3, s.isError ? 2 : 0, into: &status)                            // STATUS_CODE_ERROR / UNSET
        message(15, status, into: &m)
        return m
    }

    static func keyValue(_ field: UInt64, _ key: String, _ value: Span.Attribute, into out: inout [UInt8]) {
        var any: [UInt8] = []
        switch value {
        case .string(let s): string(1, s, into: &any)
        case .bool(let b): varintField(2, b ? 1 : 0, into: &any)
        case .int(let i): varintField(3, UInt64(bitPattern: i), into: &any)
        case .double(let d): fixed64Tag(4, d.bitPattern, into: &any)
        }
        var kv: [UInt8] = []
        string(1, key, into: &kv)
        message(2, any, into: &kv)
        message(field, kv, into: &out)
    }

    static func varint(_ v: UInt64, into out: inout [UInt8]) {
        var x = v
        while x >= 0x80 {
            out.append(UInt8(x & 0x7f) | 0x80)
            x >>= 7
        }
        out.append(UInt8(x))
    }

    static func varintField(_ f: UInt64, _ v: UInt64, into out: inout [UInt8]) {
        varint(f << 3, into: &out)
        varint(v, into: &out)
    }

    static func fixed64(_ f: UInt64, _ v: UInt64, into out: inout [UInt8]) { fixed64Tag(f, v, into: &out) }

    static func fixed64Tag(_ f: UInt64, _ v: UInt64, into out: inout [UInt8]) {
        varint(f << 3 | 1, into: &out)
        for i in 0..<8 { out.append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(i)))) }
    }

    static func bytes(_ f: UInt64, _ b: [UInt8], into out: inout [UInt8]) {
        varint(f << 3 | 2, into: &out)
        varint(UInt64(b.count), into: &out)
        out += b
    }

    static func string(_ f: UInt64, _ s: String, into out: inout [UInt8]) { bytes(f, Array(s.utf8), into: &out) }
    static func message(_ f: UInt64, _ m: [UInt8], into out: inout [UInt8]) { bytes(f, m, into: &out) }
}
