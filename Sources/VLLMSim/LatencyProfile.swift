/// How long one engine step takes on a modelled GPU and model.
///
/// A step runs `tokens` new tokens (prefill chunks plus one per decoding
/// sequence) against `context` tokens of KV in total. Its time is a roofline:
///
///     overhead + max(weightRead, tokens × computePerToken) + context × kvReadPerToken
///
/// Small batches are bound by reading the weights once per step; large
/// prefills by compute; long contexts add the time to read their KV.
public struct LatencyProfile: Sendable, Equatable {
    public var name: String
    /// Scheduler and launch overhead per step, seconds.
    public var stepOverhead: Double
    /// Time to stream the weights from HBM once, seconds.
    public var weightRead: Double
    /// Time of the forward-pass FLOPs of one token, seconds.
    public var computePerToken: Double
    /// Time to read one token's KV (all layers) during attention, seconds.
    public var kvReadPerToken: Double
    /// KV blocks (of `blockSize` tokens) the card holds after the weights.
    public var kvBlocks: Int
    public var blockSize: Int

    public func stepSeconds(tokens: Int, context: Int) -> Double {
        stepOverhead + max(weightRead, Double(tokens) * computePerToken) + Double(context) * kvReadPerToken
    }

    /// Llama-3-8B (bf16, 16.1 GB of weights, 128 KiB of KV per token) on an
    /// H100 SXM 80 GB: 3.35 TB/s HBM at ~80 % gives 6 ms per weight pass;
    /// 16 GFLOP per token at ~60 % of 989 TFLOP/s gives 27 µs per prefill
    /// token; KV at ~2.7 TB/s gives 49 ns per context token; 0.9 of 80 GB
    /// minus weights and activations leaves ~52 GB, ~400k tokens of KV. This
    /// lands near public vLLM figures for the pair: ~7 ms inter-token latency
    /// at low concurrency and ~30 ms to prefill 1k tokens.
    public static let h100Llama3_8B = LatencyProfile(
        name: "h100-llama3-8b", stepOverhead: 0.001, weightRead: 0.006, computePerToken: 27e-6,
        kvReadPerToken: 49e-9, kvBlocks: 24_800, blockSize: 16)

    /// The same model on an A100 SXM 80 GB: 2.04 TB/s HBM (weights in
    /// ~9.5 ms), 312 TFLOP/s bf16 at ~60 % (86 µs per token), KV at
    /// ~1.6 TB/s (82 ns per context token), the same ~400k tokens of KV.
    public static let a100Llama3_8B = LatencyProfile(
        name: "a100-llama3-8b", stepOverhead: 0.0015, weightRead: 0.0095, computePerToken: 86e-6,
        kvReadPerToken: 82e-9, kvBlocks: 24_800, blockSize: 16)

    public static let all: [LatencyProfile] = [h100Llama3_8B, a100Llama3_8B]

    public static func named(_ name: String) -> LatencyProfile? { all.first { $0.name == name } }
}
