import Foundation
import Glibc
import Testing
import TrellisClient
import TrellisModel
import TrellisNetlink
import TrellisTestSupport

/// The agent's eBPF fast path in a lab (on by default where the kernel runs it): which path frames took
/// is read from the bridge path's own counters with iproute2.
extension LabTests {
    /// Packets the router's bridge sent to `port` (its host end's transmit counter), read with `ip -s link`.
    func bridged(to port: String) throws -> Int {
        let router = try #require(NetworkNamespace.names().first { $0.hasPrefix("trellis-h1-d") }, "h1's router namespace")
        return try #require(try sentCounters(namespace: router, link: port)?.packets, "\(port)'s counters")
    }

    /// How many of 50 quick pings from `a` to `b` the bridge carried to `port`; nil when some were lost.
    func bridgedPings(from a: Member, to b: Member, port: String) throws -> Int? {
        let before = try bridged(to: port)
        let pinged = try ping(from: a.namespace, b.ip, count: 50, extra: ["-q", "-i", "0.01"])
        guard pinged.status == 0 else { return nil }
        return try bridged(to: port) - before
    }

    @Test(.enabled(if: testDatapath != "bridge", "the lab runs the bridge path alone"))
    func localPortsOfASubnetTalkOverTheFastPathUnlessShapedOrFiltered() async throws {
        let lab = try await RunningLab(hosts: 1)
        try await lab.makeSubnet("acme/app1/web/red", cidr: "10.6.1.0/24")
        try await lab.trellis(on: "h1", "subnet", "create", "acme/app1/web/blue", "--cidr", "10.6.2.0/24")
        let a = try await lab.member("a", on: "h1", subnet: "acme/app1/web/red", ip: "10.6.1.11")
        let b = try await lab.member("b", on: "h1", subnet: "acme/app1/web/red", ip: "10.6.1.12")
        let c = try await lab.member("c", on: "h1", subnet: "acme/app1/web/blue", ip: "10.6.2.13")
        try await lab.settle(hosts: 1)
        let endpoint: Endpoint = try await lab.controller.get("/api/v1/endpoints/acme/app1/web/red/b")
        let port = "trv" + String(endpoint.id, radix: 36)

        // Within the subnet the echo requests go around the bridge; another subnet stays out of reach.
        let fast = try bridgedPings(from: a, to: b, port: port)
        #expect(fast.map { $0 < 10 } == true, "the bridge carried \(String(describing: fast)) of 50")
        #expect(try ping(from: a.namespace, c.ip, count: 1).status != 0, "subnets are isolated on the fast path too")
        // A TCP connection that lives through the port's moves between the paths below.
        let connection = try lab.flow(from: a, to: b, port: 7000)
        #expect(connection.carries("on the fast path"))

        // A forged source address is dropped, as on the bridge path.
        let inside = try RouteNetlink(in: a.namespace)
        try inside.addAddress(index: try inside.requireLink(named: "eth0").index, IPv4Address("10.6.1.77")!, prefixLength: 24)
        #expect(try ping(from: a.namespace, b.ip, count: 2, extra: ["-I", "10.6.1.77"]).status != 0, "a forged source got through")
        try inside.deleteAddress(index: try inside.requireLink(named: "eth0").index, IPv4Address("10.6.1.77")!, prefixLength: 24)

        // What the fast path delivered is in b's counters.
        let reported = Date()
        var received: UInt64 = 0
        for _ in 0..<50 {
            let stats: EndpointStats? = try? await lab.controller.get("/api/v1/endpoints/\(endpoint.id)/stats")
            if let stats, stats.collectedAt > reported {
                received = stats.received.packets
                break
            }
            try await Task.sleep(for: .milliseconds(200))
        }
        #expect(received >= 50, "b's counters show \(received) packets received")

        // The agent restarts under 100 pings a second: none is lost; while it is away its program's filters keep the
        // ports on the fast path, and its successor takes them over.
        let router = "/run/netns/" + (try #require(NetworkNamespace.names().first { $0.hasPrefix("trellis-h1-d") }))
        let hooked = try ingressProgramIDs(namespacePath: router, link: port)
        let flow = Task { try ping(from: a.namespace, b.ip, count: 300, extra: ["-q", "-i", "0.01"]) }
        try await Task.sleep(for: .milliseconds(500))
        lab.stop("h1")
        let away = try bridgedPings(from: a, to: b, port: port)
        #expect(away.map { $0 < 10 } == true, "while the agent was away the bridge carried \(String(describing: away)) of 50")
        try await lab.restart("h1")
        let during = try await flow.value
        #expect(during.output.contains("300 received"), "\(during.output.split(separator: "\n").suffix(2))")
        try await lab.settle(hosts: 1)
        let again = try bridgedPings(from: a, to: b, port: port)
        #expect(again.map { $0 < 10 } == true, "after the restart the bridge carried \(String(describing: again)) of 50")
        #expect(try ingressProgramIDs(namespacePath: router, link: port) == hooked && hooked.count == 1,
                "the successor took over its predecessor's program: its filter was left alone")
        #expect(connection.carries("after the restart"))

        // A port given a rate limit leaves the fast path (the bridge's path shapes it); without, it is back.
        try await lab.trellis(on: "h1", "profile", "create", "acme/limited", "--ingress-rate", "500mbit")
        try await lab.trellis(on: "h1", "endpoint", "set", "acme/app1/web/red/b", "--profile", "acme/limited")
        try await lab.settle(hosts: 1)
        let shaped = try bridgedPings(from: a, to: b, port: port)
        #expect(shaped.map { $0 >= 50 } == true, "to a shaped port the bridge carried \(String(describing: shaped)) of 50")
        #expect(connection.carries("to a shaped port"))
        try await lab.trellis(on: "h1", "endpoint", "set", "acme/app1/web/red/b", "--profile", "")
        try await lab.settle(hosts: 1)
        let unshaped = try bridgedPings(from: a, to: b, port: port)
        #expect(unshaped.map { $0 < 10 } == true, "without its limit the bridge carried \(String(describing: unshaped)) of 50")

        // A policy in the domain puts the router's ruleset in charge of the subnet too: echo requests (not a
        // connection the fast path takes where a ruleset filters) all cross the bridge and its filters.
        try await lab.trellis(on: "h1", "policy", "create", "acme/app1/red-blue")
        try await lab.trellis(on: "h1", "policy", "rule", "add", "acme/app1/red-blue",
                              "allow icmp from acme/app1/web/red to acme/app1/web/blue")
        try await lab.settle(hosts: 1)
        #expect(try ping(from: a.namespace, c.ip, count: 1).status == 0)
        let filtered = try bridgedPings(from: a, to: b, port: port)
        #expect(filtered.map { $0 >= 50 } == true, "with a policy the bridge carried \(String(describing: filtered)) of 50")
        #expect(connection.carries("on the bridge path"), "the connection broke when its ports left the fast path")

        // Without the policy the ports are back on the fast path, and the connection goes on.
        try await lab.trellis(on: "h1", "policy", "delete", "acme/app1/red-blue")
        try await lab.settle(hosts: 1)
        #expect(connection.carries("back on the fast path"), "the connection broke when its ports came back to the fast path")
        let back = try bridgedPings(from: a, to: b, port: port)
        #expect(back.map { $0 < 10 } == true, "without the policy the bridge carried \(String(describing: back)) of 50")
    }

