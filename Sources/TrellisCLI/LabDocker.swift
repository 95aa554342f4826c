import Foundation
import Glibc
import TrellisClient
import TrellisDocker
import TrellisModel
import TrellisNetlink

/// A lab host's Docker engine: `dockerd` in the host's network namespace and in a mount namespace of
/// its own, where the host's plugin directory is mounted on /run/docker/plugins, so that every
/// engine finds its own host's agent as the plugin `trellis`. Containers get the domain resolver as
/// their nameserver (`--dns`), and the image `trellis/busybox` is made from Debian's busybox-static.
struct LabDocker {
    static let dockerd = "/usr/sbin/dockerd"
    static let client = "/usr/bin/docker"
    static let image = "trellis/busybox"
    let lab: Lab
    let host: String

    var directory: String { "\(lab.directory)/\(host)-docker" }
    var socket: String { "\(directory)/docker.sock" }
    var plugins: String { "\(directory)/plugins" }
    var name: String { "\(host)-docker" }

    /// The agent's options that make it follow this engine and serve it the drivers.
    var agentArguments: [String] { ["--docker-socket", socket, "--plugin-socket", "\(plugins)/trellis.sock"] }

    func start() throws {
        for sub in ["data", "exec", "plugins"] {
            try FileManager.default.createDirectory(atPath: "\(directory)/\(sub)", withIntermediateDirectories: true)
        }
        try FileManager.default.createDirectory(atPath: "/run/docker/plugins", withIntermediateDirectories: true)
        let engine = [Self.dockerd, "--data-root", "\(directory)/data", "--exec-root", "\(directory)/exec", "-H", "unix://\(socket)",
                      "--pidfile", "\(directory)/dockerd.pid", "--bridge=none", "--iptables=false", "--ip-masq=false",
                      "--dns", "169.254.169.253"]
        let script = "mount --bind \(plugins) /run/docker/plugins && exec " + engine.joined(separator: " ")
        try lab.spawn(name, ["/usr/bin/nsenter", "--net=\(NetworkNamespace.namedDirectory)/\(Lab.hostNamespace(host))",
                             "/usr/bin/unshare", "--mount", "--propagation", "slave", "/bin/sh", "-c", script])
    }

    func awaitReady() async throws {
        let client = ControllerClient(baseURL: ControllerClient.baseURL(socket: socket), token: nil)
        try await lab.await("the Docker engine of \(host)", log: name) {
            (try? await client.exchange("GET", "/_ping", body: nil).status) == 200
        }
        try importImage()
    }

    /// `docker import` of a root filesystem holding busybox and its applets.
    private func importImage() throws {
        let root = "\(directory)/rootfs"
        try? FileManager.default.removeItem(atPath: root)
        for sub in ["bin", "etc", "tmp", "proc", "sys", "dev", "www"] {
            try FileManager.default.createDirectory(atPath: "\(root)/\(sub)", withIntermediateDirectories: true)
        }
        try FileManager.default.copyItem(atPath: "/bin/busybox", toPath: "\(root)/bin/busybox")
        let applets = try capture(["\(root)/bin/busybox", "--list"]).split(separator: "\n")
        for applet in applets where applet != "busybox" {
            try? FileManager.default.createSymbolicLink(atPath: "\(root)/bin/\(applet)", withDestinationPath: "busybox")
        }
        _ = try capture(["/bin/sh", "-c",
                         "tar -C \(root) -c . | \(Self.client) -H unix://\(socket) import --change 'ENV PATH=/bin' - \(Self.image)"])
        try? FileManager.default.removeItem(atPath: root)
    }

    private func capture(_ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: arguments[0])
        process.arguments = Array(arguments.dropFirst())
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        guard process.terminationStatus == 0 else {
            throw TrellisError(.unavailable, "\(arguments.joined(separator: " ")) failed: \(text)")
        }
        return text
    }

    /// Removes every container, then stops the engine (its containerd goes with it).
    func stop() {
        guard let pid = lab.pid(name), kill(pid, 0) == 0 else { return }
        _ = try? capture(["/bin/sh", "-c",
            "ids=$(\(Self.client) -H unix://\(socket) ps -aq); [ -z \"$ids\" ] || \(Self.client) -H unix://\(socket) rm -f $ids"])
        kill(pid, SIGTERM)
        for _ in 0..<150 where kill(pid, 0) == 0 { usleep(100_000) }
        if kill(pid, 0) == 0 { kill(pid, SIGKILL) }
        try? FileManager.default.removeItem(atPath: directory)
    }
}
