import ArgumentParser
import EventLoop
import HTTP1
import VLLMSim
import Foundation

@main
struct VLLMSimCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vllm-sim",
        abstract: "Simulated vLLM OpenAI servers for routing studies on one machine.",
        discussion: """
        Each --listen address is one simulated pod with its own state and metrics. Pods answer \
        /v1/chat/completions, /v1/completions (streaming or not), /v1/models, /health and /metrics \
        with vLLM's real shapes and V1 metric names. Every response names its pod in x-vllm-sim-pod.
        """)

    @Option(name: .customLong("listen"), help: "host:port of one simulated pod. Repeatable.")
    var listen: [String] = ["127.0.0.1:8000"]

    @Option(name: .customLong("model"), help: "Model name served. Repeatable.")
    var models: [String] = ["tiny"]

    @Option(help: "Milliseconds to the first token.")
    var ttftMs: Double = 0

    @Option(help: "Milliseconds between later tokens.")
    var itlMs: Double = 0

    @Option(help: "Tokens generated when a request sets no max_tokens.")
    var maxTokens: Int = 16

    @Option(help: "Event loops (threads) shared by all pods; 0 = one per core.")
    var loops: Int = 1

    func run() throws {
        let group = try EventLoopGroup(count: loops > 0 ? loops : System.coreCount)
        var servers: [HTTP1Server] = []
        for a in listen {
            var c = SimulatorConfiguration()
            c.models = models
            c.ttftMillis = ttftMs
            c.itlMillis = itlMs
            c.defaultMaxTokens = maxTokens
            c.name = a
            let pod = SimulatedPod(configuration: c)
            servers.append(try HTTP1Server(address: try SocketAddress(parsing: a), group: group, handler: pod.handler))
        }
        FileHandle.standardError.write(Data("vllm-sim: \(servers.count) pod(s) on \(listen.joined(separator: ", ")) serving \(models.joined(separator: ", "))\n".utf8))
        group.start()
        group.join()
    }
}
