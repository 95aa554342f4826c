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

    @Test func localPortsOfASubnetTalkOverTheFastPathUntilSomethingFiltersThem() async throws {
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

        // The agent restarts under 100 pings a second: none is lost, and the fast path is back after.
        let flow = Task { try ping(from: a.namespace, b.ip, count: 300, extra: ["-q", "-i", "0.01"]) }
        try await Task.sleep(for: .milliseconds(500))
        lab.stop("h1")
        try await lab.restart("h1")
        let during = try await flow.value
        #expect(during.output.contains("300 received"), "\(during.output.split(separator: "\n").suffix(2))")
        try await lab.settle(hosts: 1)
        let again = try bridgedPings(from: a, to: b, port: port)
        #expect(again.map { $0 < 10 } == true, "after the restart the bridge carried \(String(describing: again)) of 50")
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

        // A policy in the domain sends its traffic through the router's filters: the bridge carries it all.
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
}
