import ArgumentParser
import Foundation
import TrellisModel

/// One CNI ADD and one DEL of Trellis's plugin against Debian's reference `bridge` + `host-local`
/// plugins, interleaved run by run in the same lab host namespace (their order rotated), each run a
/// fresh container namespace: the time a runtime waits for the plugin, exec included.
struct CNIBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "cni", abstract: "CNI ADD and DEL: Trellis against bridge + host-local.")
    @Option(help: "Runs of each.") var runs = 100

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
             "ipam": {"type": "host-local", "subnet": "10.78.0.0/16", "dataDir": "\(work)/ipam"}}
            """)
        // A host runs containers already: one resident on each network keeps Trellis's router namespace and
        // the reference's bridge in place, so the runs measure an attach, not a host's first.
        for (name, plugin) in [("trellis", trellis), ("reference", reference)] {
            _ = try sh(["/usr/sbin/ip", "netns", "add", "trbench-cni-resident-\(name)"])
            _ = try call(plugin.plugin, "ADD", id: "resident\(name)", netns: "/run/netns/trbench-cni-resident-\(name)",
                         configuration: plugin.configuration)
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
    }

    /// Runs one plugin call inside the lab host's namespace, as a runtime there would; milliseconds.
    func call(_ plugin: String, _ verb: String, id: String, netns: String, configuration: String) throws -> Double {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/nsenter")
        process.arguments = ["--net=/run/netns/trellis-lab-h1", plugin]
        process.environment = ["CNI_COMMAND": verb, "CNI_CONTAINERID": id, "CNI_NETNS": netns, "CNI_IFNAME": "eth0", "CNI_PATH": "/usr/lib/cni"]
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
