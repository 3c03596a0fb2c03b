import EventLoop
import Foundation
import KVAgent
import KVAgentClient
import KVCache
import KVProtocol
import Testing

/// An agent on its own loop thread, on a fresh socket path.
final class RunningAgent {
    let group: EventLoopGroup
    let agent: KVAgent
    let path: String

    init(pageSize: Int = 4096, pages: Int = 64, policy: EvictionPolicyKind = .lru, leaseMillis: UInt32 = 10_000) throws {
        path = NSTemporaryDirectory() + "sbkv-\(UInt64.random(in: 0...UInt64.max)).sock"
        group = try EventLoopGroup(count: 1)
        var c = KVAgentConfiguration()
        c.socketPath = path
        c.pageSize = pageSize
        c.capacityBytes = pageSize * pages
        c.policy = policy
        c.defaultLeaseMillis = leaseMillis
        agent = try KVAgent(configuration: c, loop: group.loops[0])
        group.start()
    }

    deinit {
        group.stopAll()
        group.join()
        unlink(path)
    }

    func client() throws -> KVAgentClient { try KVAgentClient(socketPath: path, pageSize: agent.configuration.pageSize) }

    /// Polls the agent's stats until `check` holds (the agent reacts to a closed socket asynchronously).
    func waitFor(_ check: ([String: Any]) -> Bool) -> [String: Any] {
        var last: [String: Any] = [:]
        for _ in 0..<200 {
            last = (try? JSONSerialization.jsonObject(with: Data(agent.statsJSON().utf8))) as? [String: Any] ?? [:]
            if check(last) { break }
            usleep(10_000)  // pacing between looks at the reported stats; bounded by the loop
        }
        return last
    }
}

func key(_ i: Int) -> BlockKey { BlockKey(high: 0xAB, low: UInt64(i)) }

/// Block content derived from its key, so any reader can verify it.
func block(_ i: Int, _ size: Int) -> [UInt8] {
    var x = UInt64(i) &* 0x9E37_79B9_7F4A_7C15 | 1
    return (0..<size).map { _ in
        x ^= x << 13; x ^= x >> 7; x ^= x << 17
        return UInt8(truncatingIfNeeded: x)
    }
}

@Suite struct KVAgentTests {
    @Test func twoEnginesShareBlocksThroughSharedMemory() throws {
        let a = try RunningAgent()
        let first = try a.client(), second = try a.client()
        #expect(try first.put((0..<6).map { (key($0), block($0, 4096)) }) == 6)
        #expect(try first.put([(key(0), block(99, 4096))]) == 0)  // already stored: untouched
        let got = try second.get([key(0), key(1), key(2), key(7), key(3)])
        #expect(got.count == 3)
        for (i, b) in got.enumerated() { #expect(b == block(i, 4096), "block \(i) corrupted") }
        #expect(try second.exists([key(0), key(1), key(9)]) == 2)
        #expect(try second.prefetch([key(4), key(5)]) == 2)
        #expect(try second.delete([key(5), key(8)]) == 1)
        #expect(try first.exists([key(4), key(5)]) == 1)
        let stats = a.waitFor { ($0["leases"] as? Int) == 0 }
        #expect(stats["puts"] as? Int == 6 && stats["hits"] as? Int == 3 && stats["connections"] as? Int == 2)
    }

    @Test func everyBadRequestGetsAClearError() throws {
        let a = try RunningAgent()
        #expect(throws: KVAgentError.self) { _ = try KVAgentClient(socketPath: a.path, pageSize: 1234) }
        do {
            _ = try KVAgentClient(socketPath: a.path, pageSize: 1234)
        } catch {
            #expect(error.status == .badSize && error.message.contains("4096"))
        }
        let c = try a.client()
        #expect(throws: KVAgentError(status: .badSize, message: "block of 10 bytes; the agent's pages are 4096")) {
            try c.put([(key(1), [UInt8](repeating: 0, count: 10))])
        }
        func status(_ body: () throws -> Void) -> AgentProtocol.Status? {
            do { try body() } catch let e as KVAgentError { return e.status } catch { return nil }
            return .ok
        }
        #expect(status { try c.commit(424_242) } == .unknownID)
        #expect(status { try c.release(7) } == .unknownID)
        #expect(status { _ = try c.raw(op: 99, body: []) } == .badRequest)
        #expect(status { _ = try c.raw(op: AgentProtocol.Op.exists.rawValue, body: [5, 0, 0, 0, 1, 2]) } == .badRequest)
        #expect(status { _ = try c.raw(op: AgentProtocol.Op.exists.rawValue, body: [0, 0, 0, 0, 9]) } == .badRequest)
        #expect(status { _ = try c.raw(op: AgentProtocol.Op.stats.rawValue, body: [], deadline: monotonicNanos() - 1_000_000) } == .deadlineExceeded)
        #expect(status { _ = try c.raw(op: AgentProtocol.Op.hello.rawValue, body: [1, 0, 0, 0, 0, 0, 0, 0]) } == .badRequest)
        // The connection survived all of that.
        #expect(try c.put([(key(3), block(3, 4096))]) == 1)

        // Requests before HELLO, and a stream that is not the protocol at all.
        let raw = try BlockingSocket(path: a.path)
        try raw.send(AgentProtocol.Frame(op: AgentProtocol.Op.stats.rawValue, requestID: 1).encoded())
        var d = AgentProtocol.Decoder()
        let reply = try d.feed(try raw.receive().bytes)
        #expect(reply.first?.status == AgentProtocol.Status.notReady.rawValue)
        try raw.send(Array("GET / HTTP/1.1\r\n\r\n----------".utf8))
        var closed = false
        for _ in 0..<10 where !closed {
            let r = try raw.receive()
            if r.bytes.isEmpty { closed = true } else if let f = try? d.feed(r.bytes).first {
                #expect(f.status == AgentProtocol.Status.badRequest.rawValue)
                #expect(String(decoding: f.body, as: UTF8.self).contains("not a Switchboard KV message"))
            }
        }
        #expect(closed)

        // A header announcing a body over the limit: "too large" (not "bad request"), then closed.
        let big = try BlockingSocket(path: a.path)
        var header = AgentProtocol.Writer()
        header.u32(AgentProtocol.magic)
        header.u32(UInt32(AgentProtocol.maxBody + 1))
        header.bytes += [UInt8](repeating: 0, count: AgentProtocol.headerSize - 8)
        try big.send(header.bytes)
        var bd = AgentProtocol.Decoder()
        let answer = try #require(try bd.feed(try big.receive().bytes).first)
        #expect(answer.status == AgentProtocol.Status.tooLarge.rawValue)
        #expect(String(decoding: answer.body, as: UTF8.self).contains("exceeds the \(AgentProtocol.maxBody)-byte limit"))
    }

