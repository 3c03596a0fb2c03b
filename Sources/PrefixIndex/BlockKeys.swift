/// Turns a prompt into chained block keys: the prompt is cut into blocks of
/// `blockSize` units (bytes in character mode, token ids in tokenizer mode;
/// a trailing partial block is not keyed, as engines cache only full
/// blocks), and block i's key is XXH64(seed; key(i − 1) ∥ block i), with
/// key(−1) = XXH64(seed; model name). A key therefore names the whole
/// prefix up to its block (two prompts share key i only if they share
/// blocks 0…i), and every gateway replica with the same seed computes the
/// same keys.
public struct BlockHasher: Sendable, Equatable {
    public let blockSize: Int
    public let seed: UInt64

    public init(blockSize: Int, seed: UInt64 = 0) {
        precondition(blockSize > 0, "block size must be positive")
        self.blockSize = blockSize
        self.seed = seed
    }

    /// key(−1) for `model`: models never share keys.
    public func root(model: String) -> UInt64 {
        XXH64.hash(Array(model.utf8), seed: seed)
    }

    /// Keys of the full blocks of `bytes` (character mode).
    public func keys(bytes: [UInt8], model: String) -> [UInt64] {
        chain(bytes, unit: 1, model: model)
    }

    /// Keys of the full blocks of `tokens` (tokenizer mode; each id hashed
    /// as 4 little-endian bytes).
    public func keys(tokens: [UInt32], model: String) -> [UInt64] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity((tokens.count / blockSize) * blockSize * 4)
        for t in tokens.prefix((tokens.count / blockSize) * blockSize) {
            bytes.append(UInt8(truncatingIfNeeded: t))
            bytes.append(UInt8(truncatingIfNeeded: t >> 8))
            bytes.append(UInt8(truncatingIfNeeded: t >> 16))
            bytes.append(UInt8(truncatingIfNeeded: t >> 24))
        }
        return chain(bytes, unit: 4, model: model)
    }

    private func chain(_ bytes: [UInt8], unit: Int, model: String) -> [UInt64] {
        let step = blockSize * unit
        let n = bytes.count / step
        var out: [UInt64] = []
        out.reserveCapacity(n)
        var h = root(model: model)
        for b in 0..<n {
            h = XXH64.hash(prefix: h, bytes, (b * step)..<((b + 1) * step), seed: seed)
            out.append(h)
        }
        return out
    }
}
