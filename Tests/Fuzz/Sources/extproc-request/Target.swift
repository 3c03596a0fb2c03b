import ExtProcProto
import FuzzSupport

/// An ext_proc ProcessingRequest (and ProcessingResponse) from arbitrary bytes:
/// an error or a value, never a crash or a leak.
func check(_ input: [UInt8]) {
    if let r = try? ExtProcCodec.decodeRequest(input) { _ = String(describing: r).count }
    if let r = try? ExtProcCodec.decodeRequest(input[...].dropFirst(min(1, input.count))) { _ = String(describing: r).count }
    _ = try? ExtProcCodec.decodeResponse(input)
}

@main struct Main { static func main() { Fuzz.main(check) } }
