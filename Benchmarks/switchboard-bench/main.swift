// Micro-benchmarks that need the Swift code itself (the process-level
// benchmarks are Python drivers in Benchmarks/). Prints figures; asserts nothing.
//   switchboard-bench parse-metrics FILE [ITERATIONS]
import Foundation
import PodMetrics

func seconds(_ f: () throws -> Void) rethrows -> Double {
    let t0 = DispatchTime.now().uptimeNanoseconds
    try f()
    return Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
}

let args = CommandLine.arguments
guard args.count >= 3, args[1] == "parse-metrics" else {
    FileHandle.standardError.write(Data("usage: switchboard-bench parse-metrics FILE [ITERATIONS]\n".utf8))
    exit(2)
}
let page = Array(try Data(contentsOf: URL(fileURLWithPath: args[2])))
let n = args.count > 3 ? Int(args[3]) ?? 2000 : 2000
let full = PrometheusParser()
let filtered = PrometheusParser(keep: VLLMMetrics.keep)
var sink = 0
// Warm-up, then three rounds each; report the best round (least disturbed).
for _ in 0..<50 { sink &+= try full.parse(page).count }
let decoder = VLLMScrapeDecoder()
var bestFull = Double.infinity, bestFiltered = Double.infinity, bestExtract = Double.infinity, bestDecode = Double.infinity
for _ in 0..<3 {
    bestFull = min(bestFull, try seconds { for _ in 0..<n { sink &+= try full.parse(page).count } })
    bestFiltered = min(bestFiltered, try seconds { for _ in 0..<n { sink &+= try filtered.parse(page).count } })
    bestExtract = min(bestExtract, try seconds {
        for _ in 0..<n { sink &+= VLLMMetrics.extract(try filtered.parse(page)).count }
    })
    bestDecode = min(bestDecode, try seconds { for _ in 0..<n { sink &+= try decoder.decode(page).count } })
}
let us = { (t: Double) in t / Double(n) * 1e6 }
print(String(format: "page %d bytes: full parse %.1f µs, vLLM families only %.1f µs, + extraction %.1f µs, scraper decoder %.1f µs per page (sink %d)",
             page.count, us(bestFull), us(bestFiltered), us(bestExtract), us(bestDecode), sink % 10))
print(String(format: "json: {\"full_us\": %.2f, \"filtered_us\": %.2f, \"extract_us\": %.2f, \"decode_us\": %.2f}",
             us(bestFull), us(bestFiltered), us(bestExtract), us(bestDecode)))
