import ArgumentParser
import Foundation
import Glibc
import TrellisAgent
import TrellisClient
import TrellisModel
import TrellisNetlink
import TrellisNetlinkWire

/// Several simulated hosts on one machine: a controller, a switch namespace, and per host a network
/// namespace on the switch with its own underlay address and agent. Nothing is added to the root
/// namespace's addresses or routes; the controller and agents are reached through unix sockets.
struct LabCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "lab", abstract: "A lab of simulated hosts on this machine.",
                                                    subcommands: [Up.self, Down.self, Start.self, Exec.self, Status.self])

    struct Options: ParsableArguments {
        @Option(help: "Where the lab keeps its sockets, logs and pids.") var dir = "/run/trellis/lab"
        var lab: Lab { Lab(directory: dir) }
    }

    struct Up: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Start a controller and N hosts (h1…hN), each with its agent.")
        @OptionGroup var options: Options
        @Option(help: "How many hosts.") var hosts = 2
        @Option(help: "The controller's SQLite file (default: inside the lab directory, removed by lab down).") var store: String?
        @Flag(help: "Run a Docker engine in every host (its agent follows it and serves it the trellis drivers), with the image trellis/busybox.")
        var docker = false

        func validate() throws {
            guard (1...250).contains(hosts) else { throw ValidationError("--hosts must be from 1 to 250") }
        }

        func run() async throws {
            let lab = options.lab
            try await lab.up(hosts: hosts, store: store, docker: docker)
            try await lab.printStatus()
        }
    }

    struct Down: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stop the lab and remove all of it.")
        @OptionGroup var options: Options

        func run() async throws { try options.lab.down() }
    }

    struct Start: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Start the controller or a host's agent again, as lab up did (after it was stopped).")
        @OptionGroup var options: Options
        @Argument(help: "controller, or a host (h1…hN).") var name: String

        func run() async throws {
            let lab = options.lab
            guard !lab.alive(name) else { throw TrellisError.conflict("\(name) is already running (pid \(lab.pid(name)!))") }
            try await lab.start(name)
        }
    }

    struct Exec: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run a command in a host, with TRELLIS_AGENT_SOCKET, TRELLIS_CONTROLLER and TRELLIS_TOKEN set for it.")
        @OptionGroup var options: Options
        @Argument(help: "The host (h1…hN).") var host: String
        @Argument(parsing: .captureForPassthrough, help: "The command (after --).") var command: [String] = []

        func run() throws {
            let command = command.first == "--" ? Array(command.dropFirst()) : command
            guard !command.isEmpty else { throw ValidationError("give a command after --") }
            try options.lab.exec(host: host, command: command)
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the lab's hosts, their underlay addresses and agents.")
        @OptionGroup var options: Options

        func run() async throws { try await options.lab.printStatus() }
    }
}

/// The lab's files and processes.
struct Lab {
    let directory: String
    static let switchNamespace = "trellis-lab-sw"
    static func hostNamespace(_ host: String) -> String { "trellis-lab-\(host)" }
    /// A host's underlay address, 10.255.0.i on the lab's 10.255.0.0/16 (only inside the lab): the hosts'
    /// /24 is reserved, so floating IP pools come from the rest of the /16, on-link for every host.
    static func underlay(_ index: Int) -> IPv4Address { IPv4Address(0x0AFF_0000 | UInt32(index)) }
    static let hostsUnderlay = "10.255.0.0/24"
    /// The controller's own namespace on the switch: agents reach it over the underlay, by HTTPS.
    static let controllerNamespace = "trellis-lab-ctl"
    static let controllerAddress = underlay(254)
    static let controllerURL = "https://\(controllerAddress):7443"

    var controllerSocket: String { "\(directory)/controller.sock" }
    var tokenFile: String { "\(directory)/admin.token" }
    func agentSocket(_ host: String) -> String { "\(directory)/\(host).sock" }
    func credentialFile(_ host: String) -> String { "\(directory)/\(host).credential" }
    func joinTokenFile(_ host: String) -> String { "\(directory)/\(host).join-token" }
    func pidFile(_ name: String) -> String { "\(directory)/\(name).pid" }
    var hostsFile: String { "\(directory)/hosts" }
    /// Present when the lab's hosts run Docker engines.
    var dockerFlagFile: String { "\(directory)/docker" }
    var withDocker: Bool { FileManager.default.fileExists(atPath: dockerFlagFile) }
    var storeFile: String { "\(directory)/store" }

