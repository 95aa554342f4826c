import Foundation
import Glibc
import Testing
import TrellisModel
import TrellisTestSupport

extension LabTests {
    /// Three controllers on a three-member etcd, two hosts whose agents know all three controllers. The
    /// controller the agents use is killed (SIGKILL) while a container pings one on the other host 100 times a
    /// second: no ping is lost, and a container attached afterwards (the CLI moving to the next controller
    /// too) is reached from the other host. Then an etcd member is killed as well, and a third container still
    /// converges on both hosts.
    @Test(.enabled(if: etcdInstalled, "needs etcd-server")) func agentsMoveToAnotherControllerWithoutLosingAPacket() async throws {
        let lab = try await RunningLab(hosts: 2, controllers: 3)
        try await lab.makeSubnet("acme/app1/web/red", cidr: "10.8.1.0/24")
        let a = try await lab.member("a", on: "h1", subnet: "acme/app1/web/red", ip: "10.8.1.11")
        let b = try await lab.member("b", on: "h2", subnet: "acme/app1/web/red", ip: "10.8.1.12")
        try await lab.settle(hosts: 2)
        #expect(try ping(from: a.namespace, b.ip).status == 0)

        let pings = Process()
        pings.executableURL = URL(fileURLWithPath: "/usr/bin/nsenter")
        pings.arguments = ["--net=\(a.namespace.path)", "/usr/bin/ping", "-i", "0.01", "-c", "600", "-q", b.ip]
        let pingOutput = Pipe()
        pings.standardOutput = pingOutput
        try pings.run()
        defer { if pings.isRunning { kill(pings.processIdentifier, SIGKILL) }; pings.waitUntilExit() }
        try await Task.sleep(for: .seconds(1))
        kill(lab.pid("controller"), SIGKILL)

        let c = try await lab.member("c", on: "h2", subnet: "acme/app1/web/red", ip: "10.8.1.13")
        #expect(try reaches(a, c), "a container attached after the controller died is reached from the other host")
        pings.waitUntilExit()
        let summary = String(decoding: pingOutput.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(summary.contains("600 received"), "no ping lost while the agents moved: \(summary)")

        kill(lab.pid("etcd1"), SIGKILL)
        let d = try await lab.member("d", on: "h1", subnet: "acme/app1/web/red", ip: "10.8.1.14")
        #expect(try reaches(b, d) && reaches(c, d), "with one controller and one etcd member gone, a new container converges")
        let status = try await runTrellis(["lab", "status", "--dir", lab.directory.path], environment: [:])
        #expect(status.stdout.contains("controller  stopped") && status.stdout.contains("etcd1  stopped"), "\(status.stdout)")
        #expect(status.stdout.components(separatedBy: "\n").filter { $0.hasPrefix("h") && $0.contains(" yes ") }.count == 2,
                "both agents connected: \(status.stdout)")
    }

    /// Whether `from` gets an answer from `to` within 10 s.
    private func reaches(_ from: Member, _ to: Member) throws -> Bool {
        for _ in 0..<10 {
            if try ping(from: from.namespace, to.ip, count: 1).status == 0 { return true }
        }
        return false
    }
}
