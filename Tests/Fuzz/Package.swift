// swift-tools-version: 6.2
//
// Fuzz targets for Switchboard's parsers (libFuzzer). A package of its own so
// the main build never links them: scripts/fuzz builds it with
// `-sanitize=fuzzer,address -DFUZZING` into .build/fuzz and runs one
// target. Each target also builds as a plain replay tool (no -DFUZZING):
// `fuzz-NAME FILE...` runs the files through the target, which is how a
// crash found once becomes a regression check.
import Foundation
import PackageDescription

// The root package's identity is its directory's name (a clone may be named anything).
let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().lastPathComponent.lowercased()

func target(_ name: String) -> Target {
    .executableTarget(name: "fuzz-\(name)", dependencies: ["FuzzSupport", .product(name: "SwitchboardFuzzing", package: root)],
                      path: "Sources/\(name)", swiftSettings: [.swiftLanguageMode(.v6)])
}

let names = ["extproc-request", "h2-grpc-server", "openai-request", "sse-usage", "prometheus", "pods-file", "users-file", "kv-agent-protocol",
             "kv-l2-protocol"]

let package = Package(
    name: "SwitchboardFuzz",
    platforms: [.macOS(.v15)],
    dependencies: [.package(path: "../..")],
    targets: [
        .target(name: "CFuzzDriver", path: "Sources/CFuzzDriver"),
        .target(name: "FuzzSupport", dependencies: ["CFuzzDriver"], path: "Sources/FuzzSupport", swiftSettings: [.swiftLanguageMode(.v6)]),
    ] + names.map(target)
)
