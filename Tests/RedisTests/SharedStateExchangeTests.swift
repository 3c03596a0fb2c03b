import EventLoop
import Foundation
import Logging
import PodSnapshot
import Redis
import Routing
import SharedState
import Synchronization
import Testing

/// Two replicas' shared state through a real redis-server, each on its own
/// event loop with its own pods registry and prefix index (as two gateway
/// processes would have).
final class Replica {
    let registry = PodRegistry()
    let state: SharedRoutingState
    /// Signalled after each of this replica's exchanges.
    let exchanged = DispatchSemaphore(value: 0)
    let routers: RouterRegistry
    let pods = [PodEndpoint(host: "10.1.0.1", port: 8000), PodEndpoint(host: "10.1.0.2", port: 8000)]

    init(_ id: String, port: Int, loop: EventLoop, _ configure: (inout SharedStateConfiguration) -> Void = { _ in }) {
        var c = SharedStateConfiguration(redis: RedisConfiguration(host: "127.0.0.1", port: port), replicaID: id)
        c.intervalNanos = 5_000_000
        c.peerStaleNanos = 500_000_000
        configure(&c)
        let exchanged = self.exchanged
        state = SharedRoutingState(configuration: c, logger: Logger(label: "test.\(id)")) { exchanged.signal() }
        let cache = PrefixCache(sink: state)
        routers = .standard(seed: 1, prefix: cache, sink: state)
        registry.publish(models: ["m": pods])
        state.start(on: loop, targets: .init(registry: registry, prefix: routers.prefixCache, fairness: routers.fairness))
    }

    var prefix: PrefixCache { routers.prefixCache! }

    /// Routes a prompt with prefix-cache (records it and publishes the insertion).
    func route(_ text: String) throws -> PodEndpoint {
        let r = RoutingRequest(model: "m", stream: false, bodyBytes: text.utf8.count, requestID: "r", prompt: Array(text.utf8))
        return try routers.router(named: "prefix-cache").decide(r, view: registry.snapshot.view(for: "m")!).pod
    }

    func held(_ text: String) -> [Int] {
        let keys = prefix.hasher.keys(bytes: Array(text.utf8), model: "m")
        return prefix.index.longestMatches(keys, pods: pods)
    }
}

/// Waits until `condition` holds, rechecking it after each of `replica`'s
/// exchanges (its state changes only there); fails with `what` if it does
/// not hold within `timeout`.
func eventually(_ what: String, on replica: Replica, timeout: Double = 10, _ condition: () -> Bool) -> Bool {
    let deadline = DispatchTime.now() + timeout
    while !condition() {
        guard replica.exchanged.wait(timeout: deadline) == .success else {
            Issue.record("timed out waiting for \(what)")
            return false
        }
    }
    return true
}

@Suite(.serialized) struct SharedStateExchangeTests {
    func doc(_ name: String) -> String { (0..<120).map { "\(name)\($0)" }.joined(separator: " ") }

    @Test func insertionsChargesAndInFlightReachThePeer() throws {
        let f = try RedisFixture(loops: 2)
        defer { f.close() }
        let a = Replica("a", port: f.server.port, loop: f.group.loops[0])
        let b = Replica("b", port: f.server.port, loop: f.group.loops[1])
        // A routes a prompt: B's index learns where it went.
        let pod = try a.route(doc("shared") + " first")
        let blocks = a.held(doc("shared"))
        #expect(blocks.max()! > 0)
        #expect(eventually("B to learn A's insertion", on: b) { b.held(doc("shared")) == blocks })
        // ...so B sends the follow-up to the same pod.
        #expect(try b.route(doc("shared") + " second") == pod)
        // In-flight: A's requests on a pod show at B as the peer's (and the other way round).
        let load = a.registry.snapshot.loads[pod.address]!
        load.start(tokens: 100)
        load.start(tokens: 50)
        #expect(eventually("B to see A's 2 requests in flight", on: b) { b.registry.snapshot.loads[pod.address]!.requests == 2 })
        #expect(b.registry.snapshot.loads[pod.address]!.peerRequests == 2)
        #expect(b.registry.snapshot.loads[pod.address]!.localRequests == 0)
        load.finish(tokens: 100)
        load.finish(tokens: 50)
        #expect(eventually("B to see them finish", on: b) { b.registry.snapshot.loads[pod.address]!.requests == 0 })
        // vtc-basic charges: A's estimate for alice counts at B.
        let r = RoutingRequest(model: "m", stream: false, bodyBytes: 400, requestID: "x", maxTokens: 50, user: "alice")
        _ = try a.routers.router(named: "vtc-basic").decide(r, view: a.registry.snapshot.view(for: "m")!)
        let charged = a.routers.fairness!.tokens(of: "alice")
        #expect(charged > 0)
        #expect(eventually("B to count alice's charge", on: b) { b.routers.fairness!.tokens(of: "alice") == charged })
        #expect(a.state.counters.eventsDropped.value == 0 && b.state.counters.malformed.value == 0)
    }

