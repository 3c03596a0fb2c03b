/// A gRPC status: the code and an optional message, as sent in trailers.
public struct GRPCStatus: Error, Sendable, Equatable, CustomStringConvertible {
    /// The canonical gRPC status codes.
    public enum Code: Int, Sendable {
        case ok = 0, cancelled, unknown, invalidArgument, deadlineExceeded, notFound, alreadyExists,
             permissionDenied, resourceExhausted, failedPrecondition, aborted, outOfRange,
             unimplemented, `internal`, unavailable, dataLoss, unauthenticated
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String = "") {
        self.code = code
        self.message = message
    }

    public static let ok = GRPCStatus(.ok)

    public var description: String { message.isEmpty ? "\(code)" : "\(code): \(message)" }

    /// The trailer fields for this status; `grpc-message` percent-encoded as the spec asks.
    var trailerFields: [(String, String)] {
        var t = [("grpc-status", String(code.rawValue))]
        if !message.isEmpty { t.append(("grpc-message", Self.percentEncode(message))) }
        return t
    }

    static func percentEncode(_ s: String) -> String {
        var out = ""
        out.reserveCapacity(s.utf8.count)
        let hex = Array("0123456789ABCDEF".utf8)
        for b in s.utf8 {
            if b >= 0x20 && b <= 0x7E && b != UInt8(ascii: "%") {
                out.unicodeScalars.append(Unicode.Scalar(b))
            } else {
                out.unicodeScalars.append("%")
                out.unicodeScalars.append(Unicode.Scalar(hex[Int(b >> 4)]))
                out.unicodeScalars.append(Unicode.Scalar(hex[Int(b & 0xF)]))
            }
        }
        return out
    }
}
