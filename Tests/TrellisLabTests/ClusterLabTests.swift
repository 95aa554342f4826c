import Foundation
import Glibc
import Testing
import TrellisClient
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
        var lines: [String] = []
        for _ in 0..<20 {
            let status = try await runTrellis(["lab", "status", "--dir", lab.directory.path], environment: [:])
            lines = status.stdout.components(separatedBy: "\n").map { $0.split(separator: " ").joined(separator: " ") }
            if lines.contains(where: { $0.hasPrefix("controller stopped") }) && lines.contains(where: { $0.hasPrefix("etcd1 stopped") })
                && lines.contains(where: { $0.hasPrefix("etcd2 healthy") }) { break }
            try await Task.sleep(for: .milliseconds(250))
        }
        #expect(lines.contains(where: { $0.hasPrefix("controller stopped") }) && lines.contains(where: { $0.hasPrefix("etcd1 stopped") })
                && lines.contains(where: { $0.hasPrefix("etcd2 healthy") }), "lab status: \(lines)")
        #expect(lines.filter { $0.hasPrefix("h") && $0.contains(" yes") }.count == 2, "both agents connected: \(lines)")
    }

    /// Whether `from` gets an answer from `to` within 10 s.
    private func reaches(_ from: Member, _ to: Member) throws -> Bool {
        for _ in 0..<10 {
            if try ping(from: from.namespace, to.ip, count: 1).status == 0 { return true }
        }
        return false
    }
}

extension LabTests {
    /// 600 creates into one subnet from 48 clients spread over three controllers; one controller and one etcd
    /// member are killed with SIGKILL a third of the way in. Every create that answered 201 exists afterwards
    /// with its address, no address or MAC is held twice, every failure is an error that says what could not
    /// be reached, and the two controllers left go on serving creates.
    @Test(.enabled(if: etcdInstalled, "needs etcd-server")) func createsSurviveAControllerAndAnEtcdMemberKilledMidway() async throws {
        let lab = try await RunningLab(hosts: 1, controllers: 3)
        try await lab.makeSubnet("acme/app1/web/big", cidr: "10.9.0.0/21")
        let sockets = ["controller", "controller2", "controller3"].map {
            ControllerClient.baseURL(socket: lab.directory.appendingPathComponent("\($0).sock").path)
        }
        actor Outcomes {
            var made: [Endpoint] = []
            var failures: [String] = []
            var started = 0
            func start() -> Int { started += 1; return started }
            func record(_ endpoint: Endpoint) { made.append(endpoint) }
            func record(_ failure: String) { failures.append(failure) }
        }
        let outcomes = Outcomes()
        let total = 600, workers = 48
        try await withThrowingTaskGroup(of: Void.self) { group in
            for worker in 0..<workers {
                // Each worker starts at another controller and moves on to the next when its own is gone.
                let order = (0..<3).map { sockets[(worker + $0) % 3] }
                let client = ControllerClient(baseURLs: order, token: lab.token)
                group.addTask {
                    for index in stride(from: worker, to: total, by: workers) {
                        if await outcomes.start() == total / 3 {
                            kill(lab.pid("controller2"), SIGKILL)
                            kill(lab.pid("etcd2"), SIGKILL)
                        }
                        do {
                            let made: Endpoint = try await client.post("/api/v1/endpoints",
                                                                       EndpointCreate(subnet: "acme/app1/web/big", name: "e\(index)"))
                            await outcomes.record(made)
                        } catch {
                            await outcomes.record("\(error)")
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
        let made = await outcomes.made, failures = await outcomes.failures
        #expect(made.count + failures.count == total)
        print("creates with a controller and an etcd member killed: \(made.count) made, \(failures.count) failed"
              + (failures.first.map { "; first failure: \($0)" } ?? ""))
        #expect(made.count > total / 2,
                "the two controllers left go on serving: \(made.count) of \(total), failures: \(failures.prefix(3))")
        #expect(failures.allSatisfy { $0.contains("cannot reach") || $0.contains("etcd") || $0.contains("store") },
                "every failure says what could not be reached: \(failures.prefix(5))")
        // Reads are linearizable: one list through a controller holds every create answered through the others.
        let client = ControllerClient(baseURLs: [sockets[0], sockets[2]], token: lab.token)
        let stored: ListBody<Endpoint> = try await client.get("/api/v1/endpoints?subnet=acme/app1/web/big")
        let byName = Dictionary(stored.items.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        let missing = made.filter { byName[$0.name]?.ip != $0.ip || byName[$0.name]?.mac != $0.mac }
        #expect(missing.isEmpty, "every 201 is in the store as answered; not: \(missing.prefix(5).map { "\($0.name) \($0.ip)" })")
        #expect(Set(stored.items.map(\.ip)).count == stored.items.count, "no address held twice")
        #expect(Set(stored.items.map(\.mac)).count == stored.items.count, "no MAC held twice")
        #expect(Set(stored.items.map(\.name)).count == stored.items.count, "no create made twice")
    }
}