    /// Bytes the router's bridge sent to `port` on `host` (its host end's transmit counter).
    func bridgedBytes(to port: String, on host: String = "h1") throws -> Int {
        let router = try #require(NetworkNamespace.names().first { $0.hasPrefix("trellis-\(host)-d") }, "\(host)'s router namespace")
        return try #require(try sentCounters(namespace: router, link: port)?.bytes, "\(port)'s counters")
    }

    /// The port of a member's endpoint on h1.
    func port(of path: String, in lab: RunningLab) async throws -> String {
        let endpoint: Endpoint = try await lab.controller.get("/api/v1/endpoints/\(path)")
        return "trv" + String(endpoint.id, radix: 36)
    }

    /// Subnets red (10.6.N.0/24) and blue (10.6.N+1.0/24) of acme/app1, a and b in red and c in blue: a on h1,
    /// b and c on `peers`.
    func redAndBlue(_ lab: RunningLab, from octet: Int, peers: String) async throws -> (a: Member, b: Member, c: Member) {
        try await lab.makeSubnet("acme/app1/web/red", cidr: "10.6.\(octet).0/24")
        try await lab.trellis(on: "h1", "subnet", "create", "acme/app1/web/blue", "--cidr", "10.6.\(octet + 1).0/24")
        let a = try await lab.member("a", on: "h1", subnet: "acme/app1/web/red", ip: "10.6.\(octet).11")
        let b = try await lab.member("b", on: peers, subnet: "acme/app1/web/red", ip: "10.6.\(octet).12")
        let c = try await lab.member("c", on: peers, subnet: "acme/app1/web/blue", ip: "10.6.\(octet + 1).13")
        return (a, b, c)
    }

    /// A policy that allows TCP to port 5201 from red to blue, in force on `hosts` hosts.
    func allowRedToBlue(_ lab: RunningLab, hosts: Int) async throws {
        try await lab.trellis(on: "h1", "policy", "create", "acme/app1/red-blue")
        try await lab.trellis(on: "h1", "policy", "rule", "add", "acme/app1/red-blue",
                              "allow tcp from acme/app1/web/red to acme/app1/web/blue port 5201")
        try await lab.settle(hosts: hosts)
    }

