import ExtProcProto
import FuzzSupport
import GRPCServer
import HTTP2

/// Raw bytes into an HTTP/2 server session (after a valid client preface
/// and SETTINGS when the first byte is odd), in chunks whose size the second
/// byte picks; request bodies go through the gRPC message decoder and every
/// message through the ext_proc decoder, as the gateway's server does.
let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8) + [0, 0, 0, 4, 0, 0, 0, 0, 0]

func check(_ input: [UInt8]) {
    guard input.count >= 2, let session = try? HTTP2ServerSession() else { return }
    let bytes = (input[0] & 1 == 1 ? preface : []) + input.dropFirst(2)
    let chunk = max(1, Int(input[1]) * 4)
    var decoders: [Int32: GRPCMessageDecoder] = [:]
    var i = 0
    while i < bytes.count {
        let end = min(bytes.count, i + chunk)
        guard let events = try? session.receive(bytes[i..<end]) else { break }
        for e in events {
            switch e {
            case .requestHeaders(let id, _, let endStream):
                decoders[id] = GRPCMessageDecoder(maxMessageSize: 1 << 20)
                if endStream { session.submitResponse(streamID: id, headers: [HTTP2Header(":status", "200")], body: false) }
            case .data(let id, let payload):
                guard var d = decoders[id] else { continue }
                if let messages = try? d.feed(payload) {
                    for m in messages { _ = try? ExtProcCodec.decodeRequest(m) }
                }
                decoders[id] = d
            case .endStream(let id):
                session.submitResponse(streamID: id, headers: [HTTP2Header(":status", "200")], body: false)
            case .streamClosed(let id, _):
                decoders[id] = nil
            default:
                break
            }
        }
        try? session.drainOutput { _ in }
        i = end
    }
}

@main struct Main { static func main() { Fuzz.main(check) } }
