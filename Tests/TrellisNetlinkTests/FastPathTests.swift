import Foundation
import Glibc
import Testing
import TrellisFastPath
import TrellisModel
import TrellisNetlink
import TrellisNetlinkWire
import TrellisTestSupport

/// The fast-path program on a real kernel: two containers on one bridge in a router namespace, as the
/// agent makes them. Whether a frame took the fast path is read from the host ends' own counters with
/// iproute2 (the bridge's path sends through the destination's host end, the fast path never does).
@Suite(.enabled(if: isRoot && FastPathProgram.isSupported(), "needs root and a kernel that loads the fast path"))
struct FastPathTests {
    struct Lab {
        let namespaces = Namespaces()
        let router: NetworkNamespace
        /// The router namespace's rtnetlink, through which programs are hooked to ports.
        let netlink: RouteNetlink
        let containers: [NetworkNamespace]
        let ports: [FastPort]

        /// The router's MAC on each subnet, by VNI.
        static let gateways: [UInt32: MACAddress] = [100: MACAddress("02:7e:00:00:01:00")!, 101: MACAddress("02:7e:00:00:01:01")!]

        /// Both containers in subnet 10.9.0.0/24 (VNI 100), or with `routed` the second in 10.9.1.0/24 (VNI 101),
        /// the router between them at .254 of each.
        init(routed: Bool = false) throws {
            router = try namespaces.make("router")
            try router.setSysctl("net.ipv4.ip_forward", "1")
            // IPv6's own chatter (router solicitations, MLD reports) would cross the bridge and blur its counters.
            try Self.withoutIPv6(router)
            netlink = try RouteNetlink(in: router)
            var containers: [NetworkNamespace] = [], ports: [FastPort] = []
            for number in 1...2 {
                let segment: UInt32 = routed && number == 2 ? 101 : 100
                let subnet = segment - 100, bridgeName = "trb\(segment)"
                if try netlink.link(named: bridgeName) == nil {
                    try netlink.createLink(LinkSpec(name: bridgeName, kind: .bridge, up: true))
                    let made = try netlink.requireLink(named: bridgeName).index
                    try netlink.setLink(index: made, up: true, mac: Self.gateways[segment])
                    try netlink.addAddress(index: made, IPv4Address("10.9.\(subnet).254")!, prefixLength: 24)
                }
                let bridge = try netlink.requireLink(named: bridgeName).index
                let container = try namespaces.make("c\(number)")
                try Self.withoutIPv6(container)
                let mac = MACAddress("02:7e:00:00:00:0\(number)")!, ip = IPv4Address("10.9.\(subnet).\(number)")!
                let veth = LinkKind.veth(peerName: "eth0", peerMAC: mac, peerNamespace: container.fd)
                try netlink.createLink(LinkSpec(name: "trv\(number)", kind: veth, up: true))
                let port = try netlink.requireLink(named: "trv\(number)").index
                try netlink.setLink(index: port, up: true, master: bridge)
                let inside = try RouteNetlink(in: container)
                let eth0 = try inside.requireLink(named: "eth0").index
                try inside.setLink(index: eth0, up: true)
                try inside.addAddress(index: eth0, ip, prefixLength: 24)
                try inside.replaceRoute(to: nil, via: IPv4Address("10.9.\(subnet).254")!)
                containers.append(container)
                ports.append(FastPort(ifindex: port, ip: ip, mac: mac, segment: segment))
            }
            self.containers = containers
            self.ports = ports
        }

        static func withoutIPv6(_ namespace: NetworkNamespace) throws {
            for scope in ["all", "default"] { try namespace.setSysctl("net.ipv6.conf.\(scope).disable_ipv6", "1") }
        }

        /// Packets the bridge has sent to container 2 through its host end (`ip -s link`).
        func bridgedToSecond() throws -> Int { try sentToSecond().packets }

        /// Bytes and packets the bridge has sent to container 2 through its host end.
        func sentToSecond() throws -> (bytes: Int, packets: Int) {
            try #require(try sentCounters(namespace: namespaces.names[0], link: "trv2"), "trv2's counters")
        }

