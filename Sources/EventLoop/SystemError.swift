internal import CSystem
import Glibc
import Synchronization

/// A failed system call: which one and errno.
public struct SystemError: Error, CustomStringConvertible, Sendable {
    public let call: String
    public let code: Int32
    public init(_ call: String, _ code: Int32) {
        self.call = call
        self.code = code
    }
    public var description: String { "\(call) failed: \(String(cString: strerror(code))) (errno \(code))" }
}
