import ArgumentParser
import Foundation
import TrellisModel

/// `trellis cni`: the CNI plugin's installation and network configurations.
struct CNICommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "cni",
                                                    abstract: "Use Trellis from CNI runtimes (podman, containerd, Kubernetes).",
                                                    subcommands: [Install.self, Conf.self])

    /// The directories runtimes look for plugins in: Debian's runtimes in /usr/lib/cni, containerd and
    /// Kubernetes in /opt/cni/bin.
    static let pluginDirectories = ["/usr/lib/cni", "/opt/cni/bin"]

    struct Install: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Install the plugin (trellis-cni, beside this binary) as 'trellis' in the CNI plugin directories.")
        @Option(name: .customLong("dir"), help: "A plugin directory (repeatable; default /usr/lib/cni and /opt/cni/bin).")
        var directories: [String] = []

        func run() throws {
            let plugin = URL(fileURLWithPath: Lab.executable).deletingLastPathComponent().appendingPathComponent("trellis-cni").path
            guard FileManager.default.isExecutableFile(atPath: plugin) else {
                throw TrellisError.notFound("no CNI plugin at \(plugin): build the trellis-cni product beside trellis")
            }
            for directory in directories.isEmpty ? CNICommand.pluginDirectories : directories {
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
                // Written beside and renamed over, so a runtime never runs a half-copied plugin.
                let target = "\(directory)/trellis", staging = "\(directory)/.trellis.new"
                try? FileManager.default.removeItem(atPath: staging)
                try FileManager.default.copyItem(atPath: plugin, toPath: staging)
                try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: staging)
                guard rename(staging, target) == 0 else {
                    throw TrellisError(.internalError, "cannot install \(target): \(String(cString: strerror(errno)))")
                }
                print(target)
            }
        }
    }

    struct Conf: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print a CNI network configuration list that attaches containers to a subnet (put it in /etc/cni/net.d).")
        @Argument(help: "The subnet, ENTERPRISE/DOMAIN/ZONE/SUBNET.") var subnet: String
        @Option(help: "The network's name, as runtimes call it (podman --network NAME).") var name: String
        @Option(help: "A port profile for every container of this network.") var profile: String?
        @Option(help: "Create endpoints on behalf of this user (refused unless the user may use the subnet).") var user: String?
        @Option(help: "The agent's socket on the host.") var agentSocket: String?
        @Option(help: "The configuration's CNI version: 0.4.0, 1.0.0 or 1.1.0.") var cniVersion = "1.0.0"

        func validate() throws {
            _ = try Names.split(subnet, kind: .subnet, field: "subnet")
            guard ["0.4.0", "1.0.0", "1.1.0"].contains(cniVersion) else {
                throw ValidationError("--cni-version must be 0.4.0, 1.0.0 or 1.1.0")
            }
            guard !name.isEmpty, name.allSatisfy({ $0.isLetter || $0.isNumber || "-_.".contains($0) }) else {
                throw ValidationError("--name must be letters, digits, '-', '_' or '.'")
            }
        }

        func run() throws {
            var plugin: [String: String] = ["type": "trellis", "subnet": subnet]
            plugin["profile"] = profile
            plugin["user"] = user
            plugin["agentSocket"] = agentSocket
            let list: [String: any Sendable] = ["cniVersion": cniVersion, "name": name, "plugins": [plugin]]
            let data = try JSONSerialization.data(withJSONObject: list, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
            print(String(decoding: data, as: UTF8.self))
        }
    }
}
