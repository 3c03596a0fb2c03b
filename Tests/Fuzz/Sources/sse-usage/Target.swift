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

@main struct Main { static func main() { Fuzz.main(check) } }
