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

@main struct Main { static func main() { Fuzz.main(check) } }