    var hosts: [String] {
        ((try? String(contentsOfFile: hostsFile, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }

    var token: String? {
        (try? String(contentsOfFile: tokenFile, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func controllerClient() -> ControllerClient {
        ControllerClient(baseURL: ControllerClient.baseURL(socket: controllerSocket), token: token)
    }

    static var executable: String { (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0] }

    /// Starts `arguments` (in a process group of its own, as Foundation makes it) with its output in
    /// `log`, and records its pid. `nsenter --net` enters the namespace and execs, keeping the pid.
    func spawn(_ name: String, _ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: arguments[0])
        process.arguments = Array(arguments.dropFirst())
        let path = "\(directory)/\(name).log"
        if !FileManager.default.fileExists(atPath: path) { FileManager.default.createFile(atPath: path, contents: nil) }
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        log.seekToEndOfFile()
        process.standardOutput = log
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        try process.run()
        try String(process.processIdentifier).write(toFile: pidFile(name), atomically: true, encoding: .utf8)
    }

    func pid(_ name: String) -> Int32? {
        (try? String(contentsOfFile: pidFile(name), encoding: .utf8)).flatMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }

    func alive(_ name: String) -> Bool { pid(name).map { kill($0, 0) == 0 } ?? false }

    /// Waits until `check` passes, or fails with what the process's log says.
    func await(_ what: String, log: String, _ check: () async -> Bool) async throws {
        for _ in 0..<150 {
            if await check() { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        let tail = ((try? String(contentsOfFile: "\(directory)/\(log).log", encoding: .utf8)) ?? "").split(separator: "\n").suffix(5).joined(separator: "\n")
        throw TrellisError(.unavailable, "\(what) did not come up; \(directory)/\(log).log ends with:\n\(tail)")
    }

    func up(hosts count: Int, store: String?, docker: Bool = false) async throws {
        guard !alive("controller") else { throw TrellisError.conflict("a lab is already up in \(directory); run trellis lab down first") }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        if docker {
            guard FileManager.default.isExecutableFile(atPath: LabDocker.dockerd) else {
                throw TrellisError(.unavailable, "lab up --docker needs dockerd (apt-get install docker.io)")
            }
            FileManager.default.createFile(atPath: dockerFlagFile, contents: nil)
        }
        let hosts = (1...count).map { "h\($0)" }
        try hosts.joined(separator: "\n").write(toFile: hostsFile, atomically: true, encoding: .utf8)
        try (store ?? "\(directory)/trellis.db").write(toFile: storeFile, atomically: true, encoding: .utf8)
        let switchNamespace = try NetworkNamespace.create(named: Self.switchNamespace)
        let fabric = try RouteNetlink(in: switchNamespace)
        if try fabric.link(named: "sw0") == nil { try fabric.createLink(LinkSpec(name: "sw0", kind: .bridge, up: true)) }
        let bridge = try fabric.requireLink(named: "sw0")
        /// A namespace on the switch with `address` on its eth0.
        func plug(_ namespaceName: String, port: String, address: IPv4Address) throws {
            let namespace = try NetworkNamespace.create(named: namespaceName)
            if try fabric.link(named: port) == nil {
                try fabric.createLink(LinkSpec(name: port, kind: .veth(peerName: "eth0", peerMAC: nil, peerNamespace: namespace.fd),
                                               master: bridge.index, up: true))
            }
            let inside = try RouteNetlink(in: namespace)
            for name in ["lo", "eth0"] { try inside.setLink(index: try inside.requireLink(named: name).index, up: true) }
            try inside.addAddress(index: try inside.requireLink(named: "eth0").index, address, prefixLength: 16)
        }
        try plug(Self.controllerNamespace, port: "ctl", address: Self.controllerAddress)
        try await start("controller")
        try await self.await("the controller", log: "controller") {
            (try? await controllerClient().exchange("GET", "/healthz", body: nil).status) == 200 && token != nil
        }
        for (offset, host) in hosts.enumerated() {
            try plug(Self.hostNamespace(host), port: host, address: Self.underlay(offset + 1))
            if docker { try LabDocker(lab: self, host: host).start() }
            try await start(host)
        }
        if docker {
            for host in hosts { try await LabDocker(lab: self, host: host).awaitReady() }
        }
        for host in hosts {
            try await self.await("the agent of \(host)", log: host) {
                let client = ControllerClient(baseURL: ControllerClient.baseURL(socket: agentSocket(host)), token: nil)
                let status: AgentStatus? = try? await client.get("/v1/status")
                return status?.connected == true
            }
            try? FileManager.default.removeItem(atPath: joinTokenFile(host))
        }
    }

    /// Starts the controller, or the agent of a host inside the host's namespace. An agent holds only its
    /// host's credential: the first start gives it a join token for that host alone, in a file.
    func start(_ name: String) async throws {
        if name == "controller" {
            let store = (try? String(contentsOfFile: storeFile, encoding: .utf8)) ?? "\(directory)/trellis.db"
            try spawn(name, ["/usr/bin/nsenter", "--net=\(NetworkNamespace.namedDirectory)/\(Self.controllerNamespace)", Self.executable,
                             "controller", "--listen", "unix:\(controllerSocket)", "--listen", "\(Self.controllerAddress):7443",
                             "--store", "sqlite:\(store)", "--admin-token-file", tokenFile, "--underlay-reserved", Self.hostsUnderlay])
            return
        }
        guard let offset = hosts.firstIndex(of: name) else {
            throw TrellisError.notFound("no lab host '\(name)' (hosts: \(hosts.joined(separator: ", ")))")
        }
        if !FileManager.default.fileExists(atPath: credentialFile(name)) {
            let made: JoinToken = try await controllerClient().post("/api/v1/join-tokens", JoinTokenCreate(ttlSeconds: 600, host: name))
            try SecretFile.write(made.token, to: joinTokenFile(name), what: "\(name)'s join token")
        }
        try spawn(name, ["/usr/bin/nsenter", "--net=\(NetworkNamespace.namedDirectory)/\(Self.hostNamespace(name))", Self.executable, "agent",
                         "--controller", Self.controllerURL, "--join-token-file", joinTokenFile(name),
                         "--credential-file", credentialFile(name), "--state-dir", "\(directory)/\(name).state", "--host", name,
                         "--underlay-ip", Self.underlay(offset + 1).description, "--socket", agentSocket(name), "--stats-interval", "2"]
                         + (withDocker ? LabDocker(lab: self, host: name).agentArguments : []))
    }

    func down() throws {
        if withDocker {
            for host in hosts { LabDocker(lab: self, host: host).stop() }
        }
        for name in hosts + ["controller"] {
            guard let pid = pid(name), kill(pid, 0) == 0 else { continue }
            kill(pid, SIGTERM)
            for _ in 0..<50 where kill(pid, 0) == 0 { usleep(100_000) }
            if kill(pid, 0) == 0 { kill(pid, SIGKILL) }
        }
        for host in hosts {
            for name in NetworkNamespace.names() where name.hasPrefix(KernelNames.routerPrefix(host: host)) {
                try NetworkNamespace.delete(named: name)
            }
            try NetworkNamespace.delete(named: Self.hostNamespace(host))
        }
        try NetworkNamespace.delete(named: Self.controllerNamespace)
        try NetworkNamespace.delete(named: Self.switchNamespace)
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Replaces this process with `command` running in the host's namespace.
    func exec(host: String, command: [String]) throws {
        guard hosts.contains(host) else { throw TrellisError.notFound("no lab host '\(host)' (hosts: \(hosts.joined(separator: ", ")))") }
        setenv("TRELLIS_AGENT_SOCKET", agentSocket(host), 1)
        setenv("TRELLIS_CONTROLLER", "unix:\(controllerSocket)", 1)
        setenv("TRELLIS_TOKEN", token ?? "", 1)
        setenv("TRELLIS_LAB_HOST", host, 1)
        if withDocker { setenv("DOCKER_HOST", "unix://" + LabDocker(lab: self, host: host).socket, 1) }
        let arguments = ["/usr/bin/nsenter", "--net=\(NetworkNamespace.namedDirectory)/\(Self.hostNamespace(host))"] + command
        var argv = arguments.map { strdup($0) } + [nil]
        execv(arguments[0], &argv)
        throw TrellisError(.unavailable, "cannot run \(command[0]): \(String(cString: strerror(errno)))")
    }

    func printStatus() async throws {
        guard !hosts.isEmpty else { throw TrellisError.notFound("no lab in \(directory); start one with trellis lab up") }
        print("controller  \(alive("controller") ? "running" : "stopped")  unix:\(controllerSocket)  \(Self.controllerURL) (for the hosts)")
        var rows = [["HOST", "UNDERLAY", "AGENT", "CONNECTED", "APPLIED-REVISION"]]
        for (offset, host) in hosts.enumerated() {
            let client = ControllerClient(baseURL: ControllerClient.baseURL(socket: agentSocket(host)), token: nil)
            let status: AgentStatus? = alive(host) ? try? await client.get("/v1/status") : nil
            rows.append([host, Self.underlay(offset + 1).description, alive(host) ? "running (pid \(pid(host)!))" : "stopped",
                         status.map { $0.connected ? "yes" : "no" } ?? "-", text(status?.appliedRevision)])
        }
        printTable(rows)
    }
}
