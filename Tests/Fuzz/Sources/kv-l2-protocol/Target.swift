import FuzzSupport
import KVProtocol
import KVServer

/// The L2 cache server's frames from a byte stream, decoded and applied to
/// a small real store (put, get with checksum verification, exists,
/// delete): errors or answers, never a crash; and the PUT view decoder
/// must agree with the copying one.
let store = try! CacheStore(capacityBytes: 64 * 256, slotBytes: 256, highWatermark: 0.8, lowWatermark: 0.5)

func check(_ input: [UInt8]) {
    guard let first = input.first else { return }
    let stream = Array(input.dropFirst())
    var decoder = AgentProtocol.Decoder(magic: CacheProtocol.magic, maxBody: CacheProtocol.maxBody)
    Fuzz.pieces(stream, max(1, Int(first) * 8)) { piece in
        guard let frames = try? decoder.feed(piece) else { return false }
        for f in frames { apply(f) }
        return true
    }
    // Bodies on their own, too.
    _ = try? CacheProtocol.decodeGetResponse(stream)
    apply(AgentProtocol.Frame(op: UInt16(first % 6), requestID: 0, body: stream))
}

func apply(_ f: AgentProtocol.Frame) {
    let view = f.op == CacheProtocol.Op.put.rawValue ? try? CacheProtocol.decodePutView(f.body) : nil
    guard let request = try? CacheProtocol.Request.decode(op: f.op, body: f.body) else {
        if view != nil { Fuzz.fail("decodePutView accepted a PUT body the request decoder refuses") }
        return
    }
    switch request {
    case .put(let blocks):
        guard let view, view.count == blocks.count,
              zip(view, blocks).allSatisfy({ $0.key == $1.0 && $0.checksum == $1.1.checksum && Array($0.bytes) == $1.1.bytes }) else {
            Fuzz.fail("the PUT view decoder disagrees with the request decoder")
        }
        _ = store.put(view)
    case .get(let keys):
        let body = store.getResponse(keys)
        guard let blocks = try? CacheProtocol.decodeGetResponse(body) else { Fuzz.fail("the store wrote a GET reply its own decoder refuses") }
        for b in blocks where CacheStore.checksum(b.bytes) != b.checksum { Fuzz.fail("the store returned a block that fails its checksum") }
    case .exists(let keys): _ = store.exists(keys)
    case .delete(let keys): _ = store.delete(keys)
    case .stats: _ = store.stats
    }
}

@main struct Main { static func main() { Fuzz.main(check) } }
