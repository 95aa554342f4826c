import Foundation
import Glibc
import Testing
import TrellisClient
import TrellisModel
import TrellisNetlink
import TrellisTestSupport

let podman = "/usr/bin/podman"
let containerd = "/usr/bin/containerd"

/// `arguments` run with no signal blocked: a test process blocks most signals on its threads, and
/// every child inherits that mask (a container's busybox ping would then never see its SIGALRM).
func withSignalsUnblocked(_ arguments: [String]) -> [String] {
    let exec = "import os, signal, sys; signal.pthread_sigmask(signal.SIG_SETMASK, []); os.execv(sys.argv[1], sys.argv[1:])"
    return ["/usr/bin/python3", "-c", exec] + arguments
}

/// Runs `arguments` with its output in a file rather than a pipe, and waits for it with waitpid: `podman
/// run -d` leaves conmon behind holding its output open (a pipe would never reach its end), and
/// Foundation's Process was seen not to reap podman here.
func runDetaching(_ arguments: [String]) throws -> (status: Int32, output: String) {
    let log = FileManager.default.temporaryDirectory.appendingPathComponent("trellis-run-\(UUID().uuidString)").path
    defer { unlink(log) }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    posix_spawn_file_actions_adddup2(&actions, 1, 2)
    var argv = arguments.map { strdup($0) } + [nil]
    defer { argv.forEach { free($0) } }
    var pid: pid_t = 0
    let spawned = posix_spawn(&pid, arguments[0], &actions, nil, &argv, environ)
    guard spawned == 0 else { throw TrellisError(.internalError, "spawn \(arguments[0]): \(String(cString: strerror(spawned)))") }
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    let code = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    return (code, (try? String(contentsOfFile: log, encoding: .utf8)) ?? "")
}

/// A root file system of busybox alone, for `podman --rootfs` and `ctr run --rootfs`.
func busyboxRootfs(in directory: URL) throws -> URL {
    let root = directory.appendingPathComponent("rootfs")
    for folder in ["bin", "proc", "sys", "dev", "etc", "tmp"] {
        try FileManager.default.createDirectory(at: root.appendingPathComponent(folder), withIntermediateDirectories: true)
    }
    try FileManager.default.copyItem(atPath: "/bin/busybox", toPath: root.appendingPathComponent("bin/busybox").path)
    for command in ["sh", "ping", "ip", "sleep", "nslookup", "cat"] {
        let link = root.appendingPathComponent("bin/\(command)").path
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: "busybox")
    }
    return root
}

/// A directory of CNI plugins: Trellis's as `trellis`, and Debian's loopback beside it.
func pluginDirectory(in directory: URL) throws -> URL {
    let plugins = directory.appendingPathComponent("plugins")
    let install = try runProgram([trellisExecutable(), "cni", "install", "--dir", plugins.path])
    #expect(install.status == 0, "trellis cni install: \(install.output)")
    try FileManager.default.copyItem(atPath: "/usr/lib/cni/loopback", toPath: plugins.appendingPathComponent("loopback").path)
    return plugins
}

/// `trellis cni conf` for a lab host's agent, with `version`.
func networkList(_ lab: RunningLab, name: String, host: String, version: String = "1.0.0") throws -> String {
    let conf = try runProgram([trellisExecutable(), "cni", "conf", "acme/app1/web/red", "--name", name, "--cni-version", version,
                               "--agent-socket", "\(lab.directory.path)/\(host).sock"])
    #expect(conf.status == 0, "trellis cni conf: \(conf.output)")
    return conf.output
}

/// What both runtime tests start from: two lab hosts with acme/app1/web/red, a container attached on
/// h2, and a work directory with a busybox root file system, the plugins, and the list `red` for h1.
struct RuntimeSetup {
    let lab: RunningLab
    let peerNamespace: NetworkNamespace
    let peer: Endpoint
    let work: URL, rootfs: URL, plugins: URL, networks: URL

