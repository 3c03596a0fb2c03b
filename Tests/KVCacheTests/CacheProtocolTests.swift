import KVProtocol
import Testing

/// The agent ↔ L2 cache-server protocol's bodies and frames: round trips,
/// every truncation rejected, hostile counts and lengths rejected before any
/// allocation they name, random bytes never crash the decoder.
@Suite struct CacheProtocolTests {
    static let k = (0..<4).map { BlockKey(high: 0x1000 + UInt64($0), low: UInt64($0)) }
    static let blocks = (0..<3).map { CacheProtocol.Block(checksum: 0xC0FFEE + UInt64($0), bytes: [UInt8](repeating: UInt8($0), count: 100 * $0)) }
    static let requests: [CacheProtocol.Request] = [
        .put(Array(zip(k.prefix(3), blocks))), .get(k), .exists(k), .delete(Array(k.prefix(1))), .stats, .get([]),
    ]

    @Test func requestsRoundTrip() throws {
        for r in Self.requests {
            #expect(try CacheProtocol.Request.decode(op: r.op.rawValue, body: r.body()) == r)
        }
        let resp = CacheProtocol.getResponse(Self.blocks)
        #expect(try CacheProtocol.decodeGetResponse(resp) == Self.blocks)
    }

    @Test func everyTruncationIsRejected() {
        for r in Self.requests {
            let body = r.body()
            for n in 0..<body.count {
                #expect(throws: AgentProtocol.Malformed.self, "\(r.op) cut at \(n)") {
                    _ = try CacheProtocol.Request.decode(op: r.op.rawValue, body: Array(body[..<n]))
                }
            }
            // And trailing bytes are rejected too.
            #expect(throws: AgentProtocol.Malformed.self) { _ = try CacheProtocol.Request.decode(op: r.op.rawValue, body: body + [0]) }
        }
        let resp = CacheProtocol.getResponse(Self.blocks)
        for n in 0..<resp.count {
            #expect(throws: AgentProtocol.Malformed.self) { _ = try CacheProtocol.decodeGetResponse(Array(resp[..<n])) }
        }
    }

    @Test func hostileCountsAndLengthsAreRejected() {
        var w = AgentProtocol.Writer()
        w.u32(UInt32.max)  // 4 billion blocks in a tiny body
        #expect(throws: AgentProtocol.Malformed.self) { _ = try CacheProtocol.Request.decode(op: CacheProtocol.Op.put.rawValue, body: w.bytes) }
        var big = AgentProtocol.Writer()
        big.u32(1)
        big.key(Self.k[0])
        big.u64(1)
        big.u32(UInt32(CacheProtocol.maxBlockBytes + 1))  // a block over the limit
        #expect(throws: AgentProtocol.Malformed.self) { _ = try CacheProtocol.Request.decode(op: CacheProtocol.Op.put.rawValue, body: big.bytes) }
        #expect(throws: AgentProtocol.Malformed.self) { _ = try CacheProtocol.Request.decode(op: 77, body: []) }
    }

    @Test func randomBytesNeverCrashTheDecoder() {
        var g = SystemRandomNumberGenerator()
        for i in 0..<20_000 {
            let n = Int.random(in: 0...96, using: &g)
            var body = (0..<n).map { _ in UInt8.random(in: 0...255, using: &g) }
            if i % 2 == 0 && n >= 4 { body[0] = UInt8(n % 5); body[1] = 0; body[2] = 0; body[3] = 0 }  // small counts: deeper paths
            _ = try? CacheProtocol.Request.decode(op: UInt16(i % 7), body: body)
            _ = try? CacheProtocol.decodeGetResponse(body)
        }
    }

    @Test func framesUseTheirOwnMagicAndLimit() throws {
        let f = AgentProtocol.Frame(op: CacheProtocol.Op.get.rawValue, requestID: 9, deadline: 250, body: Self.requests[1].body())
        var d = AgentProtocol.Decoder(magic: CacheProtocol.magic, maxBody: CacheProtocol.maxBody)
        #expect(try d.feed(f.encoded(magic: CacheProtocol.magic)) == [f])
        // An agent frame is not a cache frame, and the other way round.
        var wrong = AgentProtocol.Decoder(magic: CacheProtocol.magic, maxBody: CacheProtocol.maxBody)
        #expect(throws: AgentProtocol.StreamError.badMagic(AgentProtocol.magic)) { _ = try wrong.feed(f.encoded()) }
        var agent = AgentProtocol.Decoder()
        #expect(throws: AgentProtocol.StreamError.badMagic(CacheProtocol.magic)) { _ = try agent.feed(f.encoded(magic: CacheProtocol.magic)) }
        // A header announcing more than the limit is refused before the body arrives.
        var h = AgentProtocol.Writer()
        h.u32(CacheProtocol.magic)
        h.u32(UInt32(CacheProtocol.maxBody + 1))
        h.bytes += [UInt8](repeating: 0, count: 16)
        var d2 = AgentProtocol.Decoder(magic: CacheProtocol.magic, maxBody: CacheProtocol.maxBody)
        #expect(throws: AgentProtocol.StreamError.bodyTooLarge(CacheProtocol.maxBody + 1, limit: CacheProtocol.maxBody)) { _ = try d2.feed(h.bytes) }
    }
}
