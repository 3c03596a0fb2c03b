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

    /// A target's main: libFuzzer's driver in fuzzing builds (`-DFUZZING`,
    /// its flags on the command line), else the replay of files.
    public static func main(_ one: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt, replay body: ([UInt8]) -> Void) -> Never {
        #if FUZZING
        var argc = CommandLine.argc
        var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
        exit(LLVMFuzzerRunDriver(&argc, &argv, one))
        #else
        replay(body)
        exit(0)
        #endif
    }

    /// Stops the process the way libFuzzer reports a finding: a target found
    /// two parsers disagreeing (or another broken invariant).
    public static func fail(_ message: String) -> Never {
        FileHandle.standardError.write(Data("fuzz invariant broken: \(message)\n".utf8))
        abort()
    }
}
