import FuzzSupport
import PodMetrics

/// A /metrics page through the Prometheus parser (all families, and the
/// vLLM families then VLLMMetrics.extract) and through the scraper's own
/// decoder: when both accept a page they must read the same samples.
let all = PrometheusParser()
let kept = PrometheusParser(keep: VLLMMetrics.keep)
let decoder = VLLMScrapeDecoder()

func check(_ input: [UInt8]) {
    _ = try? all.parse(input)
    let slow = try? VLLMMetrics.extract(kept.parse(input))
    let fast = try? decoder.decode(input)
    guard let slow, let fast else { return }
    // Compared as text: NaN samples are equal to themselves there.
    let a = slow.keys.sorted().map { "\($0): \(slow[$0]!)" }, b = fast.keys.sorted().map { "\($0): \(fast[$0]!)" }
    if a != b { Fuzz.fail("the parser and the scraper's decoder disagree:\n\(a)\n---\n\(b)") }
}

@main struct Main { static func main() { Fuzz.main(check) } }
