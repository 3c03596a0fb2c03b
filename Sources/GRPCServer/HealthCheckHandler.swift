/// `grpc.health.v1.Health/Check`. The messages are one field each, so they
/// are read and written by hand here (HealthCheckRequest.service = 1, string;
/// HealthCheckResponse.status = 1, enum: SERVING = 1, NOT_SERVING = 2).
final class HealthCheckHandler: GRPCStreamHandler {
    let services: Set<String>
    init(services: Set<String>) { self.services = services }

    func received(message: ArraySlice<UInt8>, stream: GRPCStream) {
        guard let name = Self.serviceName(Array(message)) else {
            return stream.finish(GRPCStatus(.invalidArgument, "malformed HealthCheckRequest"))
        }
        guard services.contains(name) else {
            return stream.finish(GRPCStatus(.notFound, "unknown service '\(name)'"))
        }
        let serving = stream.connection.server.isServing
        stream.send([0x08, serving ? 1 : 2])
        stream.finish(.ok)
    }

    func receivedEnd(stream: GRPCStream) {
        if !stream.isFinished { stream.finish(GRPCStatus(.invalidArgument, "no HealthCheckRequest sent")) }
    }

    func cancelled(reason: GRPCCancelReason) {}

    /// Reads field 1 (service name); skips other fields. nil when malformed.
    static func serviceName(_ m: [UInt8]) -> String? {
        var i = 0
        var name = ""
        while i < m.count {
            guard let (key, n) = varint(m, i) else { return nil }
            i = n
            switch key & 7 {
            case 0:
                guard let (_, n2) = varint(m, i) else { return nil }
                i = n2
            case 2:
                guard let (len, n2) = varint(m, i), n2 + Int(len) <= m.count else { return nil }
                if key >> 3 == 1 { name = String(decoding: m[n2..<(n2 + Int(len))], as: UTF8.self) }
                i = n2 + Int(len)
            case 1: i += 8
            case 5: i += 4
            default: return nil
            }
        }
        return i == m.count ? name : nil
    }

    private static func varint(_ m: [UInt8], _ start: Int) -> (UInt64, Int)? {
        var v: UInt64 = 0
        var shift: UInt64 = 0
        var i = start
        while i < m.count && shift < 64 {
            let b = m[i]
            v |= UInt64(b & 0x7F) << shift
            i += 1
            if b & 0x80 == 0 { return (v, i) }
            shift += 7
        }
        return nil
    }
}
