import FuzzSupport
import PodDiscovery

/// A pods file (YAML) from arbitrary text: a table or a located error.
func check(_ input: [UInt8]) {
    let text = String(decoding: input, as: UTF8.self)
    _ = try? StaticPodsFile.parse(text)
    _ = try? StaticPodsFile.parseTable(text)
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    check(Fuzz.bytes(data, size))
    return 0
}

@main struct Main { static func main() { Fuzz.main(fuzzOne, replay: check) } }
