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
                                                    subcommands: [Up.self, Down.self, Start.self, Stop.self, Exec.self, Status.self])

    struct Options: ParsableArguments {
        @Option(help: "Where the lab keeps its sockets, logs and pids.") var dir = "/run/trellis/lab"
        var lab: Lab { Lab(directory: dir) }
    }

    struct Up: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Start a controller and N hosts (h1…hN), each with its agent.")
        @OptionGroup var options: Options
        @Option(help: "How many hosts.") var hosts = 2
        @Option(help: "The controller's SQLite file (default: inside the lab directory, removed by lab down).") var store: String?
        @Option(help: "How many controllers: with more than one, they share a store on a three-member etcd cluster of the lab.")
        var controllers = 1
        @Flag(help: ArgumentHelp("Run a Docker engine in every host (its agent follows it and serves it the trellis drivers),"
                                 + " with the image trellis/busybox."))
        var docker = false
        @Option(help: "The agents' datapath: auto, fast (eBPF) or bridge.") var datapath = DatapathChoice.auto

        func validate() throws {
            guard (1...250).contains(hosts) else { throw ValidationError("--hosts must be from 1 to 250") }
            guard (1...5).contains(controllers) else { throw ValidationError("--controllers must be from 1 to 5") }
            guard controllers == 1 || store == nil else { throw ValidationError("--store names a SQLite file, for one controller only") }
        }

        func run() async throws {
            let lab = options.lab
            try await lab.up(hosts: hosts, store: store, controllers: controllers, docker: docker, datapath: datapath)
            try await lab.printStatus()
        }
    }

    struct Down: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stop the lab and remove all of it.")
        @OptionGroup var options: Options

        func run() async throws { try options.lab.down() }
    }

    struct Start: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Start a controller, an etcd member or a host's agent again, as lab up did (after it was stopped).")
        @OptionGroup var options: Options
        @Argument(help: "controller (controller2 … of a cluster), etcd1 … etcd3, or a host (h1…hN).") var name: String

        func run() async throws {
            let lab = options.lab
            guard !lab.alive(name) else { throw TrellisError.conflict("\(name) is already running (pid \(lab.pid(name)!))") }
            try await lab.start(name)
        }
    }

    struct Stop: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Stop a controller, an etcd member or a host's agent, to see what the rest of the lab does without it.")
        @OptionGroup var options: Options
        @Argument(help: "controller (controller2 … of a cluster), etcd1 … etcd3, or a host (h1…hN).") var name: String
        @Flag(help: "Kill it (SIGKILL) instead of asking it to stop.") var kill = false

        func run() async throws {
            let lab = options.lab
            guard lab.processNames.contains(name) else {
                throw TrellisError.notFound("no lab process '\(name)' (processes: \(lab.processNames.joined(separator: ", ")))")
            }
            guard lab.alive(name) else { throw TrellisError.conflict("\(name) is not running") }
            lab.stop(name, signal: kill ? SIGKILL : SIGTERM)
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
    /// Controller `index` (from 1) listens on its own port of the controller namespace's address.
    static func controllerURL(_ index: Int) -> String { "https://\(controllerAddress):\(7442 + index)" }
    static func controllerName(_ index: Int) -> String { index == 1 ? "controller" : "controller\(index)" }
    /// The etcd members of a lab with several controllers, on the controller namespace's loopback only.
    static let etcdMembers = 1...3
    static func etcdClientPort(_ index: Int) -> UInt16 { UInt16(2379 + 10_000 * (index - 1)) }
    static func etcdClientURL(_ index: Int) -> String { "http://127.0.0.1:\(etcdClientPort(index))" }
    static func etcdPeerURL(_ index: Int) -> String { "http://127.0.0.1:\(2380 + 10_000 * (index - 1))" }

    func controllerSocket(_ index: Int) -> String { "\(directory)/\(Self.controllerName(index)).sock" }
    var controllerCountFile: String { "\(directory)/controllers" }
    /// How many controllers the lab runs (more than one: on the lab's etcd cluster).
    var controllerCount: Int {
        let text = try? String(contentsOfFile: controllerCountFile, encoding: .utf8)
        return text.flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) } ?? 1
    }
    var controllerIndices: ClosedRange<Int> { 1...controllerCount }
    var clustered: Bool { controllerCount > 1 }
    /// Every process the lab may run, by the name its pid file and log have.
    var processNames: [String] {
        controllerIndices.map(Self.controllerName) + (clustered ? Self.etcdMembers.map { "etcd\($0)" } : []) + hosts
    }
    /// The forwarder that gives a browser in the root namespace the first controller, on a loopback port
    /// (the controller itself lives in the lab's controller namespace): socat, from TCP to the controller's socket.
    static let consoleName = "console"
    var consolePortFile: String { "\(directory)/console.port" }
    var consoleURL: String? {
        (try? String(contentsOfFile: consolePortFile, encoding: .utf8))
            .map { "http://127.0.0.1:\($0.trimmingCharacters(in: .whitespacesAndNewlines))/ui" }
    }
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
    /// The agents' datapath choice, as `lab up` was given it.
    var datapathFile: String { "\(directory)/datapath" }
    var datapath: String { ((try? String(contentsOfFile: datapathFile, encoding: .utf8)) ?? "auto") }

    var hosts: [String] {
        ((try? String(contentsOfFile: hostsFile, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }

    var token: String? {
        (try? String(contentsOfFile: tokenFile, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func controllerClient() -> ControllerClient {
        ControllerClient(baseURLs: controllerIndices.map { ControllerClient.baseURL(socket: controllerSocket($0)) }, token: token)
    }

    static var executable: String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }

    /// Starts `arguments` (in a process group of its own, as Foundation makes it) with its output in
    /// `log`, and records its pid. `nsenter --net` enters the namespace and execs, keeping the pid.
    func spawn(_ name: String, _ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: arguments[0])
        process.arguments = Array(arguments.dropFirst())
        let path = "\(directory)/\(name).log"
        if !FileManager.default.fileExists(atPath: path) { _ = FileManager.default.createFile(atPath: path, contents: nil) }
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

    /// Whether the process runs: a killed one may stay a zombie for a while until whoever inherited it reaps it.
    func alive(_ name: String) -> Bool {
        guard let pid = pid(name), kill(pid, 0) == 0 else { return false }
        let stat = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? ""
        let state = stat.range(of: ") ").map { stat[$0.upperBound...].prefix(1) } ?? ""
        return state != "Z"
    }

    /// Waits until `check` passes, or fails with what the process's log says.
    func await(_ what: String, log: String, _ check: () async -> Bool) async throws {
        for _ in 0..<150 {
            if await check() { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        let tail = ((try? String(contentsOfFile: "\(directory)/\(log).log",
                                 encoding: .utf8)) ?? "").split(separator: "\n").suffix(5).joined(separator: "\n")
        throw TrellisError(.unavailable, "\(what) did not come up; \(directory)/\(log).log ends with:\n\(tail)")
    }

    func up(hosts count: Int, store: String?, controllers: Int = 1, docker: Bool = false, datapath: DatapathChoice = .auto) async throws {
        guard !alive("controller") else { throw TrellisError.conflict("a lab is already up in \(directory); run trellis lab down first") }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        if docker {
            guard FileManager.default.isExecutableFile(atPath: LabDocker.dockerd) else {
                throw TrellisError(.unavailable, "lab up --docker needs dockerd (apt-get install docker.io)")
            }
            _ = FileManager.default.createFile(atPath: dockerFlagFile, contents: nil)
        }
        try datapath.rawValue.write(toFile: datapathFile, atomically: true, encoding: .utf8)
        let hosts = (1...count).map { "h\($0)" }
        try hosts.joined(separator: "\n").write(toFile: hostsFile, atomically: true, encoding: .utf8)
        try String(controllers).write(toFile: controllerCountFile, atomically: true, encoding: .utf8)
        let storeSetting = controllers > 1 ? "etcd:" + Self.etcdMembers.map(Self.etcdClientURL).joined(separator: ",")
            : "sqlite:" + (store ?? "\(directory)/trellis.db")
        try storeSetting.write(toFile: storeFile, atomically: true, encoding: .utf8)
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
        if controllers > 1 {
            for member in Self.etcdMembers { try await start("etcd\(member)") }
            try await self.await("the etcd cluster", log: "etcd1") { Self.etcdMembers.allSatisfy(etcdHealthy) }
        }
        // The first controller makes the admin token and the CA; the others share them.
        for index in 1...controllers {
            try await start(Self.controllerName(index))
            try await self.await("controller \(index)", log: Self.controllerName(index)) {
                let client = ControllerClient(baseURL: ControllerClient.baseURL(socket: controllerSocket(index)), token: nil)
                return (try? await client.exchange("GET", "/healthz", body: nil).status) == 200 && token != nil
            }
        }
        try await startConsole()
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
        let inControllerNamespace = ["/usr/bin/nsenter", "--net=\(NetworkNamespace.namedDirectory)/\(Self.controllerNamespace)"]
        if let index = controllerIndices.first(where: { Self.controllerName($0) == name }) {
            let store = (try? String(contentsOfFile: storeFile, encoding: .utf8)) ?? "sqlite:\(directory)/trellis.db"
            try spawn(name, inControllerNamespace + [Self.executable, "controller",
                             "--listen", "unix:\(controllerSocket(index))", "--listen", "\(Self.controllerAddress):\(7442 + index)",
                             "--store", store, "--admin-token-file", tokenFile, "--tls-directory", "\(directory)/tls",
                             "--underlay-reserved", Self.hostsUnderlay])
            return
        }
        if clustered, let member = Self.etcdMembers.first(where: { "etcd\($0)" == name }) {
            let cluster = Self.etcdMembers.map { "etcd\($0)=\(Self.etcdPeerURL($0))" }.joined(separator: ",")
            try spawn(name, inControllerNamespace + ["/usr/bin/etcd", "--name", name, "--data-dir", "\(directory)/\(name).data",
                             "--listen-client-urls", Self.etcdClientURL(member), "--advertise-client-urls", Self.etcdClientURL(member),
                             "--listen-peer-urls", Self.etcdPeerURL(member), "--initial-advertise-peer-urls", Self.etcdPeerURL(member),
                             "--initial-cluster", cluster, "--initial-cluster-state", "new", "--initial-cluster-token", "trellis-lab"])
            return
        }
        guard let offset = hosts.firstIndex(of: name) else {
            throw TrellisError.notFound("no lab host '\(name)' (hosts: \(hosts.joined(separator: ", ")))")
        }
        if !FileManager.default.fileExists(atPath: credentialFile(name)) {
            let made: JoinToken = try await controllerClient().post("/api/v1/join-tokens", JoinTokenCreate(ttlSeconds: 600, host: name))
            try SecretFile.write(made.token, to: joinTokenFile(name), what: "\(name)'s join token")
        }
        try spawn(name, ["/usr/bin/nsenter", "--net=\(NetworkNamespace.namedDirectory)/\(Self.hostNamespace(name))", Self.executable,
                         "agent",
                         "--controller", controllerIndices.map(Self.controllerURL).joined(separator: ","),
                         "--join-token-file", joinTokenFile(name),
                         "--credential-file", credentialFile(name), "--state-dir", "\(directory)/\(name).state", "--host", name,
                         "--underlay-ip", Self.underlay(offset + 1).description, "--socket", agentSocket(name), "--stats-interval", "2",
                         "--datapath", datapath]
                         + (withDocker ? LabDocker(lab: self, host: name).agentArguments : []))
    }

    func down() throws {
        if withDocker {
            for host in hosts { LabDocker(lab: self, host: host).stop() }
        }
        // Agents first, all at once (one after another, 100 hosts took minutes), then the controllers and their store.
        stop([Self.consoleName] + hosts, signal: SIGTERM)
        stop(controllerIndices.map(Self.controllerName) + (clustered ? Self.etcdMembers.map { "etcd\($0)" } : []), signal: SIGTERM)
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

    /// Starts the console's forwarder on a free loopback port of the root namespace (nothing routable), if
    /// socat is installed; the lab works without it.
    func startConsole() async throws {
        guard FileManager.default.isExecutableFile(atPath: Self.socat) else { return }
        for _ in 0..<5 {
            let port = Int.random(in: 20_000...40_000)
            try spawn(Self.consoleName, [Self.socat, "TCP-LISTEN:\(port),bind=127.0.0.1,reuseaddr,fork",
                                         "UNIX-CONNECT:\(controllerSocket(1))"])
            try await Task.sleep(for: .milliseconds(200))
            if alive(Self.consoleName) {
                try String(port).write(toFile: consolePortFile, atomically: true, encoding: .utf8)
                return
            }
        }
        throw TrellisError(.unavailable, "the console's forwarder (socat) did not start; see \(directory)/\(Self.consoleName).log")
    }
    static let socat = "/usr/bin/socat"

    /// Stops a lab process with `signal`, and with SIGKILL if it is still there after 5 s.
    func stop(_ name: String, signal: Int32) { stop([name], signal: signal) }

    /// Stops lab processes together: `signal` to each, then SIGKILL to those still there after 5 s.
    func stop(_ names: [String], signal: Int32) {
        var running = names.compactMap { name in pid(name).flatMap { kill($0, 0) == 0 ? $0 : nil } }
        for pid in running { kill(pid, signal) }
        for _ in 0..<50 where !running.isEmpty {
            usleep(100_000)
            running.removeAll { kill($0, 0) != 0 }
        }
        for pid in running { kill(pid, SIGKILL) }
    }

    /// Whether etcd member `index` answers its health check, asked from inside the controller namespace.
    func etcdHealthy(_ index: Int) -> Bool {
        guard let namespace = try? NetworkNamespace(named: Self.controllerNamespace) else { return false }
        let port = Self.etcdClientPort(index)
        let answer = try? namespace.run { () -> String in
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { return "" }
            defer { close(fd) }
            var timeout = timeval(tv_sec: 1, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = port.bigEndian
            address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard connected == 0 else { return "" }
            let request = Array("GET /health HTTP/1.0\r\n\r\n".utf8)
            guard send(fd, request, request.count, 0) == request.count else { return "" }
            var reply = [UInt8](repeating: 0, count: 4096), count = 0
            while count < reply.count {
                let read = reply.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + count, $0.count - count, 0) }
                guard read > 0 else { break }
                count += read
            }
            return String(decoding: reply[0..<count], as: UTF8.self)
        }
        return answer?.contains("\"health\":\"true\"") == true
    }

    /// Replaces this process with `command` running in the host's namespace.
    func exec(host: String, command: [String]) throws {
        guard hosts.contains(host) else { throw TrellisError.notFound("no lab host '\(host)' (hosts: \(hosts.joined(separator: ", ")))") }
        setenv("TRELLIS_AGENT_SOCKET", agentSocket(host), 1)
        setenv("TRELLIS_CONTROLLER", controllerIndices.map { "unix:" + controllerSocket($0) }.joined(separator: ","), 1)
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
        for index in controllerIndices {
            let name = Self.controllerName(index)
            let client = ControllerClient(baseURL: ControllerClient.baseURL(socket: controllerSocket(index)), token: nil)
            let healthy = alive(name) ? (try? await client.exchange("GET", "/healthz", body: nil).status) == 200 : false
            print("\(name)  \(alive(name) ? (healthy ? "running" : "running, not healthy") : "stopped")  unix:\(controllerSocket(index))  "
                  + "\(Self.controllerURL(index)) (for the hosts)")
        }
        if clustered {
            for member in Self.etcdMembers {
                let name = "etcd\(member)"
                print("\(name)  \(alive(name) ? (etcdHealthy(member) ? "healthy" : "running, not healthy") : "stopped")  "
                      + "\(Self.etcdClientURL(member)) (in \(Self.controllerNamespace))")
            }
        }
        if let consoleURL, alive(Self.consoleName) {
            print("console  \(consoleURL)  (log in with the admin token: \(tokenFile))")
        }
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
