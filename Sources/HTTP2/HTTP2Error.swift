internal import CNghttp2

/// A protocol violation or an nghttp2 failure that ends the session.
public struct HTTP2Error: Error, CustomStringConvertible, Sendable {
    public let code: Int32
    public let message: String
    init(_ code: Int32) {
        self.code = code
        self.message = String(cString: nghttp2_strerror(code))
    }
    public var description: String { "HTTP/2 error \(code): \(message)" }
}
