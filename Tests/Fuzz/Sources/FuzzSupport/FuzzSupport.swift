internal import CFuzzDriver
import Foundation

/// What every target shares: libFuzzer's input as bytes, and the replay
/// driver used when a target is built without libFuzzer.
public enum Fuzz {
    /// libFuzzer's input, copied (the one pointer in these targets).
    public static func bytes(_ data: UnsafePointer<UInt8>?, _ size: Int) -> [UInt8] {
        guard let data, size > 0 else { return [] }
        return Array(UnsafeBufferPointer(start: data, count: size))
    }

    /// Runs every file named on the command line (directories: every file
    /// in them) through `body`; prints how many. Exit 1 when none was given.
    public static func replay(_ body: ([UInt8]) -> Void) {
        let args = CommandLine.arguments.dropFirst()
        guard !args.isEmpty else {
            FileHandle.standardError.write(Data("usage: \(CommandLine.arguments[0]) FILE_OR_DIR...\n".utf8))
            exit(1)
        }
        var n = 0
        for a in args {
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: a, isDirectory: &isDir) else { continue }
            let files = isDir.boolValue ? ((try? FileManager.default.contentsOfDirectory(atPath: a)) ?? []).sorted().map { a + "/" + $0 } : [a]
            for f in files {
                guard let d = FileManager.default.contents(atPath: f) else { continue }
                body([UInt8](d))
                n += 1
            }
        }
        print("replayed \(n) inputs")
    }

    /// The target's check, for the C callback below (set once by `main`
    /// before libFuzzer starts; libFuzzer calls back on one thread).
    nonisolated(unsafe) static var target: ([UInt8]) -> Void = { _ in }

    /// A target's main: libFuzzer's driver in fuzzing builds (`-DFUZZING`,
    /// its flags on the command line), else the replay of files.
    public static func main(_ check: @escaping ([UInt8]) -> Void) -> Never {
        #if FUZZING
        target = check
        var argc = CommandLine.argc
        var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
        exit(LLVMFuzzerRunDriver(&argc, &argv, fuzzerTestOneInput))
        #else
        replay(check)
        exit(0)
        #endif
    }

    /// Feeds `stream` to `body` in pieces of `size` bytes (the last shorter):
    /// a parser must give the same answer however its input is cut.
    public static func pieces(_ stream: [UInt8], _ size: Int, _ body: (ArraySlice<UInt8>) -> Bool) {
        var i = 0
        while i < stream.count {
            guard body(stream[i..<min(stream.count, i + size)]) else { return }
            i += size
        }
    }

    /// Stops the process the way libFuzzer reports a finding: a target found
    /// two parsers disagreeing (or another broken invariant).
    public static func fail(_ message: String) -> Never {
        FileHandle.standardError.write(Data("fuzz invariant broken: \(message)\n".utf8))
        abort()
    }
}

/// libFuzzer's callback, for every target: runs the target's check. (Also
/// the symbol libFuzzer's own main would look for.)
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    Fuzz.target(Fuzz.bytes(data, size))
    return 0
}
