import EventLoop
import Foundation
import KVProtocol
import KVServer

/// A stand-in server for the baseline: the same event loop, socket and
/// frame code as the cache server, answering PUTs with nothing and GETs with
/// a prebuilt body of the same size, storing and verifying nothing.
final class PlainCopyConnection: StreamSocketDelegate {
    let socket: StreamSocket
    /// GET replies by the number of keys asked.
    let replies: [Int: [UInt8]]
    private var decoder = AgentProtocol.Decoder(magic: CacheProtocol.magic, maxBody: CacheProtocol.maxBody)
    init(socket: StreamSocket, replies: [Int: [UInt8]]) {
        self.socket = socket
        self.replies = replies
        socket.highWater = 2 * CacheProtocol.maxBody
        socket.lowWater = CacheProtocol.maxBody / 2
    }
    func socketRead(_ socket: StreamSocket, _ bytes: ArraySlice<UInt8>) {
        guard let frames = try? decoder.feed(bytes) else { return socket.close() }
        for f in frames {
            var r = AgentProtocol.Reader(f.body)
            let n = Int((try? r.u32()) ?? 0)
            let body = f.op == CacheProtocol.Op.get.rawValue ? replies[n] ?? [0, 0, 0, 0] : [0, 0, 0, 0]
            socket.write(AgentProtocol.Frame(op: f.op, requestID: f.requestID, body: body).encoded(magic: CacheProtocol.magic))
        }
        socket.flush()
    }
    func socketDrained(_ socket: StreamSocket) {}
    func socketClosed(_ socket: StreamSocket, error: SystemError?) {}
}

/// Keeps the baseline's connections alive (sockets hold their delegates
/// weakly); touched only on the baseline's loop.
final class PlainCopyConnections: @unchecked Sendable {
    var list: [PlainCopyConnection] = []
}

/// A blocking frame client (one call at a time).
struct FrameClient {
    let socket: BlockingSocket
    var decoder = AgentProtocol.Decoder(magic: CacheProtocol.magic, maxBody: CacheProtocol.maxBody)
    var buffer = [UInt8](repeating: 0, count: 1 << 20)
    var nextID: UInt32 = 1
    init(port: Int) throws { socket = try BlockingSocket(host: "127.0.0.1", port: port) }
    mutating func call(_ op: CacheProtocol.Op, _ body: [UInt8]) throws -> AgentProtocol.Frame {
        nextID += 1
        try socket.send(AgentProtocol.Frame(op: op.rawValue, requestID: nextID, body: body).encoded(magic: CacheProtocol.magic))
        while true {
            let n = try socket.receive(into: &buffer)
            guard n > 0 else { throw AgentProtocol.Malformed("server closed") }
            if let f = try decoder.feed(buffer[0..<n]).first { return f }
        }
    }
}

/// L2 over loopback TCP: put and get GB/s for 2 MiB blocks in batches of 8
/// against the plain socket-copy baseline in the same run (best of three),
/// then GET latency (one block) at a fixed rate, p50/p99, both servers.
func kvL2Bench(rate: Int, seconds duration: Double) {
    let block = 2 << 20, batch = 8, blocks = 64
    do {
        let group = try EventLoopGroup(count: 2)
        var c = KVServerConfiguration()
        c.listen = .tcp(host: "127.0.0.1", port: 0)
        c.slotBytes = block
        c.capacityBytes = 2 * blocks * block
        let server = try KVCacheServer(configuration: c, loop: group.loops[0])
        let data = (0..<blocks).map { i in [UInt8](repeating: UInt8(truncatingIfNeeded: i &* 7), count: block) }
        let sums = data.map { CacheStore.checksum($0) }
        let keys = (0..<blocks).map { BlockKey(high: UInt64($0) &* 0x9E37_79B9_7F4A_7C15, low: 42) }
        // The baseline's GET reply: what the cache server's reply to a batch weighs.
        let replies = [1, batch].reduce(into: [Int: [UInt8]]()) { d, n in
            d[n] = CacheProtocol.getResponse((0..<n).map { CacheProtocol.Block(checksum: sums[$0], bytes: data[$0]) })
        }
        let plain = try Listener(address: .tcp(host: "127.0.0.1", port: 0))
        let held = PlainCopyConnections()
        try plain.attach(to: group.loops[1]) { fd, loop in
            guard let s = try? StreamSocket(fd: fd, loop: loop) else { return }
            let conn = PlainCopyConnection(socket: s, replies: replies)
            s.delegate = conn
            held.list.append(conn)
        }
        group.start(name: "l2-bench")
        defer { group.stopAll(); group.join() }

        let putBodies = stride(from: 0, to: blocks, by: batch).map { start in
            CacheProtocol.Request.put((start..<start + batch).map { (keys[$0], CacheProtocol.Block(checksum: sums[$0], bytes: data[$0])) }).body()
        }
        let getBodies = stride(from: 0, to: blocks, by: batch).map { CacheProtocol.Request.get(Array(keys[$0..<$0 + batch])).body() }
        func throughput(port: Int) throws -> (put: Double, get: Double) {
            var client = try FrameClient(port: port)
            var bestPut = 0.0, bestGet = 0.0
            for _ in 0..<3 {
                let tp = try seconds { for b in putBodies { _ = try client.call(.put, b) } }
                bestPut = max(bestPut, Double(blocks * block) / tp / 1e9)
                var got = 0
                let tg = try seconds { for b in getBodies { got += try client.call(.get, b).body.count } }
                precondition(got >= blocks * block, "GET returned \(got) bytes of \(blocks * block)")
                bestGet = max(bestGet, Double(got) / tg / 1e9)
            }
            return (bestPut, bestGet)
        }
        let l2 = try throughput(port: server.boundPort!)
        let base = try throughput(port: plain.boundPort!)
        print(String(format: "L2 loopback TCP, 2 MiB blocks, %d per call: put %.2f GB/s vs plain socket copy %.2f GB/s (%.0f%%); get %.2f GB/s vs %.2f GB/s (%.0f%%)",
                     batch, l2.put, base.put, 100 * l2.put / base.put, l2.get, base.get, 100 * l2.get / base.get))

        // Latency at a fixed rate: one 2 MiB block per GET, sends on a fixed schedule.
        let one = CacheProtocol.Request.get([keys[0]]).body()
        func latency(port: Int) throws -> (p50: Double, p99: Double, n: Int) {
            var client = try FrameClient(port: port)
            let n = Int(Double(rate) * duration), interval = 1e9 / Double(rate)
            var samples: [Double] = []
            samples.reserveCapacity(n)
            let start = DispatchTime.now().uptimeNanoseconds
            for i in 0..<n {
                let due = start + UInt64(Double(i) * interval)
                while DispatchTime.now().uptimeNanoseconds < due {}
                _ = try client.call(.get, one)
                // From the scheduled send: a slow reply delays the next ones, and they count it.
                samples.append(Double(DispatchTime.now().uptimeNanoseconds - due) / 1e6)
            }
            samples.sort()
            return (samples[n / 2], samples[min(n - 1, Int(Double(n) * 0.99))], n)
        }
        let lat = try latency(port: server.boundPort!)
        let baseLat = try latency(port: plain.boundPort!)
        print(String(format: "L2 GET of one 2 MiB block at %d/s (%d requests): p50 %.3f ms, p99 %.3f ms; plain socket copy p50 %.3f ms, p99 %.3f ms",
                     rate, lat.n, lat.p50, lat.p99, baseLat.p50, baseLat.p99))
    } catch {
        print("kv-l2: cannot run: \(error)")
    }
}
