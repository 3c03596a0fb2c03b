import EventLoop
import Foundation
import KVAgent
import Testing
@testable import VLLMSim

/// The KV-connector model against a real node agent (in process, its own
/// loop): what one engine computes, another loads instead of prefilling.
@Suite(.serialized) struct ConnectorModelTests {
    final class Agent {
        let group: EventLoopGroup
        let agent: KVAgent
        let path: String
        init(blockBytes: Int, pages: Int) throws {
            path = NSTemporaryDirectory() + "sbsim-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
            group = try EventLoopGroup(count: 1)
            var c = KVAgentConfiguration()
            c.socketPath = path
            c.pageSize = blockBytes
            c.capacityBytes = pages * blockBytes
            agent = try KVAgent(configuration: c, loop: group.loops[0])
            group.start(name: "sim-agent")
        }
        func stop() {
            agent.close()
            group.stopAll()
            group.join()
            unlink(path)
        }
    }

    func engine(_ socket: String, metrics: SimMetrics) -> EngineModel {
        var c = EngineConfiguration(profile: .h100Llama3_8B)
        c.numBlocks = 1000
        c.blockSize = 16
        var k = KVConnectorSettings(socketPath: socket)
        k.blockBytes = 512
        return EngineModel(configuration: c, seed: 0, metrics: metrics,
                           connector: SimKVConnector(settings: k, model: "tiny", blockSize: 16))
    }

    @Test func aPromptComputedByOneEngineIsLoadedByAnother() throws {
        let agent = try Agent(blockBytes: 512, pages: 256)
        defer { agent.stop() }
        let prompt = SimTokenizer.prompt(words(16 * 20 + 3, from: 7))   // 20 full blocks and a tail
        let ma = SimMetrics(), mb = SimMetrics()
        let a = engine(agent.path, metrics: ma), b = engine(agent.path, metrics: mb)
        var out: [EngineEmission] = []
        var now = 0.0
        _ = a.submit(prompt: prompt, maxTokens: 2, now: now)
        let ra = drain(a, emitted: &out, now: &now)
        #expect(ra[0].prefillTokens == prompt.count, "A computes the whole prompt")
        #expect(a.connector!.storedBlocks == prompt.count / 16)

        _ = b.submit(prompt: prompt, maxTokens: 2, now: now)
        let rb = drain(b, emitted: &out, now: &now)
        let usable = (prompt.count - 1) / 16
        #expect(b.connector!.loadedBlocks == usable)
        #expect(rb[0].prefillTokens == prompt.count - usable * 16, "B prefills only what it did not load")
        // B's first step is charged the modelled transfer of the loaded blocks instead of their prefill.
        let transfer = Double(usable) * KVConnectorSettings(socketPath: "").secondsPerLoadedBlock
        let profile = b.configuration.profile
        #expect(rb[0].seconds == profile.stepSeconds(tokens: rb[0].scheduledTokens, context: rb[0].contextTokens) + transfer)
        #expect(ra[0].seconds == profile.stepSeconds(tokens: ra[0].scheduledTokens, context: ra[0].contextTokens))
        let page = mb.render(model: "tiny")
        #expect(page.contains("vllm:external_prefix_cache_hits_total{engine=\"0\",model_name=\"tiny\"} \(usable * 16)"))
        #expect(b.connector!.corruptBlocks == 0)
    }

    @Test func noAgentMeansNoExternalHitsNotAnError() throws {
        let m = SimMetrics()
        let e = engine("/nonexistent/kv.sock", metrics: m)
        var out: [EngineEmission] = []
        var now = 0.0
        let prompt = SimTokenizer.prompt(words(100, from: 3))
        _ = e.submit(prompt: prompt, maxTokens: 3, now: now)
        let r = drain(e, emitted: &out, now: &now)
        #expect(r[0].prefillTokens == prompt.count)
        #expect(out.count == 3)
        #expect(e.connector!.failures >= 1 && e.connector!.lastError.contains("cannot connect"))
    }
}