        /// Megabytes the bridge carried to container 2 while `work` ran.
        func bridgedMegabytes(during work: () throws -> Bool) throws -> (worked: Bool, megabytes: Int) {
            let before = try sentToSecond().bytes
            let worked = try work()
            return (worked, (try sentToSecond().bytes - before) / 1_000_000)
        }

        /// Pings container 2 twenty times from container 1, from `source` if given; true when all came back.
        func ping(from source: String? = nil) throws -> Bool {
            var command = ["/usr/bin/nsenter", "--net=\(containers[0].path)", "/usr/bin/ping", "-q", "-c", "20", "-i", "0.01", "-W", "1"]
            if let source { command += ["-I", source] }
            return try runProgram(command + [ports[1].ip.description]).status == 0
        }

        /// Sends 8 MB with iperf3 from container 1 to container 2 over TCP (or UDP) port `port`; true when all arrived.
        func send(port: Int, udp: Bool = false) throws -> Bool {
            try iperf(port: port, ["-n", "8M"] + (udp ? ["-u", "-b", "200M"] : [])).status == 0
        }

        /// iperf3 from container 1 (the client) to a server in container 2 on `port`, with `arguments`, for at most 20 s.
        func iperf(port: Int, _ arguments: [String]) throws -> (status: Int32, output: String) {
            let server = Process()
            server.executableURL = URL(fileURLWithPath: "/usr/bin/nsenter")
            server.arguments = ["--net=\(containers[1].path)", "/usr/bin/iperf3", "-s", "-1", "-p", String(port)]
            server.standardOutput = FileHandle.nullDevice
            server.standardError = FileHandle.nullDevice
            try server.run()
            defer { kill(server.processIdentifier, SIGKILL); server.waitUntilExit() }
            usleep(300_000)
            let client = ["/usr/bin/nsenter", "--net=\(containers[0].path)", "/usr/bin/timeout", "20", "/usr/bin/iperf3", "-c",
                          ports[1].ip.description, "-p", String(port), "--connect-timeout", "2000"]
            return try runProgram(client + arguments)
        }

        /// The router's forward hook as the agent's ruleset has it, with generation `mark`: TCP to port 5201,
        /// and TCP and UDP to 5301 (iperf3's control connection and data), from container 1 allowed, anything else dropped.
        func filter(mark: UInt32) throws {
            try NFTables.load("""
                table inet trellis {}
                delete table inet trellis
                table inet trellis {
                  chain forward {
                    type filter hook forward priority filter; policy drop;
                    ct state established,related ct mark \(mark) accept
                    ct direction reply ct state established,related accept
                    ip saddr \(ports[0].ip) tcp dport { 5201, 5301 } ct mark set \(mark) accept
                    ip saddr \(ports[0].ip) udp dport 5301 ct mark set \(mark) accept
                  }
                }

                """, namespacePath: router.path)
        }
    }

    @Test func framesBetweenFastPortsSkipTheBridgeAndFallBackWhenAPortLeaves() throws {
        let lab = try Lab()
        let program = try FastPathProgram()
        try program.admit(FastPathAdmission(generation: 1, filtersBridgedTraffic: false))
        #expect(try lab.ping(), "the bridge path works before the program is attached")
        var before = try lab.bridgedToSecond()
        #expect(try lab.ping())
        #expect(try lab.bridgedToSecond() - before >= 20, "without the fast path every echo request crosses the bridge")

        for port in lab.ports { try program.add(port, through: lab.netlink) }
        before = try lab.bridgedToSecond()
        #expect(try lab.ping())
        #expect(try lab.bridgedToSecond() - before < 5, "echo requests went around the bridge")
        let delivered = program.deliveries()
        #expect(delivered[lab.ports[1].ifindex].map { $0.packets >= 20 } == true)
        #expect(delivered[lab.ports[0].ifindex].map { $0.packets >= 20 } == true, "and the replies too")

        // Adding a port twice changes nothing; removing one sends its traffic over the bridge again.
        try program.add(lab.ports[1], through: lab.netlink)
        program.remove(lab.ports[1])
        #expect(program.hookedLinks().contains(lab.ports[1].ifindex), "its filter stays, inert")
        before = try lab.bridgedToSecond()
        #expect(try lab.ping())
        #expect(try lab.bridgedToSecond() - before >= 20)
        #expect(program.deliveries()[lab.ports[1].ifindex] != nil, "what it delivered is kept for the port's counters")
        program.forgetDeliveries(keeping: [lab.ports[0].ifindex])
        #expect(program.deliveries()[lab.ports[1].ifindex] == nil && program.deliveries()[lab.ports[0].ifindex] != nil)
    }

