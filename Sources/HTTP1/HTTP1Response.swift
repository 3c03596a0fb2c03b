import EventLoop

/// A response read by `HTTP1Client`.
public struct HTTP1Response: Sendable {
    public var status: Int
    public var headers: [(String, String)]
    public var body: [UInt8]

    public func header(_ name: String) -> String? {
        for (n, v) in headers where n == name { return v }
        return nil
    }
}
