import ArgumentParser
import Foundation
import Logging
import ServiceLifecycle
import TrellisAgent
import TrellisClient
import TrellisDocker
import TrellisModel

struct AgentCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "agent",
                                                    abstract: "Run the host agent: program this host's kernel from the controller.")

    @Option(help: ArgumentHelp("""
        Controller URL or unix:PATH, or the controllers of one cluster, comma-separated: the agent uses one and \
        moves to the next when it fails (env TRELLIS_CONTROLLER; default http://127.0.0.1:7400).
        """))
    var controller: String?
    @Option(help: "A join token to exchange for this host's credential at the first start (env TRELLIS_JOIN_TOKEN; shown by ps).")
    var joinToken: String?
    @Option(help: "A file holding the join token (read once, at the first start).") var joinTokenFile: String?
    @Option(help: "Where the host's credential is kept (mode 0600; default STATE-DIR/credential).") var credentialFile: String?
    @Option(help: "The agent's state directory.") var stateDir = "/var/lib/trellis/agent"
    @Option(help: "The controller's CA certificate for HTTPS (default STATE-DIR/ca.pem, written at the first join).") var caFile: String?
    @Option(help: "The SHA-256 fingerprint of the controller's CA (else the join token's).") var caFingerprint: String?
    @Option(help: "This host's name.") var host: String
    @Option(help: "This host's underlay address (its VXLAN tunnel endpoint).") var underlayIP: String
    @Option(help: "The local API's unix socket.") var socket = "/run/trellis/agent.sock"
    @Option(help: "A group whose members may also use the local sockets (mode 0660); without it, root alone (0600).")
    var socketGroup: String?
    @Option(help: "MTU of overlay interfaces (the underlay's less 50).") var mtu: UInt32 = 1450
    @Option(help: ArgumentHelp("The datapath: fast (eBPF from port to port and VXLAN device, skipping the bridges and the router"
                               + " for connections the ruleset accepted), bridge, or auto (fast where the kernel runs it)."))
    var datapath = DatapathChoice.auto
    @Option(help: "Seconds between traffic reports (endpoint counters and flows) to the controller.") var statsInterval: Double = 5
    @Option(help: "Follow this Docker engine's socket and attach containers started with --net=none and TRELLIS_* variables.")
    var dockerSocket: String?
    @Option(help: ArgumentHelp("Serve Docker's remote network and IPAM drivers (named trellis) on this socket"
                               + " (the engine looks in /run/docker/plugins)."))
    var pluginSocket: String?

    func run() async throws {
        try Names.validate(host, field: "host")
        let underlay = try IPv4Address.parse(underlayIP, field: "underlay-ip")
        guard statsInterval >= 0.1 else { throw TrellisError.invalid("stats-interval: at least 0.1 seconds", field: "stats-interval") }
        let baseURLs = try ConnectionOptions.baseURLs(controller)
        let credentials = HostCredentialFile(path: credentialFile ?? stateDir + "/credential")
        let stored = try credentials.load()
        let joinToken = stored == nil ? try givenJoinToken() : nil
        if baseURLs.contains(where: { $0.hasPrefix("https://") }) {
            try FileManager.default.createDirectory(atPath: stateDir, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
        }
        let fingerprint = try caFingerprint.map { try CAFingerprint.parse($0, field: "ca-fingerprint") } ?? joinToken?.caFingerprint
        let trust = try await ControllerTrust.establish(baseURLs, caFile: caFile ?? stateDir + "/ca.pem", fingerprint: fingerprint,
                                                        keep: true)
        let credential: String
        if let stored {
            credential = stored
        } else {
            credential = try await credentials.exchange(host: host, joinToken: joinToken,
                                                        controller: ControllerClient(baseURLs: baseURLs, token: nil, trust: trust))
        }
        var configuration = AgentConfiguration(controllers: baseURLs, token: credential, host: host, underlayIP: underlay,
                                               socketPath: socket, overlayMTU: mtu)
        configuration.trust = trust
        configuration.datapath = datapath
        configuration.statsInterval = .milliseconds(Int(statsInterval * 1000))
        configuration.socketAccess = try LocalSocketAccess(group: socketGroup)
        let agent = try Agent(configuration: configuration)
        var adapters: [any Service] = []
        if dockerSocket != nil || pluginSocket != nil {
            // The driver's records, which the container monitor reads too.
            let records = try DriverRecords(path: DriverRecords.path(agentSocket: socket))
            if let dockerSocket {
                adapters.append(ContainerMonitor(agent: agent, engine: DockerEngine(socket: dockerSocket), records: records))
            }
            if let pluginSocket { adapters.append(RemoteDriver(agent: agent, socketPath: pluginSocket, records: records)) }
        }
        print("trellis agent for host \(host) (underlay \(underlay)) serving \(socket)"
              + (dockerSocket.map { ", following Docker at \($0)" } ?? "") + (pluginSocket.map { ", Docker driver on \($0)" } ?? ""))
        fflush(nil)
        try await agent.run(alongside: adapters)
    }
}

extension AgentCommand {
    /// The join token given by option, file or environment, if any.
    func givenJoinToken() throws -> JoinTokenText? {
        var text = joinToken ?? ProcessInfo.processInfo.environment["TRELLIS_JOIN_TOKEN"]
        if let joinTokenFile {
            guard let data = FileManager.default.contents(atPath: joinTokenFile) else {
                throw TrellisError.invalid("join-token-file: cannot read \(joinTokenFile)", field: "join-token-file")
            }
            text = String(decoding: data, as: UTF8.self)
        }
        return try text.map { try JoinTokenText(parsing: $0) }
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

extension DatapathChoice: ExpressibleByArgument {}
