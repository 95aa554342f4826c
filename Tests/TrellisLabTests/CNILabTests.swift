import Foundation
import Glibc
import Testing
import TrellisClient
import TrellisModel
import TrellisNetlink
import TrellisTestSupport

/// The CNI plugin as built beside the trellis binary.
func cniPlugin() -> String {
    URL(fileURLWithPath: trellisExecutable()).deletingLastPathComponent().appendingPathComponent("trellis-cni").path
}

/// One CNI call as a runtime makes it: the verb and attachment in the environment, the configuration on stdin.
struct CNICall {
    var command: String
    var containerID = ""
    var netns = ""
    var ifname = "eth0"
    var arguments = ""

    func run(_ configuration: String) throws -> (status: Int32, output: String, json: [String: Any]?) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: cniPlugin())
        process.environment = ["CNI_COMMAND": command, "CNI_CONTAINERID": containerID, "CNI_NETNS": netns, "CNI_IFNAME": ifname,
                               "CNI_ARGS": arguments, "CNI_PATH": "/usr/lib/cni", "PATH": "/usr/bin:/bin"]
        let input = Pipe(), output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        process.standardError = output
        try process.run()
        input.fileHandleForWriting.write(Data(configuration.utf8))
        try input.fileHandleForWriting.close()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        return (process.terminationStatus, String(decoding: data, as: UTF8.self), json)
    }
}

extension RunningLab {
    /// A network configuration for the plugin (a list's entry with its name and version folded in).
    func cniConfiguration(host: String, subnet: String = "acme/app1/web/red", version: String = "1.0.0", extra: String = "") -> String {
        let socket = "\(directory.path)/\(host).sock"
        return #"{"cniVersion": "\#(version)", "name": "red", "type": "trellis", "subnet": "\#(subnet)", "agentSocket": "\#(socket)""#
            + extra + "}"
    }

    func endpoints(owner prefix: String) async throws -> [Endpoint] {
        try await endpoints().filter { $0.owner?.hasPrefix(prefix) == true }
    }
}

