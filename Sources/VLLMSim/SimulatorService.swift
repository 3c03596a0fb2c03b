import EventLoop
import HTTP1
import Logging

/// The simulator as a process runs it: one simulated pod per listen
/// address, spread over the loops of one group. `run()` blocks.
public final class SimulatorService {
    public struct StartError: Error, CustomStringConvertible {
        public let description: String
    }

    let group: EventLoopGroup
    let servers: [HTTP1Server]
    let logger: Logger
    let summary: String

    /// Binds every address now (a taken port fails here, before serving);
    /// each pod gets `template` with its address as its name.
    public init(listen: [String], template: SimulatorConfiguration, loops: Int, described: String, logger: Logger) throws {
        group = try EventLoopGroup(count: loops > 0 ? loops : System.coreCount)
        var servers: [HTTP1Server] = []
        for (i, a) in listen.enumerated() {
            var c = template
            c.name = a
            let pod = SimulatedPod(configuration: c, loop: group.loops[i % group.loops.count])
            do {
                servers.append(try HTTP1Server(address: try SocketAddress(parsing: a), group: group, handler: pod.handler))
            } catch {
                throw StartError(description: "cannot listen on \(a): \(error)")
            }
        }
        self.servers = servers
        self.logger = logger
        summary = "\(servers.count) pod(s) on \(listen.joined(separator: ", ")) serving \(template.models.joined(separator: ", ")); \(described)"
    }

    public func run() {
        logger.notice("sim.serving", metadata: ["sim.pods": "\(summary)"])
        group.start()
        group.join()
    }
}
