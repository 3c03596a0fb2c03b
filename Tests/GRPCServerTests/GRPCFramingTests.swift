@testable import GRPCServer
import Testing

@Suite struct GRPCFramingTests {
    @Test func messageSplitAcrossFramesAndSeveralInOne() throws {
        var d = GRPCMessageDecoder(maxMessageSize: 100)
        let a = GRPCMessageDecoder.frame([1, 2, 3])
        let b = GRPCMessageDecoder.frame([])
        let c = GRPCMessageDecoder.frame([9, 8])
        let all = a + b + c
        #expect(try d.feed(Array(all[0..<2])) == [])
        #expect(try d.feed(Array(all[2..<7])) == [])
        #expect(try d.feed(Array(all[7..<9])) == [[1, 2, 3]])
        #expect(try d.feed(Array(all[9...])) == [[], [9, 8]])
        #expect(d.bufferedBytes == 0)
        var one = GRPCMessageDecoder(maxMessageSize: 100)
        #expect(try one.feed(all) == [[1, 2, 3], [], [9, 8]])
    }

    @Test func limitsAndFlags() {
        var d = GRPCMessageDecoder(maxMessageSize: 2)
        #expect(throws: GRPCMessageDecoder.Failure.tooLarge(length: 3)) { try d.feed(GRPCMessageDecoder.frame([1, 2, 3])) }
        var c = GRPCMessageDecoder(maxMessageSize: 10)
        #expect(throws: GRPCMessageDecoder.Failure.compressed) { try c.feed([1, 0, 0, 0, 1, 7]) }
        var f = GRPCMessageDecoder(maxMessageSize: 10)
        #expect(throws: GRPCMessageDecoder.Failure.badFlag(4)) { try f.feed([4, 0, 0, 0, 0]) }
    }

    @Test(arguments: [("1S", UInt64(1_000_000_000)), ("250m", 250_000_000), ("5u", 5_000), ("7n", 7), ("2M", 120_000_000_000), ("1H", 3_600_000_000_000)])
    func timeouts(_ text: String, _ nanos: UInt64) {
        #expect(parseGRPCTimeout(text) == nanos)
    }

    @Test(arguments: ["", "S", "1", "1x", "123456789S", "-1S", "1.5S"])
    func badTimeouts(_ text: String) {
        #expect(parseGRPCTimeout(text) == nil)
    }

    @Test func statusMessageIsPercentEncoded() {
        let t = GRPCStatus(.invalidArgument, "bad 100% ü\n").trailerFields
        #expect(t[0] == ("grpc-status", "3") ? true : false)
        #expect(t[1].1 == "bad 100%25 %C3%BC%0A")
    }

    @Test func healthRequestNames() {
        #expect(HealthCheckHandler.serviceName([]) == "")
        #expect(HealthCheckHandler.serviceName([0x0A, 0x02, 0x61, 0x62]) == "ab")
        #expect(HealthCheckHandler.serviceName([0x0A, 0x05, 0x61]) == nil)
        #expect(HealthCheckHandler.serviceName([0x10, 0x01, 0x0A, 0x01, 0x7A]) == "z")
    }
}