    /// The hooks, not the program's object, keep it running: ports stay on the fast path when the process that
    /// loaded it lets go (an agent that exits), and a new program takes each port over without a gap. A port
    /// that had a rate limit's ingress redirect loses it to the hook.
    @Test func portsStayOnTheFastPathWhenItsLoaderGoesUntilANewProgramTakesThemOver() throws {
        let lab = try Lab()
        try lab.netlink.redirectIngress(index: lab.ports[0].ifindex, to: lab.ports[1].ifindex)
        var first: FastPathProgram? = try FastPathProgram()
        try first?.admit(FastPathAdmission(generation: 1, filtersBridgedTraffic: false))
        for port in lab.ports { try first?.add(port, through: lab.netlink) }
        first = nil
        var before = try lab.bridgedToSecond()
        #expect(try lab.ping())
        #expect(try lab.bridgedToSecond() - before < 5, "the program still runs with its maps after its loader let go")

        let second = try FastPathProgram()
        try second.admit(FastPathAdmission(generation: 1, filtersBridgedTraffic: false))
        for port in lab.ports { try second.add(port, through: lab.netlink) }
        before = try lab.bridgedToSecond()
        #expect(try lab.ping())
        #expect(try lab.bridgedToSecond() - before < 5)
        #expect(second.deliveries()[lab.ports[1].ifindex].map { $0.packets >= 20 } == true, "the new program carries them now")
        let ingress = try lab.netlink.qdiscs().filter(\.isIngress).map(\.kind)
        #expect(ingress == ["clsact", "clsact"], "one hook per port, replaced in place, and no redirect left")
    }

    /// An agent that restarts takes over the program its predecessor left, found through the ports' filters (as
    /// iproute2 lists them), with its maps as they are: the same filters go on running it, what it delivered
    /// keeps counting, and the successor's record (ports, gateways, remote endpoints) is read back from the maps.
    @Test func aSuccessorTakesOverItsPredecessorsProgramWithItsMapsAndChangesNoFilter() throws {
        let lab = try Lab()
        let ports = lab.ports.map { port in
            var port = port
            port.gateway = Lab.gateways[port.segment]
            return port
        }
        let remote = FastRemote(ip: IPv4Address("10.9.0.99")!, mac: MACAddress("02:7e:00:00:00:99")!, segment: 100)
        var first: FastPathProgram? = try FastPathProgram()
        try first?.admit(FastPathAdmission(generation: 1, filtersBridgedTraffic: false))
        for port in ports { try first?.add(port, through: lab.netlink) }
        _ = first?.addRemotes([remote])
        #expect(try lab.ping())
        first = nil

        let filters = try ports.map { try lab.netlink.ingressBPFFilters(index: $0.ifindex) }
        let shown = try ports.map { port in try ingressProgramIDs(namespacePath: lab.router.path, link: "trv\(port.ip.value & 0xff)") }
        #expect(filters.map { $0.map(\.programID) } == shown, "the filters as iproute2 shows them")
        #expect(filters.allSatisfy { $0.count == 1 && $0[0].name == FastPathProgram.filterName && $0[0].programTag.count == 8 })
        let id = try #require(filters.first?.first?.programID)
        #expect(filters.allSatisfy { $0.first?.programID == id }, "one program on both ports")

        #expect(throws: FastPathError.self) { try FastPathProgram(adopting: id &+ 100_000, hookedTo: []) }
        let links = Set(ports.map(\.ifindex))
        let second = try FastPathProgram(adopting: id, hookedTo: links)
        #expect(Set(second.ports()) == Set(ports))
        #expect(second.hookedLinks() == links)
        #expect(second.remotes() == [remote])
        let carried = try #require(second.deliveries()[ports[1].ifindex]?.packets)
        #expect(carried >= 20, "what the predecessor delivered is still counted")

        var before = try lab.bridgedToSecond()
        #expect(try lab.ping())
        #expect(try lab.bridgedToSecond() - before < 5, "still on the fast path")
        #expect(try ports.map { try lab.netlink.ingressBPFFilters(index: $0.ifindex).map(\.programID) } == [[id], [id]])
        #expect(second.deliveries()[ports[1].ifindex].map { $0.packets >= carried + 20 } == true)

        // What the successor writes, the program in the filters reads.
        second.remove(ports[1])
        before = try lab.bridgedToSecond()
        #expect(try lab.ping())
        #expect(try lab.bridgedToSecond() - before >= 20, "a port the successor took off takes the bridge path")
    }

