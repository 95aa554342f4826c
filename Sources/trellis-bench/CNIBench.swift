import ArgumentParser
import Foundation
import Glibc
import TrellisModel
import TrellisNetlink

/// One CNI ADD and one DEL of Trellis's plugin against Debian's reference `bridge` + `host-local`
/// plugins, interleaved run by run in the same lab host namespace (their order rotated), each run a
/// fresh container namespace: the time a runtime waits for the plugin, exec included. Then, when podman
/// is installed, `podman run -d` → the first ping answered from a container already on the network,
/// for both, the same way.
struct CNIBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "cni", abstract: "CNI ADD and DEL: Trellis against bridge + host-local.")
    @Option(help: "Runs of each.") var runs = 100
    @Option(help: "Runs of podman run → first ping for each (0: none).") var podmanRuns = 20

    func run() async throws {
        let lab = try BenchLab(hosts: 1, tag: "trellis-bench-cni")
        defer { lab.down() }
        try await lab.subnet("10.77.0.0/16")
        let here = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        let work = "/tmp/trellis-bench-cni"
        try? FileManager.default.removeItem(atPath: work)
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: work) }
        let trellis = (plugin: here.appendingPathComponent("trellis-cni").path, configuration: """
            {"cniVersion": "1.0.0", "name": "bench", "type": "trellis", "subnet": "bench/d/z/s", "agentSocket": "\(lab.directory)/h1.sock"}
            """)
        let reference = (plugin: "/usr/lib/cni/bridge", configuration: """
            {"cniVersion": "1.0.0", "name": "reference", "type": "bridge", "bridge": "trbench0", "isGateway": true,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.78.0.0/16", "gateway": "10.78.0.1"}]], "dataDir": "\(work)/ipam"}}
            """)
        // Ranges rather than a bare subnet: podman checks a static --ip against them, as it reads them.
        // A host runs containers already: one resident on each network keeps Trellis's router namespace and
        // the reference's bridge in place, so the runs measure an attach, not a host's first.
        for (name, plugin, address) in [("trellis", trellis, "10.77.255.1"), ("reference", reference, "10.78.255.1")] {
            _ = try sh(["/usr/sbin/ip", "netns", "add", "trbench-cni-resident-\(name)"])
            _ = try call(plugin.plugin, "ADD", id: "resident\(name)", netns: "/run/netns/trbench-cni-resident-\(name)",
                         configuration: plugin.configuration, arguments: "IgnoreUnknown=1;IP=\(address)")
        }
        defer {
            for name in ["trellis", "reference"] { _ = try? sh(["/usr/sbin/ip", "netns", "delete", "trbench-cni-resident-\(name)"]) }
        }
        var samples: [String: Samples] = [:]
        for run in 0..<runs {
            let cases = run % 2 == 0 ? [("trellis", trellis), ("reference", reference)] : [("reference", reference), ("trellis", trellis)]
            for (name, plugin) in cases {
                let container = "trbench-cni-\(run)-\(name)"
                _ = try sh(["/usr/sbin/ip", "netns", "add", container])
                defer { _ = try? sh(["/usr/sbin/ip", "netns", "delete", container]) }
                let id = "bench\(run)\(name)"
                let add = try call(plugin.plugin, "ADD", id: id, netns: "/run/netns/\(container)", configuration: plugin.configuration)
                let delete = try call(plugin.plugin, "DEL", id: id, netns: "/run/netns/\(container)", configuration: plugin.configuration)
                samples["\(name) ADD", default: Samples()].add(add)
                samples["\(name) DEL", default: Samples()].add(delete)
            }
        }
        print("CNI calls, exec included, \(runs) runs each (trellis: central IPAM over the agent's socket; reference: bridge + host-local)")
        for verb in ["ADD", "DEL"] {
            let ours = samples["trellis \(verb)"]!, theirs = samples["reference \(verb)"]!
            print("  \(verb) trellis   \(ours.summary)")
            print("  \(verb) reference \(theirs.summary)")
            print(String(format: "  \(verb) ratio trellis/reference: p50 %.2f, p99 %.2f", ours.percentile(50) / theirs.percentile(50),
                         ours.percentile(99) / theirs.percentile(99)))
        }
        if podmanRuns > 0 {
            guard FileManager.default.isExecutableFile(atPath: "/usr/bin/podman") else {
                print("podman run → first ping: skipped, podman is not installed")
                return
            }
            try podmanToFirstPing(lab: lab, work: work, networks: [
                ("trellis", trellis.configuration, "10.77.200", "10.77.255.1", "trbench-cni-resident-trellis"),
                ("reference", reference.configuration, "10.78.200", "10.78.255.1", "trbench-cni-resident-reference"),
            ])
        }
    }

    /// `podman run -d` with a static address on each network in turn (podman run inside the lab host's
    /// namespace, as the plugins were), then ICMP echoes every millisecond from the network's resident
    /// container until the new one answers; counted from the start of `podman run`.
    func podmanToFirstPing(lab: BenchLab, work: String,
                           networks: [(name: String, plugin: String, prefix: String, prober: String, resident: String)]) throws {
        let here = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        let podman = "\(work)/podman", plugins = "\(work)/podman/plugins", lists = "\(work)/podman/net.d", rootfs = "\(work)/podman/rootfs"
        for folder in [plugins, lists] + ["bin", "proc", "sys", "dev", "etc", "tmp"].map({ "\(rootfs)/\($0)" }) {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        }
        try FileManager.default.copyItem(atPath: here.appendingPathComponent("trellis-cni").path, toPath: "\(plugins)/trellis")
        try FileManager.default.copyItem(atPath: "/bin/busybox", toPath: "\(rootfs)/bin/busybox")
        try FileManager.default.createSymbolicLink(atPath: "\(rootfs)/bin/sleep", withDestinationPath: "busybox")
        for network in networks {
            // The plugin's configuration as a list's one entry: its name and version are the list's.
            try #"{"cniVersion": "1.0.0", "name": "\#(network.name)", "plugins": [\#(network.plugin)]}"#
                .write(toFile: "\(lists)/\(network.name).conflist", atomically: true, encoding: .utf8)
        }
        try "[network]\ncni_plugin_dirs = [\"\(plugins)\", \"/usr/lib/cni\"]\nnetwork_config_dir = \"\(lists)\"\n"
            .write(toFile: "\(podman)/containers.conf", atomically: true, encoding: .utf8)
        // podman refuses a runroot of more than 50 characters.
        let runroot = "/tmp/trbench-podman-\(UInt32.random(in: 0...UInt32.max))"
        defer { try? FileManager.default.removeItem(atPath: runroot) }
        let base = ["/usr/bin/nsenter", "--net=/run/netns/trellis-lab-h1", "/usr/bin/env", "CONTAINERS_CONF=\(podman)/containers.conf",
                    "/usr/bin/podman", "--root", "\(podman)/storage", "--runroot", runroot, "--network-backend", "cni",
                    "--cni-config-dir", lists, "--runtime", "runc", "--cgroup-manager=cgroupfs", "--events-backend", "file"]
        func podmanCall(_ arguments: [String]) throws -> String { try spawnAndWait(base + arguments, log: "\(podman)/last.log") }
        var samples: [String: Samples] = [:], lost: [String: Int] = [:]
        for run in 0..<podmanRuns {
            for network in run % 2 == 0 ? networks : networks.reversed() {
                let name = "p\(run)-\(network.name)", address = "\(network.prefix).\(run + 1)"
                let probe = try EchoProbe(in: try NetworkNamespace(named: network.resident),
                                          target: try IPv4Address.parse(address, field: "ip"))
                let start = Date().timeIntervalSince1970
                let output = try podmanCall(["run", "-d", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
                                             "--network", network.name,
                                             "--ip", address, "--name", name, "--rootfs", rootfs, "/bin/sleep", "1000000"])
                probe.start(timeout: 10)
                if let answered = probe.wait() {
                    samples[network.name, default: Samples()].add((answered - start) * 1000)
                } else {
                    lost[network.name, default: 0] += 1
                    print("  \(name): no answer within 10 s; podman said: \(output.suffix(300))")
                }
                _ = try podmanCall(["rm", "-f", "-t", "0", name])
            }
        }
        print("podman run -d → first ping from a container on the same network, \(podmanRuns) runs each, interleaved")
        for network in networks {
            let missing = lost[network.name].map { ", \($0) never answered" } ?? ""
            print("  \(network.name): \(samples[network.name]?.summary ?? "no samples")\(missing)")
        }
        if let ours = samples["trellis"], let theirs = samples["reference"] {
            print(String(format: "  ratio trellis/reference: p50 %.2f, p99 %.2f", ours.percentile(50) / theirs.percentile(50),
                         ours.percentile(99) / theirs.percentile(99)))
        }
    }

    /// Runs one plugin call inside the lab host's namespace, as a runtime there would; milliseconds.
    func call(_ plugin: String, _ verb: String, id: String, netns: String, configuration: String, arguments: String = "") throws -> Double {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/nsenter")
        process.arguments = ["--net=/run/netns/trellis-lab-h1", plugin]
        process.environment = ["CNI_COMMAND": verb, "CNI_CONTAINERID": id, "CNI_NETNS": netns, "CNI_IFNAME": "eth0",
                               "CNI_PATH": "/usr/lib/cni",
                               "CNI_ARGS": arguments]
        let input = Pipe(), output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        process.standardError = output
        let start = ContinuousClock.now
        try process.run()
        input.fileHandleForWriting.write(Data(configuration.utf8))
        try input.fileHandleForWriting.close()
        let answer = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let elapsed = milliseconds(since: start)
        guard process.terminationStatus == 0 else {
            throw TrellisError(.unavailable, "\(plugin) \(verb) failed: \(String(decoding: answer, as: UTF8.self))")
        }
        return elapsed
    }
}

/// Runs `arguments` with its output in the file `log` and waits for it with waitpid; the output. `podman
/// run -d` leaves conmon behind holding its output open (a pipe would never reach its end), and
/// Foundation's Process was seen to leave podman a zombie, never reaped.
func spawnAndWait(_ arguments: [String], log: String) throws -> String {
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
    return (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
}
