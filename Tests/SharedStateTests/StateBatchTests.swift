import Logging
import PodSnapshot
import Redis
@testable import SharedState
import Testing

@Suite struct StateBatchTests {
    static let events: [StateEvent] = [
        .prefix(pod: "10.0.0.7:8000", capacity: 4096, keys: [1, 0xFFFF_FFFF_FFFF_FFFF, 42]),
        .prefix(pod: "[fd00::1]:8000", capacity: nil, keys: []),
        .charge(user: "alice", tokens: 1234.5),
        .charge(user: "bob \u{1F600}", tokens: -17),
        .usage(replica: "gw-1", ticket: 99, promptTokens: 31, completionTokens: 7, estimated: false),
        .usage(replica: "gw-2", ticket: 1, promptTokens: nil, completionTokens: 0, estimated: true),
        .resync(replica: ""),
        .resync(replica: "gw-3"),
    ]

    @Test func everyKindRoundTrips() throws {
        let bytes = StateBatch.encode(Self.events)
        #expect(try StateBatch.decode(bytes) == Self.events)
        // Built one event at a time (the outbox's way) it is the same batch.
        var appended: [UInt8] = []
        for e in Self.events { StateBatch.append(e, to: &appended) }
        #expect(appended == bytes)
        #expect(try StateBatch.decode(StateBatch.encode([])) == [])
    }

    @Test func everyTruncationIsRejectedWhole() {
        let bytes = StateBatch.encode(Self.events)
        // Cut at every length: either an error or (at an event boundary) a
        // strict prefix of the events, never a crash or a made-up event.
        for n in 0..<bytes.count {
            if let got = try? StateBatch.decode(Array(bytes[..<n])) {
                #expect(Array(Self.events.prefix(got.count)) == got, "cut at \(n)")
                #expect(got.count < Self.events.count)
            }
        }
    }

    @Test func foreignBytesAreErrorsNotCrashes() {
        #expect(throws: StateBatch.DecodeError.version(nil)) { try StateBatch.decode([]) }
        #expect(throws: StateBatch.DecodeError.version(9)) { try StateBatch.decode([9, 1, 2]) }
        #expect(throws: StateBatch.DecodeError.unknownKind(77, at: 1)) { try StateBatch.decode([1, 77]) }
        // A key count larger than the bytes left.
        var huge: [UInt8] = [1, 1, 1, 0, 65]  // prefix event, pod "A"
        huge += [255, 255, 255, 255, 255, 255, 255, 255]  // capacity -1
        huge += [0, 0, 0, 0, 0, 0, 0, 1]  // 2^56 keys
        #expect(throws: StateBatch.DecodeError.self) { try StateBatch.decode(huge) }
        // A non-finite charge.
        var nan: [UInt8] = [1, 2, 1, 0, 65]
        let bits = Double.nan.bitPattern
        for i in 0..<8 { nan.append(UInt8(truncatingIfNeeded: bits >> (8 * UInt64(i)))) }
        #expect(throws: StateBatch.DecodeError.self) { try StateBatch.decode(nan) }
        // Random garbage after a valid version byte: never a crash.
        var g = SystemRandomNumberGenerator()
        for _ in 0..<2000 {
            let n = Int.random(in: 0...64, using: &g)
            let junk = [1] + (0..<n).map { _ in UInt8.random(in: 0...255, using: &g) }
            _ = try? StateBatch.decode(junk)
        }
    }
}

@Suite struct OutboxTests {
    @Test func aFullBatchDropsEventsAndMarksTheGap() throws {
        var c = SharedStateConfiguration(redis: RedisConfiguration(host: "127.0.0.1", port: 1), replicaID: "r")
        c.maxPendingBytes = 100
        let s = SharedRoutingState(configuration: c, logger: Logger(label: "test"))
        let pod = PodEndpoint(host: "10.0.0.1", port: 8000)
        for _ in 0..<10 { s.recorded(keys: [1, 2, 3, 4], pod: pod, capacity: nil) }
        #expect(s.counters.eventsDropped.value > 0)
        let first = try #require(s.takeBatch())
        #expect(first.gap && first.events + Int(s.counters.eventsDropped.value) == 10)
        #expect(try StateBatch.decode(first.bytes).count == first.events)
        // The next batch starts clean.
        s.charged(user: "u", tokens: 1)
        let second = try #require(s.takeBatch())
        #expect(!second.gap && second.events == 1)
        #expect(s.takeBatch() == nil)
    }
}