    /// Conntrack refreshes a connection's entry only from the packets it sees: the fast path lets one of each
    /// direction through the router every 2 s, so a UDP stream whose server alone talks (the client spoke first,
    /// as the ruleset requires) outlives its entry's timeout, here 4 s instead of 30.
    @Test func aConnectionOnTheFastPathOutlivesItsConntrackTimeout() throws {
        let lab = try Lab(routed: true)
        for key in ["nf_conntrack_udp_timeout", "nf_conntrack_udp_timeout_stream"] {
            try lab.router.setSysctl("net.netfilter.\(key)", "4")
        }
        let program = try FastPathProgram()
        for (segment, mac) in Lab.gateways { try program.setGateway(segment: segment, mac: mac) }
        for port in lab.ports { try program.add(port, through: lab.netlink) }
        try lab.filter(mark: 7)
        try program.admit(FastPathAdmission(generation: 7, filtersBridgedTraffic: true))

        // Container 1 counts the datagrams that reach it, against the number iperf3's server says it sent.
        try NFTables.load("""
            table ip seen {
              counter stream {}
              chain input {
                type filter hook input priority filter; policy accept;
                udp sport 5301 counter name stream
              }
            }

            """, namespacePath: lab.containers[0].path)
        let carried = try lab.iperf(port: 5301, ["-u", "-R", "-b", "40M", "-t", "10", "-J"])
        let json = try JSONSerialization.jsonObject(with: Data(carried.output.utf8)) as? [String: Any]
        let sum = (json?["end"] as? [String: Any])?["sum"] as? [String: Any]
        let sent = try #require(sum?["packets"] as? Double, "iperf3 said: \(carried.output.prefix(400))")
        let seen = try #require(try NFTables.table("ip", "seen", namespacePath: lab.containers[0].path)?.counters["stream"])
        #expect(sent > 20_000 && Double(seen.packets) >= sent * 0.98, "\(seen.packets) of the server's \(Int(sent)) datagrams arrived")
        let delivered = program.flowDeliveries().filter { $0.key.source == lab.ports[1].ip && $0.key.protocolNumber == 17 }
        #expect(delivered.values.map(\.bytes).reduce(0, +) > 40_000_000, "the fast path carried the stream")
    }