    @Test func peersInFlightStopCountingWhenRedisIsGone() throws {
        let f = try RedisFixture(loops: 2)
        defer { f.close() }
        let a = Replica("a", port: f.server.port, loop: f.group.loops[0])
        let b = Replica("b", port: f.server.port, loop: f.group.loops[1])
        let load = a.registry.snapshot.loads[a.pods[0].address]!
        load.start(tokens: 10)
        #expect(eventually("B to see A's request in flight", on: b) { b.registry.snapshot.loads[a.pods[0].address]!.requests == 1 })
        f.server.stop()
        // A's report can no longer change: after the stale time B counts its own requests only.
        #expect(eventually("B to stop counting A's request", on: b) { b.registry.snapshot.loads[a.pods[0].address]!.requests == 0 })
        #expect(b.state.counters.peers.load(ordering: .relaxed) == 0)
        load.finish(tokens: 10)
    }

    @Test func aGapInAPeersBatchesGetsItsIndexRepublished() throws {
        let f = try RedisFixture(loops: 2)
        defer { f.close() }
        let a = Replica("a", port: f.server.port, loop: f.group.loops[0])
        let b = Replica("b", port: f.server.port, loop: f.group.loops[1])
        _ = try a.route(doc("published") + " q")
        #expect(eventually("B to apply A's first batch", on: b) { b.held(doc("published")).max()! > 0 })
        // Blocks A holds whose batch never reached Redis (as when Redis was down)...
        let lost = doc("lost")
        a.prefix.index.record(a.prefix.hasher.keys(bytes: Array(lost.utf8), model: "m"), pod: a.pods[1])
        #expect(b.held(lost) == [0, 0])
        // ...and a later batch of A's that shows the gap.
        let c = f.first
        #expect(waitConnected(c))
        let entry = command(c, ["XADD", "switchboard:state:events", "*", "r", "a", "s", "1000", "b",
                                String(decoding: StateBatch.encode([]), as: UTF8.self)])
        guard case .success(.string)? = entry else {
            Issue.record("XADD failed: \(String(describing: entry))")
            return
        }
        // B asks A for a resync; A republishes its index; B now holds the lost blocks too.
        #expect(eventually("B to get A's republished index", on: b) { b.held(lost)[1] > 0 })
        #expect(b.state.counters.gaps.value >= 1)
        #expect(a.state.counters.resyncsServed.value >= 1)  // requests within a second are served together
    }

    @Test func aLargeIndexResyncsInEntriesWithoutStartingAStorm() throws {
        let f = try RedisFixture(loops: 2)
        defer { f.close() }
        let small: (inout SharedStateConfiguration) -> Void = { c in
            c.maxPendingBytes = 64 << 10       // far below the index: a resync through the batch would overflow it
            c.resyncChunkBlocks = 1_000
            c.resyncEntriesPerTick = 4
        }
        let a = Replica("a", port: f.server.port, loop: f.group.loops[0], small)
        // 40,000 blocks A holds and never published (320 KB of keys).
        var keys: [UInt64] = []
        for i in 0..<40_000 { keys.append(UInt64(i) &* 0x9E37_79B9_7F4A_7C15 | 1) }
        a.prefix.index.record(keys, pod: a.pods[0])
        // B starts and asks every peer for a resync: A republishes in 40 entries, 4 per tick.
        let b = Replica("b", port: f.server.port, loop: f.group.loops[1], small)
        #expect(eventually("B to hold A's 40,000 blocks", on: b) { b.prefix.index.count(of: b.pods[0]) == 40_000 })
        #expect(b.prefix.index.longestMatches([keys[0]], pods: b.pods) == [1, 0])
        // No gap, no second resync: the republished index never went through the (small) batch.
        #expect(b.state.counters.gaps.value == 0 && a.state.counters.eventsDropped.value == 0)
        #expect(a.state.counters.resyncsServed.value == 1, "served \(a.state.counters.resyncsServed.value)")
    }

    @Test func aMalformedEntryIsCountedAndSkipped() throws {
        let f = try RedisFixture(loops: 2)
        defer { f.close() }
        let b = Replica("b", port: f.server.port, loop: f.group.loops[1])
        let c = f.first
        #expect(waitConnected(c))
        _ = command(c, ["XADD", "switchboard:state:events", "*", "r", "z", "s", "1", "b", "\u{1}\u{9}garbage"])
        _ = command(c, ["XADD", "switchboard:state:events", "*", "no", "fields"])
        #expect(eventually("B to count both malformed entries", on: b) { b.state.counters.malformed.value == 2 })
        // And it goes on applying good entries.
        let a = Replica("a", port: f.server.port, loop: f.group.loops[0])
        _ = try a.route(doc("after") + " q")
        #expect(eventually("B to apply a good batch after the bad ones", on: b) { b.held(doc("after")).max()! > 0 })
    }
}