    @Test func aClientGoneMidTransferLeaksNothingAndPublishesNothing() throws {
        let a = try RunningAgent(pages: 8)
        let writer = try a.client()
        let r = try writer.reserve([key(1), key(2)])
        writer.pool.write(page: Int(r.pages[0]), from: block(1, 4096))  // half written, then the engine dies
        let reader = try a.client()
        let l = try reader.lease([key(1)])
        #expect(l.id == 0)
        writer.close()
        let s = a.waitFor { ($0["reservations"] as? Int) == 0 && ($0["connections"] as? Int) == 1 }
        #expect(s["reservations"] as? Int == 0 && s["pages_used"] as? Int == 0)
        // A lease held by a dying reader is released too, and the pages are reusable.
        #expect(try reader.put((0..<8).map { (key(10 + $0), block(10 + $0, 4096)) }) == 8)
        let held = try reader.lease([key(10), key(11)])
        #expect(held.pages.count == 2)
        reader.close()
        _ = a.waitFor { ($0["leases"] as? Int) == 0 }
        let c = try a.client()
        #expect(try c.put((0..<8).map { (key(20 + $0), block(20 + $0, 4096)) }) == 8)  // evicts all, pinned none
        for (i, b) in try c.get((0..<8).map { key(20 + $0) }).enumerated() { #expect(b == block(20 + i, 4096)) }
    }

    @Test func expiredLeasesAndReservationsAreReclaimed() throws {
        let a = try RunningAgent(pages: 4)
        let c = try a.client()
        #expect(try c.put([(key(1), block(1, 4096))]) == 1)
        let l = try c.lease([key(1)], leaseMillis: 30)
        let r = try c.reserve([key(2)], leaseMillis: 30)
        let s = a.waitFor { ($0["expired"] as? Int) == 2 }
        #expect(s["leases"] as? Int == 0 && s["reservations"] as? Int == 0)
        #expect(throws: KVAgentError.self) { try c.release(l.id) }
        #expect(throws: KVAgentError.self) { try c.commit(r.id) }
        #expect(try c.exists([key(1), key(2)]) == 1)
    }

    @Test func randomBodiesForEveryOpGetAnAnswerAndNeverBreakTheAgent() throws {
        let a = try RunningAgent(pages: 16)
        let c = try a.client()
        var rng = SystemRandomNumberGenerator()
        var answered = 0
        for _ in 0..<1500 {
            let op = UInt16.random(in: 0...12, using: &rng)
            if op == AgentProtocol.Op.hello.rawValue { continue }
            var body = (0..<Int.random(in: 0...48, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            // Half the time, a plausible key count so that the body parses further.
            if body.count >= 8, Bool.random(using: &rng) { body[4] = UInt8(body.count / 16); body[5...7] = [0, 0, 0] }
            do {
                _ = try c.raw(op: op, body: body)
                answered += 1
            } catch {
                #expect(error.status != nil, "connection broke: \(error)")  // a refusal, never a dead connection
                answered += 1
            }
        }
        #expect(answered > 1000)
        #expect(try c.put([(key(1), block(1, 4096))]) <= 1)   // still serving
        c.close()
        let s = a.waitFor { ($0["connections"] as? Int) == 0 && ($0["reservations"] as? Int) == 0 && ($0["leases"] as? Int) == 0 }
        #expect(s["connections"] as? Int == 0 && s["reservations"] as? Int == 0 && s["leases"] as? Int == 0)
    }
}