    @Test func aForgedSourceOrAnotherSubnetTakesTheBridgePath() throws {
        let lab = try Lab()
        let program = try FastPathProgram()
        try program.admit(FastPathAdmission(generation: 1, filtersBridgedTraffic: false))
        var second = lab.ports[1]
        second.segment = 101
        for port in [lab.ports[0], second] { try program.add(port, through: lab.netlink) }
        var before = try lab.bridgedToSecond()
        #expect(try lab.ping())
        #expect(try lab.bridgedToSecond() - before >= 20, "ports of two subnets never meet on the fast path")

        for port in lab.ports { try program.add(port, through: lab.netlink) }
        let inside = try RouteNetlink(in: lab.containers[0])
        try inside.addAddress(index: try inside.requireLink(named: "eth0").index, IPv4Address("10.9.0.9")!, prefixLength: 24)
        before = try lab.bridgedToSecond()
        #expect(try lab.ping(from: "10.9.0.9"))
        #expect(try lab.bridgedToSecond() - before >= 20, "a source address the port was not given is left to its guard")
    }

    /// Routed between subnets, only connections the router's ruleset accepted under the generation the program
    /// was given skip the router: MACs rewritten and one hop less, as the router would send them.
    @Test func routedConnectionsTakeTheFastPathOnlyOnceTheRulesetAcceptedThem() throws {
        let lab = try Lab(routed: true)
        let program = try FastPathProgram()
        for (segment, mac) in Lab.gateways { try program.setGateway(segment: segment, mac: mac) }
        for port in lab.ports { try program.add(port, through: lab.netlink) }
        try lab.filter(mark: 7)

        // Closed (the state a program starts in): everything is routed and filtered by the router.
        var carried = try lab.bridgedMegabytes { try lab.send(port: 5201) }
        #expect(carried.worked, "an allowed connection is routed")
        #expect(carried.megabytes >= 4, "closed, the router carried \(carried.megabytes) of 8 MB")
        #expect(!(try lab.ping()), "ICMP is not allowed by the ruleset")

        try program.admit(FastPathAdmission(generation: 7, filtersBridgedTraffic: true))
        carried = try lab.bridgedMegabytes { try lab.send(port: 5201) }
        #expect(carried.worked)
        #expect(carried.megabytes < 1, "with the ruleset's generation admitted the router carried \(carried.megabytes) of 8 MB")
        #expect(!(try lab.send(port: 5202)), "a connection the ruleset drops never gets through")
        #expect(!(try lab.ping()), "and neither does ICMP")
        // Container 2 counts the UDP datagrams it gets by their TTL: one hop less than sent, as the router does.
        try NFTables.load("""
            table ip seen {
              counter routed {}
              counter unrouted {}
              chain input {
                type filter hook input priority filter; policy accept;
                udp dport 5301 ip ttl 63 counter name routed
                udp dport 5301 ip ttl != 63 counter name unrouted
              }
            }

            """, namespacePath: lab.containers[1].path)
        carried = try lab.bridgedMegabytes { try lab.send(port: 5301, udp: true) }
        #expect(carried.worked, "UDP the ruleset allows")
        #expect(carried.megabytes < 1, "UDP: the router carried \(carried.megabytes) of 8 MB")
        let seen = try #require(try NFTables.table("ip", "seen", namespacePath: lab.containers[1].path))
        #expect((seen.counters["routed"]?.packets ?? 0) > 1000 && seen.counters["unrouted"]?.packets == 0,
                "datagrams by TTL: \(seen.counters)")

        // What the fast path carried is counted per connection and direction, from the IP header on.
        let flows = program.flowDeliveries()
        let sent = flows.filter { $0.key.source == lab.ports[0].ip && $0.key.protocolNumber == 6 }.values.map(\.bytes).reduce(0, +)
        #expect(sent >= 4_000_000, "the fast path counted \(sent) bytes of TCP sent")
        #expect(flows.keys.contains { $0.source == lab.ports[1].ip && $0.protocolNumber == 6 }, "and the replies")

        // A new ruleset (another generation) sends connections accepted by the old one back through the router.
        try lab.filter(mark: 8)
        carried = try lab.bridgedMegabytes { try lab.send(port: 5201) }
        #expect(carried.worked)
        #expect(carried.megabytes >= 4, "of a connection of another generation the router carried \(carried.megabytes) of 8 MB")
        program.forgetFlows(program.flowDeliveries().keys)
        #expect(program.flowDeliveries().isEmpty)
    }
}
