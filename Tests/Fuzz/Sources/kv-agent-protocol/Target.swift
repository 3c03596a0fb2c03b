import FuzzSupport
import KVProtocol

/// The node agent's frames from a byte stream cut where the first byte
/// says, and every body read the way the agent reads its op's fields.
func check(_ input: [UInt8]) {
    guard let first = input.first else { return }
    let stream = Array(input.dropFirst())
    var decoder = AgentProtocol.Decoder()
    Fuzz.pieces(stream, max(1, Int(first) * 8)) { piece in
        guard let frames = try? decoder.feed(piece) else { return false }
        for f in frames { readBody(f) }
        return true
    }
}

func readBody(_ f: AgentProtocol.Frame) {
    var r = AgentProtocol.Reader(f.body)
    switch AgentProtocol.Op(rawValue: f.op) {
    case .hello: _ = try? (r.u32(), r.u32(), r.expectEnd())
    case .putAlloc, .get: _ = try? (r.u32(), r.keys(), r.expectEnd())
    case .putCommit, .putAbort, .release: _ = try? (r.u64(), r.expectEnd())
    case .exists, .prefetch, .delete: _ = try? (r.keys(), r.expectEnd())
    case .stats: _ = try? r.expectEnd()
    case nil: break
    }
}

@main struct Main { static func main() { Fuzz.main(check) } }
