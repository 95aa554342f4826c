import Foundation
import Glibc
import Testing
import TrellisClient
import TrellisModel
import TrellisNetlink
import TrellisNetlinkWire
import TrellisTestSupport

extension LabTests {
    /// A container in a plain overlay (no policy, no profile) tries to take its neighbour's traffic: it
    /// takes the neighbour's address, forges ARP replies and gratuitous ARPs for it, then takes its MAC
    /// too. The neighbour's TCP flow and pings keep flowing, another container's cache still maps the
    /// address to the neighbour's MAC, the bridge still forwards that MAC to the neighbour's port, and
    /// the attacker hears none of it.
    @Test func aSpoofingContainerCannotHijackItsNeighbour() async throws {
        let lab = try await RunningLab(hosts: 2)
        try await lab.makeSubnet("acme/app1/web/red", cidr: "10.7.1.0/24")
        let victim = try await lab.member("victim", on: "h1", subnet: "acme/app1/web/red", ip: "10.7.1.11")
        let attacker = try await lab.member("attacker", on: "h1", subnet: "acme/app1/web/red", ip: "10.7.1.12")
        let client = try await lab.member("client", on: "h1", subnet: "acme/app1/web/red", ip: "10.7.1.13")
        let remote = try await lab.member("remote", on: "h2", subnet: "acme/app1/web/red", ip: "10.7.1.14")
        try await lab.settle(hosts: 2)
        let endpoints = Dictionary(try await lab.endpoints().map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        let victimMAC = try #require(endpoints["victim"]?.mac), attackerMAC = try #require(endpoints["attacker"]?.mac)
        let flow = try lab.flow(from: client, to: victim, port: 7100)
        let remoteFlow = try lab.flow(from: remote, to: victim, port: 7101)
        #expect(flow.carries("before") && remoteFlow.carries("before"))
        #expect(try ping(from: client.namespace, victim.ip).status == 0)

        func inAttacker(_ arguments: [String]) throws -> (status: Int32, output: String) {
            try runProgram(["/usr/bin/nsenter", "--net=\(attacker.namespace.path)"] + arguments)
        }
        let forge = repositoryRoot.appendingPathComponent("Tests/TrellisLabTests/arp-forge.py").path
        let clientMAC = try #require(endpoints["client"]?.mac).description
        // A sniffer in the attacker's namespace counts frames for the victim's address.
        let sniffer = Process()
        sniffer.executableURL = URL(fileURLWithPath: "/usr/bin/nsenter")
        sniffer.arguments = ["--net=\(attacker.namespace.path)", "/usr/bin/python3", "-c", """
            import socket, time
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800)); s.settimeout(0.2)
            end, heard = time.time() + 8, 0
            while time.time() < end:
                try: frame = s.recv(2048)
                except socket.timeout: continue
                if frame[30:34] == socket.inet_aton("\(victim.ip)") and frame[23] == 6: heard += 1
            print(heard, flush=True)
            """]
        let heard = Pipe()
        sniffer.standardOutput = heard
        try sniffer.run()
        defer { if sniffer.isRunning { kill(sniffer.processIdentifier, SIGKILL) }; sniffer.waitUntilExit() }

        // 1. The neighbour's address, announced and used.
        _ = try inAttacker(["/usr/sbin/ip", "addr", "flush", "dev", "eth0"])
        _ = try inAttacker(["/usr/sbin/ip", "addr", "add", "\(victim.ip)/24", "dev", "eth0"])
        _ = try inAttacker(["/usr/bin/ping", "-c", "2", "-W", "1", client.ip])
        // 2. Forged ARP replies and gratuitous ARPs from its own MAC, claiming the neighbour's address.
        let forged = try inAttacker(["/usr/bin/python3", forge, "eth0", attackerMAC.description, victim.ip, clientMAC, client.ip, "20"])
        #expect(forged.status == 0, "arp-forge: \(forged.output)")
        // 3. The neighbour's MAC as well, sending from it.
        _ = try inAttacker(["/usr/sbin/ip", "link", "set", "eth0", "address", victimMAC.description])
        _ = try inAttacker(["/usr/bin/python3", forge, "eth0", victimMAC.description, victim.ip, clientMAC, client.ip, "20"])
        _ = try inAttacker(["/usr/bin/ping", "-c", "2", "-W", "1", client.ip])

        #expect(flow.carries("during the attack") && remoteFlow.carries("from the other host during the attack"))
        #expect(try ping(from: client.namespace, victim.ip, count: 3).status == 0, "the neighbour still answers")
        let cached = try RouteNetlink(in: client.namespace).neighbours().filter { $0.address == IPv4Address(victim.ip) }
        #expect(cached.allSatisfy { $0.mac == victimMAC }, "the client's cache maps the address to the neighbour: \(cached)")
        let domain: Domain = try await lab.controller.get("/api/v1/domains/acme/app1")
        let router = try RouteNetlink(in: try NetworkNamespace(named: "trellis-h1-d\(domain.id)"))
        let victimPort = try router.requireLink(named: try #require(endpoints["victim"]?.interface))
        let learned = try router.neighbours(family: NL.AF_BRIDGE).filter { $0.mac == victimMAC && $0.master != nil }
        #expect(!learned.isEmpty && learned.allSatisfy { $0.index == victimPort.index },
                "the bridge forwards the neighbour's MAC to the neighbour's port only: \(learned)")
        sniffer.waitUntilExit()
        let count = Int(String(decoding: heard.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            .trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
        #expect(count == 0, "the attacker heard \(count) TCP packets for the neighbour's address")
    }
}
