import ArgumentParser
import Foundation
import Logging
import TrellisAgent
import TrellisClient
import TrellisDocker
import TrellisModel

struct AgentCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "agent", abstract: "Run the host agent: program this host's kernel from the controller.")

    @OptionGroup var connection: ConnectionOptions
    @Option(help: "This host's name.") var host: String
    @Option(help: "This host's underlay address (its VXLAN tunnel endpoint).") var underlayIP: String
    @Option(help: "The local API's unix socket.") var socket = "/run/trellis/agent.sock"
    @Option(help: "MTU of overlay interfaces (the underlay's less 50).") var mtu: UInt32 = 1450
    @Option(help: "Seconds between traffic reports (endpoint counters and flows) to the controller.") var statsInterval: Double = 5
    @Option(help: "Follow this Docker engine's socket and attach containers started with --net=none and TRELLIS_* variables.")
    var dockerSocket: String?
    @Option(help: "Serve Docker's remote network and IPAM drivers (named trellis) on this socket (the engine looks in /run/docker/plugins).")
    var pluginSocket: String?

    func run() async throws {
        try Names.validate(host, field: "host")
        let underlay = try IPv4Address.parse(underlayIP, field: "underlay-ip")
        let client = connection.client()
        guard statsInterval >= 0.1 else { throw TrellisError.invalid("stats-interval: at least 0.1 seconds", field: "stats-interval") }
        var configuration = AgentConfiguration(controller: client.baseURL, token: client.token, host: host, underlayIP: underlay,
                                               socketPath: socket, overlayMTU: mtu)
        configuration.statsInterval = .milliseconds(Int(statsInterval * 1000))
        let agent = try Agent(configuration: configuration)
        var services: [@Sendable () async throws -> Void] = []
        if let dockerSocket {
            let monitor = ContainerMonitor(agent: agent, engine: DockerEngine(socket: dockerSocket))
            services.append { await monitor.run() }
        }
        if let pluginSocket {
            let driver = RemoteDriver(agent: agent, socketPath: pluginSocket)
            services.append { try await driver.run() }
        }
        print("trellis agent for host \(host) (underlay \(underlay)) serving \(socket)"
              + (dockerSocket.map { ", following Docker at \($0)" } ?? "") + (pluginSocket.map { ", Docker driver on \($0)" } ?? ""))
        fflush(nil)
        try await agent.run(alongside: services)
    }
}

/// Where the local agent's API is.
struct AgentOptions: ParsableArguments {
    @Option(help: "The agent's unix socket (env TRELLIS_AGENT_SOCKET; default /run/trellis/agent.sock).")
    var agent: String?

    func client() -> ControllerClient {
        let path = agent ?? ProcessInfo.processInfo.environment["TRELLIS_AGENT_SOCKET"] ?? "/run/trellis/agent.sock"
        return ControllerClient(baseURL: ControllerClient.baseURL(socket: path), token: nil)
    }
}

struct AttachCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "attach",
                                                    abstract: "Plug a running process's network namespace into a subnet (through this host's agent).")
    @OptionGroup var agent: AgentOptions
    @OptionGroup var output: OutputOptions
    @Option(help: "The subnet ENTERPRISE/DOMAIN/ZONE/SUBNET.") var subnet: String
    @Option(help: "A process whose network namespace is attached.") var pid: Int32?
    @Option(help: "A network namespace path, e.g. /run/netns/NAME.") var netns: String?
    @Option(help: "The endpoint's name.") var name: String?
    @Option(help: "A static address.") var ip: String?
    @Option(help: "The interface name inside the namespace.") var ifname = "eth0"
    @Option(help: "Port profile ENTERPRISE/PROFILE.") var profile: String?
    @Flag(help: "Attach a VM: make a tap on the subnet's bridge (run the VM in the router namespace it names).") var vm = false
    @Option(help: "The VM's tap name (default trt and a random token).") var tap: String?

    func validate() throws {
        if vm {
            guard pid == nil, netns == nil else { throw ValidationError("a VM is attached with --vm [--tap NAME], not --pid or --netns") }
        } else {
            guard (pid == nil) != (netns == nil) else { throw ValidationError("give either --pid N or --netns PATH (or --vm)") }
            guard tap == nil else { throw ValidationError("--tap goes with --vm") }
        }
    }

    func run() async throws {
        try Names.split(subnet, kind: .subnet, field: "subnet")
        let request = AttachRequest(subnet: subnet, name: name, ip: ip, ifname: vm ? nil : ifname, profile: profile, pid: pid,
                                    netns: netns.map { $0.hasPrefix("/") ? $0 : "/run/netns/\($0)" }, vm: vm ? true : nil, tap: tap)
        let endpoint: Endpoint = try await agent.client().post("/v1/attach", request)
        try output.show(endpoint, fields: endpoint.fields)
    }
}

struct DetachCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "detach", abstract: "Unplug an endpoint and release its address.")
    @OptionGroup var agent: AgentOptions
    @Argument(help: ArgumentHelp("The endpoint's path or id.", valueName: "ENTERPRISE/DOMAIN/ZONE/SUBNET/ENDPOINT")) var endpoint: String

    func run() async throws {
        _ = try await agent.client().send(.POST, "/v1/detach", body: try JSONCoding.encoder().encode(DetachRequest(endpoint: endpoint)))
        print("detached \(endpoint)")
    }
}