    init(runtime: String) async throws {
        lab = try await RunningLab(hosts: 2)
        try await lab.makeSubnet("acme/app1/web/red", cidr: "192.168.10.0/24")
        (peerNamespace, peer) = try await lab.attach("peer", on: "h2", subnet: "acme/app1/web/red")
        work = lab.directory.appendingPathComponent(runtime)
        rootfs = try busyboxRootfs(in: work)
        plugins = try pluginDirectory(in: work)
        networks = work.appendingPathComponent("net.d")
        try FileManager.default.createDirectory(at: networks, withIntermediateDirectories: true)
        try networkList(lab, name: "red", host: "h1")
            .write(to: networks.appendingPathComponent("red.conflist"), atomically: true, encoding: .utf8)
    }
}

extension LabTests {
    /// podman with its CNI backend: a container on h1 reaches a container attached on h2 by address and
    /// name and is reached from it; `--ip`, a 0.4.0 list as podman writes them, and a chain through
    /// Debian's tuning, portmap and bandwidth plugins; `podman rm` releases every address.
    @Test(.enabled(if: FileManager.default.fileExists(atPath: podman) && FileManager.default.fileExists(atPath: "/usr/lib/cni/tuning"),
                   "needs podman and containernetworking-plugins"))
    func podmanContainersJoinTrellisSubnets() async throws {
        let setup = try await RuntimeSetup(runtime: "podman")
        let (lab, peerNamespace, peer, work) = (setup.lab, setup.peerNamespace, setup.peer, setup.work)
        let (rootfs, plugins, networks) = (setup.rootfs, setup.plugins, setup.networks)
        try networkList(lab, name: "red04", host: "h1", version: "0.4.0")
            .write(to: networks.appendingPathComponent("red04.conflist"), atomically: true, encoding: .utf8)
        let chain = #"""
            {"cniVersion": "1.0.0", "name": "redchain", "plugins": [
              {"type": "trellis", "subnet": "acme/app1/web/red", "agentSocket": "\#(lab.directory.path)/h1.sock"},
              {"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.accept_redirects": "0"}},
              {"type": "portmap", "capabilities": {"portMappings": true}},
              {"type": "bandwidth", "capabilities": {"bandwidth": true}}]}
            """#
        try chain.write(to: networks.appendingPathComponent("redchain.conflist"), atomically: true, encoding: .utf8)
        let settings = work.appendingPathComponent("containers.conf")
        try "[network]\ncni_plugin_dirs = [\"\(plugins.path)\", \"/usr/lib/cni\"]\nnetwork_config_dir = \"\(networks.path)\"\n"
            .write(to: settings, atomically: true, encoding: .utf8)

        // podman refuses a runroot of more than 50 characters.
        let runroot = "/tmp/trellis-podman-\(UInt32.random(in: 0...UInt32.max))"
        defer { try? FileManager.default.removeItem(atPath: runroot) }
        func podmanRun(_ arguments: [String]) throws -> (status: Int32, output: String) {
            try runDetaching(withSignalsUnblocked(["/usr/bin/env", "CONTAINERS_CONF=\(settings.path)", podman,
                                                   "--root", work.appendingPathComponent("storage").path,
                            "--runroot", runroot, "--network-backend", "cni", "--cni-config-dir", networks.path,
                            "--runtime", "runc", "--cgroup-manager=cgroupfs", "--events-backend", "file"] + arguments))
        }
        let names = ["web-a", "web-b", "web-c", "web-d"]
        defer { _ = try? podmanRun(["rm", "-f", "-t", "0"] + names) }
        let common = ["run", "-d", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024", "--dns", "169.254.169.253"]
        for (name, extra) in [("web-a", ["--network", "red"]), ("web-b", ["--network", "red", "--ip", "192.168.10.77"]),
                              ("web-c", ["--network", "red04"]), ("web-d", ["--network", "redchain"])] {
            let started = try podmanRun(common + extra + ["--name", name, "--rootfs", rootfs.path, "/bin/sleep", "120"])
            #expect(started.status == 0, "podman run \(name): \(started.output)")
        }
        let endpoints = try await lab.endpoints(owner: "cni:")
        let byName = Dictionary(endpoints.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        #expect(Set(byName.keys) == Set(names), "one endpoint per container, named after it: \(byName.keys.sorted())")
        #expect(byName["web-b"]?.ip == IPv4Address("192.168.10.77"), "--ip")
        #expect(byName["web-c"]?.externalIds["cni-network"] == "red04" && byName["web-d"]?.externalIds["cni-network"] == "redchain")
        for name in ["web-a", "web-c", "web-d"] {
            let out = try podmanRun(["exec", name, "/bin/ping", "-c", "2", "-w", "5", peer.ip.description])
            #expect(out.status == 0, "\(name) on h1 pings the peer on h2: \(out.output)")
        }
        let byDNS = try podmanRun(["exec", "web-a", "/bin/ping", "-c", "1", "-w", "5", "peer.red.app1"])
        #expect(byDNS.status == 0 && byDNS.output.contains(peer.ip.description), "by name: \(byDNS.output)")
        let short = try podmanRun(["exec", "web-a", "/bin/nslookup", "peer"])
        #expect(short.output.contains(peer.ip.description), "the search domains of the result: \(short.output)")
        for name in names {
            let back = try ping(from: peerNamespace, try #require(byName[name]).ip.description)
            #expect(back.status == 0, "the peer reaches \(name): \(back.output)")
        }
        let removed = try podmanRun(["rm", "-f", "-t", "0"] + names)
        #expect(removed.status == 0, "podman rm: \(removed.output)")
        #expect(try await lab.endpoints(owner: "cni:").isEmpty, "podman rm released every address")
    }

    /// containerd's ctr as a second libcni client: the same attach, and the DEL it sends without a netns.
    @Test(.enabled(if: FileManager.default.fileExists(atPath: containerd) && FileManager.default.fileExists(atPath: "/usr/bin/ctr"),
                   "needs containerd"))
    func containerdContainersJoinTrellisSubnets() async throws {
        let setup = try await RuntimeSetup(runtime: "containerd")
        let (lab, peer, work) = (setup.lab, setup.peer, setup.work)
        let (rootfs, plugins, networks) = (setup.rootfs, setup.plugins, setup.networks)

        let socket = work.appendingPathComponent("containerd.sock").path
        let daemon = Process()
        let command = withSignalsUnblocked([containerd, "--address", socket, "--root", work.appendingPathComponent("root").path,
                                            "--state", work.appendingPathComponent("state").path])
        daemon.executableURL = URL(fileURLWithPath: command[0])
        daemon.arguments = Array(command.dropFirst())
        daemon.standardOutput = FileHandle.nullDevice
        daemon.standardError = FileHandle.nullDevice
        try daemon.run()
        defer {
            kill(daemon.processIdentifier, SIGTERM)
            daemon.waitUntilExit()
        }
        for _ in 0..<100 where !FileManager.default.fileExists(atPath: socket) { try await Task.sleep(for: .milliseconds(100)) }

        // ctr reads /etc/cni/net.d and /opt/cni/bin: the test's own directories are bound there in a mount
        // namespace of ctr's alone; a directory that had to be made for that is removed after.
        let made = ["/opt/cni/bin", "/etc/cni/net.d"].filter { !FileManager.default.fileExists(atPath: $0) }
        defer {
            for path in made.reversed() {
                rmdir(path)
                rmdir((path as NSString).deletingLastPathComponent)
            }
        }
        let container = "trellis-test-\(UInt32.random(in: 0...UInt32.max))"
        let script = """
            mkdir -p /opt/cni/bin /etc/cni/net.d && mount --bind \(plugins.path) /opt/cni/bin \
            && mount --bind \(networks.path) /etc/cni/net.d \
            && exec ctr --address \(socket) --namespace \(container) run --cni --rm --rootfs \(rootfs.path) \(container) /bin/sh -c \
            'ip -o -4 addr show eth0; ping -c 2 -w 5 \(peer.ip); nslookup peer.red.app1 169.254.169.253'
            """
        // busybox's ping honours -w (a deadline); the outer timeout keeps a hung runtime from hanging the suite.
        let run = try runProgram(["/usr/bin/timeout", "-s", "KILL", "120", "/usr/bin/unshare", "--mount", "--propagation", "private",
                                  "/bin/sh", "-c", script])
        #expect(run.output.contains("inet 192.168.10.") && run.output.contains("2 packets received"), "ctr run: \(run.output)")
        #expect(run.output.contains("Address: \(peer.ip)") || run.output.contains("Address 1: \(peer.ip)"), "by name: \(run.output)")
        #expect(try await lab.endpoints(owner: "cni:").isEmpty, "ctr's DEL, without a netns, released the address")
    }
}
