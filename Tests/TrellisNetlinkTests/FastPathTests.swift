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
@Suite(.enabled(if: isRoot && FastPathProgram.isSupported(), "needs root and a kernel with tcx"))
struct FastPathTests {
    struct Lab {
        let namespaces = Namespaces()
        let router: NetworkNamespace
        let containers: [NetworkNamespace]
        let ports: [FastPort]

        init() throws {
            router = try namespaces.make("router")
            let netlink = try RouteNetlink(in: router)
            try netlink.createLink(LinkSpec(name: "trb100", kind: .bridge, up: true))
            let bridge = try netlink.requireLink(named: "trb100").index
            var containers: [NetworkNamespace] = [], ports: [FastPort] = []
            for number in 1...2 {
                let container = try namespaces.make("c\(number)")
                let mac = MACAddress("02:7e:00:00:00:0\(number)")!, ip = IPv4Address("10.9.0.\(number)")!
                let veth = LinkKind.veth(peerName: "eth0", peerMAC: mac, peerNamespace: container.fd)
                try netlink.createLink(LinkSpec(name: "trv\(number)", kind: veth, up: true))
                let port = try netlink.requireLink(named: "trv\(number)").index
                try netlink.setLink(index: port, up: true, master: bridge)
                let inside = try RouteNetlink(in: container)
                let eth0 = try inside.requireLink(named: "eth0").index
                try inside.setLink(index: eth0, up: true)
                try inside.addAddress(index: eth0, ip, prefixLength: 24)
                containers.append(container)
                ports.append(FastPort(ifindex: port, ip: ip, mac: mac, segment: 100))
            }
            self.containers = containers
            self.ports = ports
        }

        /// Packets the bridge has sent to container 2 through its host end (`ip -s link`).
        func bridgedToSecond() throws -> Int {
            try #require(try sentPackets(namespace: namespaces.names[0], link: "trv2"), "trv2's counters")
        }

        /// Pings container 2 twenty times from container 1, from `source` if given; true when all came back.
        func ping(from source: String? = nil) throws -> Bool {
            var command = ["/usr/bin/nsenter", "--net=\(containers[0].path)", "/usr/bin/ping", "-q", "-c", "20", "-i", "0.01", "-W", "1"]
            if let source { command += ["-I", source] }
            return try runProgram(command + ["10.9.0.2"]).status == 0
        }
    }

    @Test func framesBetweenFastPortsSkipTheBridgeAndFallBackWhenAPortLeaves() throws {
        let lab = try Lab()
        let program = try FastPathProgram()
        #expect(try lab.ping(), "the bridge path works before the program is attached")
        var before = try lab.bridgedToSecond()
        #expect(try lab.ping())
        #expect(try lab.bridgedToSecond() - before >= 20, "without the fast path every echo request crosses the bridge")

        for port in lab.ports { try program.add(port, in: lab.router) }
        before = try lab.bridgedToSecond()
        #expect(try lab.ping())
        #expect(try lab.bridgedToSecond() - before < 5, "echo requests went around the bridge")
        let delivered = program.deliveries()
        #expect(delivered[lab.ports[1].ifindex].map { $0.packets >= 20 } == true)
        #expect(delivered[lab.ports[0].ifindex].map { $0.packets >= 20 } == true, "and the replies too")

        // Adding a port twice changes nothing; removing one sends its traffic over the bridge again.
        try program.add(lab.ports[1], in: lab.router)
        program.remove(lab.ports[1])
        before = try lab.bridgedToSecond()
        #expect(try lab.ping())
        #expect(try lab.bridgedToSecond() - before >= 20)
        #expect(program.deliveries()[lab.ports[1].ifindex] != nil, "what it delivered is kept for the port's counters")
        program.forgetDeliveries(keeping: [lab.ports[0].ifindex])
        #expect(program.deliveries()[lab.ports[1].ifindex] == nil && program.deliveries()[lab.ports[0].ifindex] != nil)
    }

    @Test func aForgedSourceOrAnotherSubnetTakesTheBridgePath() throws {
        let lab = try Lab()
        let program = try FastPathProgram()
        var second = lab.ports[1]
        second.segment = 101
        for port in [lab.ports[0], second] { try program.add(port, in: lab.router) }
        var before = try lab.bridgedToSecond()
        #expect(try lab.ping())
        #expect(try lab.bridgedToSecond() - before >= 20, "ports of two subnets never meet on the fast path")

        for port in lab.ports { try program.add(port, in: lab.router) }
        let inside = try RouteNetlink(in: lab.containers[0])
        try inside.addAddress(index: try inside.requireLink(named: "eth0").index, IPv4Address("10.9.0.9")!, prefixLength: 24)
        before = try lab.bridgedToSecond()
        #expect(try lab.ping(from: "10.9.0.9"))
        #expect(try lab.bridgedToSecond() - before >= 20, "a source address the port was not given is left to its guard")
    }
}
