import FuzzSupport
import OpenAIAPI

/// An OpenAI request body for the endpoint the first byte picks (and the
/// model-only read, and the usage reader on the same bytes).
func check(_ input: [UInt8]) {
    guard let first = input.first else { return }
    let endpoints = OpenAIEndpoint.allCases
    let body = Array(input.dropFirst())
    _ = try? OpenAIRequestSummary.parse(body, endpoint: endpoints[Int(first) % endpoints.count])
    _ = try? OpenAIRequestSummary.parseModelOnly(body)
    _ = OpenAIUsage.parse(responseBody: body)
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    check(Fuzz.bytes(data, size))
    return 0
}

@main struct Main { static func main() { Fuzz.main(fuzzOne, replay: check) } }