extension LabTests {
    /// The verbs driven as the spec defines them, good and bad, with the agent up and away.
    @Test func cniVerbsBehaveAsTheSpecSays() async throws {
        let lab = try await RunningLab(hosts: 1)
        try await lab.makeSubnet("acme/app1/web/red", cidr: "192.168.10.0/24")
        let configuration = lab.cniConfiguration(host: "h1")

        let version = try CNICall(command: "VERSION").run(#"{"cniVersion": "1.0.0"}"#)
        #expect(version.status == 0 && (version.json?["supportedVersions"] as? [String]) == ["0.4.0", "1.0.0", "1.1.0"],
                "\(version.output)")

        let c1 = try lab.container("cni1")
        var add = CNICall(command: "ADD", containerID: "c0ffee01", netns: c1.path, arguments: "IgnoreUnknown=1;K8S_POD_NAME=web-7")
        let added = try add.run(configuration)
        try #require(added.status == 0, "ADD: \(added.output)")
        let endpoint = try #require(try await lab.endpoints(owner: "cni:c0ffee01/eth0").first)
        #expect(endpoint.name == "web-7" && endpoint.host == "h1")
        // ADD answers once the port is in the kernel; the controller hears it is up right after.
        #expect(try await lab.eventually(5) {
            let recorded = try await lab.endpoints(owner: "cni:c0ffee01/eth0").first
            return recorded.map { $0.state == .up && $0.interface?.hasPrefix("trv") == true } ?? false
        }, "recorded as up")
        let interface = try #require((added.json?["interfaces"] as? [[String: Any]])?.first)
        let address = try #require((added.json?["ips"] as? [[String: Any]])?.first)
        #expect(interface["mac"] as? String == endpoint.mac.description && interface["sandbox"] as? String == c1.path)
        #expect(address["address"] as? String == "\(endpoint.ip)/24" && address["gateway"] as? String == "192.168.10.1")
        #expect(address["interface"] as? Int == 0, "the address points at the sandbox's interface")
        #expect(((added.json?["dns"] as? [String: Any])?["nameservers"] as? [String]) == ["169.254.169.253"])
        let inside = try RouteNetlink(in: c1)
        let link = try #require(try inside.link(named: "eth0"))
        #expect(try link.mac == endpoint.mac && inside.addresses().contains { $0.index == link.index && $0.address == endpoint.ip })

        var check = add
        check.command = "CHECK"
        let checked = try check.run(lab.cniConfiguration(host: "h1", extra: #", "prevResult": \#(added.output)"#))
        #expect(checked.status == 0 && checked.output.isEmpty, "CHECK after ADD: \(checked.output)")
        // The agent re-plugs a port whose veth is gone, so a broken interface is made by changing what only the
        // container's side holds: its MAC.
        try inside.setLink(index: link.index, mac: MACAddress("02:00:00:00:00:99")!)
        let broken = try check.run(configuration)
        #expect(broken.status == 1 && (broken.json?["msg"] as? String)?.contains("interface eth0 has MAC 02:00:00:00:00:99") == true,
                "\(broken.output)")
        try inside.deleteLink(index: link.index)
        let missing = try check.run(configuration)
        let replugged = try inside.link(named: "eth0")?.mac == endpoint.mac
        #expect((missing.status == 1 && (missing.json?["msg"] as? String)?.contains("interface eth0 is missing") == true) || replugged,
                "CHECK with eth0 deleted fails unless the agent has already plugged it again: \(missing.output)")

        var delete = CNICall(command: "DEL", containerID: "c0ffee01")
        for round in 1...2 {
            let deleted = try delete.run(configuration)
            #expect(deleted.status == 0 && deleted.output.isEmpty, "DEL \(round), without a netns: \(deleted.output)")
        }
        #expect(try await lab.endpoints(owner: "cni:").isEmpty, "the address is released")

        // A 0.4.0 configuration, as podman writes them, gets a 0.4.0 result.
        add.containerID = "c0ffee02"
        let old = try add.run(lab.cniConfiguration(host: "h1", version: "0.4.0"))
        #expect(old.status == 0 && old.json?["cniVersion"] as? String == "0.4.0"
                && ((old.json?["ips"] as? [[String: Any]])?.first?["version"] as? String) == "4", "\(old.output)")

        // Bad input: each refused with the spec's code, and nothing left in the namespace or the controller.
        let c2 = try lab.container("cni2")
        let refusals: [(String, CNICall, Int)] = [
            (#"{"cniVersion": "1.0.0", "name": "red", "type": "trellis"}"#,
             CNICall(command: "ADD", containerID: "bad1", netns: c2.path), 7),
            ("{", CNICall(command: "ADD", containerID: "bad2", netns: c2.path), 6),
            (lab.cniConfiguration(host: "h1", version: "0.2.0"), CNICall(command: "ADD", containerID: "bad3", netns: c2.path), 1),
            (lab.cniConfiguration(host: "h1", subnet: "acme/app1/web/nowhere"),
             CNICall(command: "ADD", containerID: "bad4", netns: c2.path), 7),
            (configuration, CNICall(command: "ADD", containerID: "bad5", netns: c2.path, arguments: "IP=10.9.9.9"), 100),
            (configuration, CNICall(command: "ADD", containerID: "bad6", netns: "/run/netns/absent"), 100),
            (configuration, CNICall(command: "ADD", netns: c2.path), 4),
        ]
        for (text, call, code) in refusals {
            let refused = try call.run(text)
            #expect(refused.status == 1 && refused.json?["code"] as? Int == code, "\(call.containerID): \(refused.output)")
        }
        #expect(try RouteNetlink(in: c2).links().map(\.name) == ["lo"], "no half-made interface")
        #expect(try await lab.endpoints(owner: "cni:bad").isEmpty, "no address taken")

        // Fifty ADDs at once: fifty distinct addresses.
        let many = try (1...50).map { try lab.container("many\($0)") }
        let results = await withTaskGroup(of: Int32.self) { group in
            for (index, namespace) in many.enumerated() {
                group.addTask {
                    (try? CNICall(command: "ADD", containerID: "many\(index)", netns: namespace.path).run(configuration).status) ?? -1
                }
            }
            return await group.reduce(into: []) { $0.append($1) }
        }
        #expect(results.allSatisfy { $0 == 0 }, "\(results)")
        let concurrent = try await lab.endpoints(owner: "cni:many")
        #expect(concurrent.count == 50 && Set(concurrent.map(\.ip)).count == 50)

        // GC keeps the listed attachments and removes the rest of the network's.
        let valid = (0..<10).map { #"{"containerID": "many\#($0)", "ifname": "eth0"}"# }.joined(separator: ", ")
        let collected = try CNICall(command: "GC").run(lab.cniConfiguration(host: "h1", version: "1.1.0",
                                                                             extra: #", "cni.dev/valid-attachments": [\#(valid)]"#))
        #expect(collected.status == 0, "GC: \(collected.output)")
        let kept = try await lab.endpoints(owner: "cni:")
        #expect(Set(kept.compactMap(\.owner)) == Set((0..<10).map { "cni:many\($0)/eth0" }), "\(kept.compactMap(\.owner))")

        // The agent away: STATUS says so, ADD asks to try again later, DEL is kept and carried out on its return.
        let status = try CNICall(command: "STATUS").run(lab.cniConfiguration(host: "h1", version: "1.1.0"))
        #expect(status.status == 0, "STATUS with the agent up: \(status.output)")
        lab.stop("h1")
        let away = try CNICall(command: "STATUS").run(lab.cniConfiguration(host: "h1", version: "1.1.0"))
        #expect(away.status == 1 && away.json?["code"] as? Int == 50, "\(away.output)")
        let later = try CNICall(command: "ADD", containerID: "late", netns: c2.path).run(configuration)
        #expect(later.status == 1 && later.json?["code"] as? Int == 11, "\(later.output)")
        delete.containerID = "many0"
        let postponed = try delete.run(configuration)
        #expect(postponed.status == 0, "DEL with the agent away is kept: \(postponed.output)")
        try await lab.restart("h1")
        var gone = false
        for _ in 0..<300 where !gone {
            try await Task.sleep(for: .milliseconds(100))
            gone = try await !lab.endpoints(owner: "cni:").contains { $0.owner == "cni:many0/eth0" }
        }
        let log = (try? String(contentsOf: lab.directory.appendingPathComponent("h1.log"), encoding: .utf8)) ?? ""
        #expect(gone, "the kept DEL was carried out when the agent came back: \(log.suffix(1500))")
    }
}

extension LabTests {
    /// The bandwidth capability becomes the port's own rate limits, which real traffic meets in both
    /// directions (within 15 %), with Kubernetes' "no particular burst" taken as Trellis's default.
    @Test(.enabled(if: FileManager.default.fileExists(atPath: "/usr/bin/iperf3"), "needs iperf3"))
    func cniBandwidthLimitsThePortBothWays() async throws {
        let lab = try await RunningLab(hosts: 2)
        try await lab.makeSubnet("acme/app1/web/red", cidr: "192.168.10.0/24")
        let peer = try await lab.member("peer", on: "h2", subnet: "acme/app1/web/red", ip: "192.168.10.20")
        let namespace = try lab.container("cnibw")
        let bandwidth = #", "capabilities": {"bandwidth": true}, "runtimeConfig": {"bandwidth": "#
            + #"{"egressRate": 10000000, "egressBurst": 2147483647, "ingressRate": 20000000}}"#
        let added = try CNICall(command: "ADD", containerID: "bw1", netns: namespace.path)
            .run(lab.cniConfiguration(host: "h1", extra: bandwidth))
        try #require(added.status == 0, "ADD: \(added.output)")
        let endpoint = try #require(try await lab.endpoints(owner: "cni:bw1/eth0").first)
        #expect(endpoint.egressRate == RateLimit(bitsPerSecond: 10_000_000) && endpoint.ingressRate == RateLimit(bitsPerSecond: 20_000_000))
        try await lab.settle(hosts: 2)
        let limited = Member(name: endpoint.name, namespace: namespace, ip: endpoint.ip.description, subnet: endpoint.subnet)
        let sent = try iperf(from: limited, to: peer).bitsPerSecond
        let received = try iperf(from: limited, to: peer, reverse: true).bitsPerSecond
        #expect(abs(sent / 10e6 - 1) <= 0.15, "egress \(sent / 1e6) Mbit/s against 10")
        #expect(abs(received / 20e6 - 1) <= 0.15, "ingress \(received / 1e6) Mbit/s against 20")
        print("CNI bandwidth: egress \(sent / 1e6) Mbit/s against 10, ingress \(received / 1e6) Mbit/s against 20")
        let deleted = try CNICall(command: "DEL", containerID: "bw1").run(lab.cniConfiguration(host: "h1", extra: bandwidth))
        #expect(deleted.status == 0, "DEL: \(deleted.output)")
    }
}
