import Foundation
import KVAgentClient
import KVCache
import KVProtocol

/// Settings of the simulator's KV-connector model (`vllm-sim --kv-agent-socket`).
public struct KVConnectorSettings: Sendable {
    /// The node agent's Unix socket.
    public var socketPath: String
    /// Bytes actually stored per block (small: the tier's code paths run for
    /// real without moving what a real engine's blocks weigh). The agent's
    /// --block-bytes must match.
    public var blockBytes = 4096
    /// What one block of the modelled engine weighs (Llama-3-8B fp16, 16
    /// tokens: 32 layers × K,V × 8 heads × 128 × 2 bytes × 16 = 2 MiB).
    public var modelBlockBytes = 2 << 20
    /// Modelled host-to-device bandwidth for loaded blocks (GB/s).
    public var loadGBps = 16.0
    /// Per-call time budget for the agent.
    public var timeoutMillis: UInt64 = 1_000
    /// After an agent failure, how long to run without it before reconnecting.
    public var retrySeconds = 5.0
    public var namespace = "sim"

    public init(socketPath: String) { self.socketPath = socketPath }

    /// Modelled seconds to load one block onto the device.
    public var secondsPerLoadedBlock: Double { Double(modelBlockBytes) / (loadGBps * 1e9) }
}

/// The simulated engine's connector: the scheduler asks the real node agent
/// for the blocks of a prompt its own prefix cache lacks and loads what the
/// agent has (the engine charges modelled transfer time for those instead
/// of prefill time); newly computed prompt blocks are stored through the
/// agent. Keys are the real ones (the agent's key space over the engine's
/// tokens), block payloads are small and derived from their key, so every
/// load is checked byte for byte. As in the real connector, an agent that
/// fails or is slow means no external hits (the engine recomputes), never an
/// error. Engine-loop confined.
final class SimKVConnector {
    let settings: KVConnectorSettings
    let space: BlockKeySpace
    private var client: KVAgentClient?
    private var retryAt = 0.0
    private var buffers: [[UInt8]] = []
    private(set) var loadedBlocks = 0
    private(set) var storedBlocks = 0
    private(set) var corruptBlocks = 0
    private(set) var failures = 0
    var lastError = ""

    init(settings: KVConnectorSettings, model: String, blockSize: Int) {
        self.settings = settings
        space = BlockKeySpace(namespace: settings.namespace, model: model, layout: "vllm-sim-\(settings.blockBytes)", blockSize: blockSize)
    }

    /// The connector keys of the full blocks of `tokens`.
    func keys(_ tokens: ArraySlice<UInt32>) -> [BlockKey] { space.keys(for: Array(tokens)) }

    /// A block's payload: a function of its key, so a load can be checked.
    static func payload(_ key: BlockKey, bytes: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: bytes)
        var x = key.high ^ (key.low &* 0x9E37_79B9_7F4A_7C15)
        for i in 0..<bytes {
            if i % 8 == 0 { x = mix(x) }
            out[i] = UInt8(truncatingIfNeeded: x >> (8 * UInt64(i % 8)))
        }
        return out
    }

    private func agent() -> KVAgentClient? {
        if let c = client { return c }
        let now = Date().timeIntervalSince1970
        guard now >= retryAt else { return nil }
        do {
            let c = try KVAgentClient(socketPath: settings.socketPath, pageSize: settings.blockBytes)
            c.timeoutMillis = settings.timeoutMillis
            client = c
            return c
        } catch {
            fail(error.description)
            return nil
        }
    }

    private func fail(_ why: String) {
        failures += 1
        lastError = why
        client?.close()
        client = nil
        retryAt = Date().timeIntervalSince1970 + settings.retrySeconds
    }

    /// Loads the longest prefix of `keys` the agent holds (L1, or read
    /// through from L2 by the agent); returns how many blocks arrived intact.
    func load(_ keys: ArraySlice<BlockKey>) -> Int {
        guard !keys.isEmpty, let c = agent() else { return 0 }
        if buffers.count < keys.count {
            buffers += [[UInt8]](repeating: [UInt8](repeating: 0, count: settings.blockBytes), count: keys.count - buffers.count)
        }
        let n: Int
        do { n = try c.get(Array(keys), into: &buffers) } catch {
            fail(error.description)
            return 0
        }
        var ok = 0
        for (i, k) in keys.prefix(n).enumerated() {
            guard buffers[i] == Self.payload(k, bytes: settings.blockBytes) else {
                corruptBlocks += 1
                break
            }
            ok += 1
        }
        loadedBlocks += ok
        return ok
    }

    /// Stores blocks (the agent skips keys it already holds).
    func store(_ keys: [BlockKey]) {
        guard !keys.isEmpty, let c = agent() else { return }
        do {
            storedBlocks += try c.put(keys.map { ($0, Self.payload($0, bytes: settings.blockBytes)) })
        } catch {
            fail(error.description)
        }
    }
}
