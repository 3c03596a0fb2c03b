import FuzzSupport
import OpenAIAPI

/// A streamed (SSE) response, cut into chunks whose size the first byte
/// picks: the usage scanner must give the same answer however it is cut.
func check(_ input: [UInt8]) {
    guard let first = input.first else { return }
    let body = Array(input.dropFirst())
    var whole = SSEUsageScanner()
    _ = whole.feed(body)
    var cut = SSEUsageScanner()
    let chunk = max(1, Int(first))
    var i = 0
    while i < body.count {
        _ = cut.feed(body[i..<min(body.count, i + chunk)])
        i += chunk
    }
    if String(describing: whole) != String(describing: cut) {
        Fuzz.fail("SSE usage depends on chunking (\(chunk)-byte chunks): \(whole) vs \(cut)")
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    check(Fuzz.bytes(data, size))
    return 0
}

@main struct Main { static func main() { Fuzz.main(fuzzOne, replay: check) } }