    /// Deletes the policy: `connection`, which it allowed, must stop.
    func expectConnectionStopsWithThePolicy(_ connection: TCPFlow, _ lab: RunningLab, hosts: Int) async throws {
        try await lab.trellis(on: "h1", "policy", "delete", "acme/app1/red-blue")
        try await lab.settle(hosts: hosts)
        #expect(!connection.carries("no longer allowed"), "a connection the ruleset no longer allows went on")
    }

    /// Where a policy filters (between subnets always), a connection it allows skips the router once the
    /// router accepted it, and is still counted in the flows API; one it no longer allows stops.
    @Test(.enabled(if: FileManager.default.fileExists(atPath: "/usr/bin/iperf3"), "needs iperf3"),
          .enabled(if: testDatapath != "bridge", "the lab runs the bridge path alone"))
    func connectionsAPolicyAllowsSkipTheRouterAndStopWhenItNoLongerDoes() async throws {
        let lab = try await RunningLab(hosts: 1)
        let (a, b, c) = try await redAndBlue(lab, from: 3, peers: "h1")
        try await allowRedToBlue(lab, hosts: 1)
        let portB = try await port(of: "acme/app1/web/red/b", in: lab), portC = try await port(of: "acme/app1/web/blue/c", in: lab)

        // What the policy does not allow stays out of reach.
        #expect(try ping(from: a.namespace, c.ip, count: 1).status != 0, "ICMP between the subnets is not allowed")
        #expect(throws: (any Error).self, "TCP to another port is not allowed") { try TCPFlow(from: a, to: c, port: 7001) }

        // Routed between the subnets, and switched within one under the domain's ruleset: the bridge carries a
        // connection's first packets only.
        for (server, port) in [(c, portC), (b, portB)] {
            let before = try bridgedBytes(to: port)
            let moved = try iperf(from: a, to: server, seconds: 2).bytes
            let bridged = Double(try bridgedBytes(to: port) - before)
            print("fast path, filtered: iperf3 moved \(Int(moved)) bytes to \(server.name), the bridge carried \(Int(bridged))")
            #expect(moved > 0 && bridged < moved * 0.05, "the bridge carried \(Int(bridged)) of \(Int(moved)) bytes to \(server.name)")
        }

        // The flows API counts what the fast path carried: conntrack's counters and the program's together.
        let counted = try await countedFlowBytes(from: a, to: c, subnet: "acme/app1/web/blue", host: "h1", least: 10_000_000, in: lab)
        #expect(counted >= 10_000_000, "the flows API counted \(counted) bytes of the routed connection")

        // Another policy in the domain is a new ruleset: the connections the fast path carries go through the
        // router until it accepts them again, and a bulk one goes on though conntrack never saw its gigabytes.
        let router = "/run/netns/" + (try #require(NetworkNamespace.names().first { $0.hasPrefix("trellis-h1-d") }))
        let generation = try NFTables.table("inet", "trellis", namespacePath: router)?.comment
        let transfer = try await iperfIntervals(from: a, to: c, seconds: 6) {
            try await lab.trellis(on: "h1", "policy", "create", "acme/app1/blue-red")
            try await lab.trellis(on: "h1", "policy", "rule", "add", "acme/app1/blue-red",
                                  "allow udp from acme/app1/web/blue to acme/app1/web/red port 53")
            for _ in 0..<100 where try NFTables.table("inet", "trellis", namespacePath: router)?.comment == generation {
                try await Task.sleep(for: .milliseconds(20))
            }
        }
        print("fast path across a ruleset change: bytes per second \(transfer.bytes), the ruleset in force after \(transfer.doneAfter)")
        #expect(transfer.doneAfter < .seconds(4), "the new ruleset took \(transfer.doneAfter) to be in force")
        #expect(transfer.error == nil, "the connection failed across the ruleset change: \(transfer.error ?? "")")
        #expect(transfer.bytes.count == 6 && transfer.bytes.suffix(2).allSatisfy { $0 > 1_000_000 },
                "bytes per second across a ruleset change: \(transfer.bytes)")

        // A connection the policy allowed stops when the policy goes, though it was on the fast path.
        let connection = try lab.flow(from: a, to: c, port: 5201)
        #expect(connection.carries("allowed"))
        let before = try bridgedBytes(to: portC)
        for _ in 0..<20 { #expect(connection.carries("on the fast path")) }
        #expect(try bridgedBytes(to: portC) - before < 1000, "the connection's segments skipped the bridge")
        try await expectConnectionStopsWithThePolicy(connection, lab, hosts: 1)
    }

    /// The bytes the flows API counts of the connections from `a` to `b` on TCP port 5201 on `host`, once they
    /// reach `least` (or after 10 s).
    func countedFlowBytes(from a: Member, to b: Member, subnet: String, host: String, least: UInt64, in lab: RunningLab) async throws
        -> UInt64 {
        var counted: UInt64 = 0
        for _ in 0..<20 {
            let flows: FlowList = try await lab.controller.get("/api/v1/flows?subnet=\(subnet)")
            counted = flows.items.filter { $0.source.description == a.ip && $0.destination.description == b.ip && $0.host == host }
                .filter { $0.destinationPort == 5201 }.map(\.original.bytes).max() ?? 0
            if counted >= least { break }
            try await Task.sleep(for: .milliseconds(500))
        }
        return counted
    }

    /// Between hosts, frames go from the sender's port straight to its subnet's VXLAN device and from the
    /// receiver's VXLAN device straight into the container: neither host's bridge carries them, policy
    /// between subnets still holds, and both hosts' flows count what crossed.
    @Test(.enabled(if: FileManager.default.fileExists(atPath: "/usr/bin/iperf3"), "needs iperf3"),
          .enabled(if: testDatapath != "bridge", "the lab runs the bridge path alone"))
    func connectionsAcrossHostsSkipTheBridgesAtBothEnds() async throws {
        let lab = try await RunningLab(hosts: 2)
        let (a, b, c) = try await redAndBlue(lab, from: 5, peers: "h2")
        try await lab.settle(hosts: 2)
        let portA = try await port(of: "acme/app1/web/red/a", in: lab), portB = try await port(of: "acme/app1/web/red/b", in: lab)
        let portC = try await port(of: "acme/app1/web/blue/c", in: lab)

        // Isolated subnets, and a forged source, stay out of reach as on the bridge path.
        #expect(try ping(from: a.namespace, b.ip, count: 2).status == 0)
        #expect(try ping(from: a.namespace, c.ip, count: 1).status != 0, "subnets are isolated across hosts too")
        let inside = try RouteNetlink(in: a.namespace)
        try inside.addAddress(index: try inside.requireLink(named: "eth0").index, IPv4Address("10.6.5.77")!, prefixLength: 24)
        #expect(try ping(from: a.namespace, b.ip, count: 2, extra: ["-I", "10.6.5.77"]).status != 0, "a forged source got through")
        try inside.deleteAddress(index: try inside.requireLink(named: "eth0").index, IPv4Address("10.6.5.77")!, prefixLength: 24)

        // Within the subnet, nothing filtering: h2's bridge carries nothing to b, either way.
        for reverse in [false, true] {
            let before = (try bridgedBytes(to: portB, on: "h2"), try bridgedBytes(to: portA, on: "h1"))
            let moved = try iperf(from: a, to: b, seconds: 2, reverse: reverse).bytes
            let after = (try bridgedBytes(to: portB, on: "h2"), try bridgedBytes(to: portA, on: "h1"))
            let bridged = Double(reverse ? after.1 - before.1 : after.0 - before.0)
            print("fast path across hosts\(reverse ? ", reversed" : ""): iperf3 moved \(Int(moved)) bytes, the bridge carried",
                  Int(bridged))
            #expect(moved > 0 && bridged < moved * 0.05, "the receiving bridge carried \(Int(bridged)) of \(Int(moved)) bytes")
        }

        // Routed between subnets through a policy: the receiving bridge carries a connection's first packets only,
        // and each host's flows count the connection as the fast path carried it.
        try await allowRedToBlue(lab, hosts: 2)
        #expect(try ping(from: a.namespace, c.ip, count: 1).status != 0, "ICMP is not allowed")
        let before = try bridgedBytes(to: portC, on: "h2")
        let moved = try iperf(from: a, to: c, seconds: 2).bytes
        let bridged = Double(try bridgedBytes(to: portC, on: "h2") - before)
        print("fast path across hosts, routed: iperf3 moved \(Int(moved)) bytes, the bridge carried \(Int(bridged))")
        #expect(moved > 0 && bridged < moved * 0.05, "the receiving bridge carried \(Int(bridged)) of \(Int(moved)) bytes")
        for host in ["h1", "h2"] {
            let counted = try await countedFlowBytes(from: a, to: c, subnet: "acme/app1/web/blue", host: host, least: UInt64(moved * 0.9),
                                                     in: lab)
            #expect(Double(counted) >= moved * 0.9, "\(host)'s flows counted \(counted) of \(Int(moved)) bytes")
        }

        // A connection the policy allowed stops when the policy goes.
        let connection = try lab.flow(from: a, to: c, port: 5201)
        for _ in 0..<5 { #expect(connection.carries("allowed")) }
        try await expectConnectionStopsWithThePolicy(connection, lab, hosts: 2)
    }
}
