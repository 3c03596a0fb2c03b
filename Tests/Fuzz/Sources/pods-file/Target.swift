import FuzzSupport
import PodDiscovery

/// A pods file (YAML) from arbitrary text: a table or a located error.
func check(_ input: [UInt8]) {
    let text = String(decoding: input, as: UTF8.self)
    _ = try? StaticPodsFile.parse(text)
    _ = try? StaticPodsFile.parseTable(text)
}

@main struct Main { static func main() { Fuzz.main(check) } }
