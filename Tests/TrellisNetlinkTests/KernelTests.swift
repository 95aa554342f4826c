import Foundation
import Glibc
import Testing
import TrellisModel
import TrellisNetlink
import TrellisNetlinkWire
import TrellisTestSupport

let isRoot = getuid() == 0

/// Namespaces a test makes; all of them are removed when it ends, whether it passed or not.
final class Namespaces: @unchecked Sendable {
    let prefix = "trt\(UInt32.random(in: 0..<0xffff_ff))"
    private(set) var names: [String] = []

    func make(_ suffix: String) throws -> NetworkNamespace {
        let name = "\(prefix)-\(suffix)"
        names.append(name)
        let namespace = try NetworkNamespace.create(named: name)
        let netlink = try RouteNetlink(in: namespace)
        try netlink.setLink(index: try netlink.requireLink(named: "lo").index, up: true)
        return namespace
    }

    deinit { for name in names { try? NetworkNamespace.delete(named: name) } }
}

/// Sends one UDP datagram from `from` to `address:port` in `to`, and returns what arrived there.
func udpExchange(from: NetworkNamespace, to: NetworkNamespace, address: IPv4Address, port: UInt16, text: String) throws -> String? {
    func socketAddress(_ address: IPv4Address, _ port: UInt16) -> sockaddr_in {
        var socketAddress = sockaddr_in()
        socketAddress.sin_family = sa_family_t(AF_INET)
        socketAddress.sin_port = port.bigEndian
        socketAddress.sin_addr.s_addr = address.value.bigEndian
        return socketAddress
    }
    let receiver: Int32 = try to.run {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        var bound = socketAddress(address, port)
        _ = withUnsafePointer(to: &bound) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0,
            socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        var timeout = timeval(tv_sec: 0, tv_usec: 200_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        return fd
    }
    defer { close(receiver) }
    let sender: Int32 = try from.run { socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0) }
    defer { close(sender) }
    var target = socketAddress(address, port)
    var buffer = [UInt8](repeating: 0, count: 2048)
    for _ in 0..<15 {
        _ = Array(text.utf8).withUnsafeBytes { bytes in
            withUnsafePointer(to: &target) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(sender, bytes.baseAddress, bytes.count, 0, $0,
                                                                              socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
        }
        let count = buffer.withUnsafeMutableBytes { recv(receiver, $0.baseAddress, $0.count, 0) }
        if count > 0 { return String(decoding: buffer[0..<count], as: UTF8.self) }
    }
    return nil
}

@Suite(.enabled(if: isRoot, "needs root for network namespaces"), .serialized)
struct KernelTests {
    @Test func createsReadsAndDeletesLinksAddressesAndRoutes() throws {
        let namespaces = Namespaces()
        let netlink = try RouteNetlink(in: try namespaces.make("a"))
        #expect(try netlink.link(named: "br0") == nil)
        try netlink.createLink(LinkSpec(name: "br0", kind: .bridge, mtu: 1450, mac: MACAddress("02:7f:00:00:00:64"), up: true))
        let bridge = try netlink.requireLink(named: "br0")
        #expect(bridge.kind == "bridge" && bridge.mtu == 1450 && bridge.isUp && bridge.mac?.description == "02:7f:00:00:00:64")
        let duplicate = #expect(throws: NetlinkError.self) {
            try netlink.createLink(LinkSpec(name: "br0", kind: .bridge))
        }
        #expect(duplicate?.code == EEXIST && duplicate?.description.contains("RTM_NEWLINK br0: File exists") == true)

        try netlink.addAddress(index: bridge.index, IPv4Address("192.168.60.1")!, prefixLength: 24)
        try netlink.addAddress(index: bridge.index, IPv4Address("192.168.60.1")!, prefixLength: 24)  // idempotent
        #expect(try netlink.addresses().contains { $0.index == bridge.index && $0.address.description == "192.168.60.1"
            && $0.prefixLength == 24 })
        try netlink.replaceRoute(to: try IPv4Network.parse("10.60.0.0/16"), via: IPv4Address("192.168.60.254")!)
        #expect(try netlink.routes().contains { $0.destination?.description == "10.60.0.0/16"
            && $0.gateway?.description == "192.168.60.254" })
        try netlink.replaceNeighbour(index: bridge.index, IPv4Address("192.168.60.9")!, mac: MACAddress("02:7e:00:00:00:09")!)
        #expect(try netlink.neighbours().contains { $0.address?.description == "192.168.60.9" && $0.isPermanent
            && $0.mac?.description == "02:7e:00:00:00:09" })
        try netlink.deleteNeighbour(index: bridge.index, IPv4Address("192.168.60.9")!)
        let neighbours = try netlink.neighbours()
        #expect(!neighbours.contains { $0.address?.description == "192.168.60.9" })

        try netlink.deleteLink(index: bridge.index)
        try netlink.deleteLink(index: bridge.index)  // already gone: not an error
        #expect(try netlink.link(named: "br0") == nil)
    }

    @Test func createsAVethPeerDirectlyInsideAnotherNamespace() throws {
        let namespaces = Namespaces()
        let host = try namespaces.make("host")
        let container = try namespaces.make("ctr")
        let hostNetlink = try RouteNetlink(in: host)
        try hostNetlink.createLink(LinkSpec(name: "trv1", kind: .veth(peerName: "eth0", peerMAC: MACAddress("02:7e:00:00:00:01"),
                                                                       peerNamespace: container.fd), mtu: 1450, up: true))
        #expect(try hostNetlink.link(named: "eth0") == nil, "the peer never appears in the host namespace")
        let peer = try RouteNetlink(in: container).requireLink(named: "eth0")
        #expect(peer.mac?.description == "02:7e:00:00:00:01" && peer.mtu == 1450 && peer.kind == "veth")
        // Independent check with iproute2.
        let shown = try runProgram(["/usr/sbin/ip", "-n", namespaces.names[1], "-o", "link", "show", "eth0"]).output
        #expect(shown.contains("02:7e:00:00:00:01") && shown.contains("mtu 1450"))
    }

    @Test func carriesADatagramBetweenContainersOnTwoHostsOverVXLAN() throws {
        let namespaces = Namespaces()
        let h1 = try namespaces.make("h1"), h2 = try namespaces.make("h2")
        let c1 = try namespaces.make("c1"), c2 = try namespaces.make("c2")
        let underlay = [IPv4Address("10.77.0.1")!, IPv4Address("10.77.0.2")!]
        let overlay = [IPv4Address("192.168.50.2")!, IPv4Address("192.168.50.3")!]
        let macs = [MACAddress("02:7e:00:00:50:02")!, MACAddress("02:7e:00:00:50:03")!]
        let hosts = [try RouteNetlink(in: h1), try RouteNetlink(in: h2)]
        try hosts[0].createLink(LinkSpec(name: "u0", kind: .veth(peerName: "u0", peerMAC: nil, peerNamespace: h2.fd), up: true))
        for (index, (host, container)) in zip(hosts, [c1, c2]).enumerated() {
            let uplink = try host.requireLink(named: "u0")
            try host.setLink(index: uplink.index, up: true)
            try host.addAddress(index: uplink.index, underlay[index], prefixLength: 24)
            try host.createLink(LinkSpec(name: "br100", kind: .bridge, mtu: 1450, up: true))
            let bridge = try host.requireLink(named: "br100")
            try host.createLink(LinkSpec(name: "vx100", kind: .vxlan(vni: 100, port: 4789, local: underlay[index],
                                                                     underlayIndex: uplink.index),
                                         mtu: 1450, master: bridge.index, up: true))
            let vxlan = try host.requireLink(named: "vx100")
            try host.setBridgePort(index: vxlan.index, learning: false, neighbourSuppress: false)
            try host.createLink(LinkSpec(name: "p1", kind: .veth(peerName: "eth0", peerMAC: macs[index], peerNamespace: container.fd),
                                         mtu: 1450, master: bridge.index, up: true))
            let inside = try RouteNetlink(in: container)
            let eth0 = try inside.requireLink(named: "eth0")
            try inside.setLink(index: eth0.index, up: true)
            try inside.addAddress(index: eth0.index, overlay[index], prefixLength: 24)
            let other = 1 - index
            try host.replaceFDB(index: vxlan.index, mac: macs[other], vtep: underlay[other])
            try host.replaceFDB(index: vxlan.index, mac: MACAddress(0)!, vtep: underlay[other])
        }
        let vxlan = try hosts[0].requireLink(named: "vx100")
        let bridge = try hosts[0].requireLink(named: "br100")
        #expect(vxlan.kind == "vxlan" && vxlan.vni == 100 && vxlan.master == bridge.index)
        let fdb = try hosts[0].neighbours(family: NL.AF_BRIDGE).filter { $0.index == vxlan.index && $0.address != nil }
        #expect(Set(fdb.compactMap(\.mac?.description)) == ["02:7e:00:00:50:03", "00:00:00:00:00:00"])
        #expect(fdb.allSatisfy { $0.address == underlay[1] })
        let details = try runProgram(["/usr/sbin/ip", "-n", namespaces.names[0], "-d", "link", "show", "vx100"]).output
        #expect(details.contains("vxlan id 100") && details.contains("nolearning") && details.contains("dstport 4789"))

        #expect(try udpExchange(from: c1, to: c2, address: overlay[1], port: 7777, text: "across the overlay") == "across the overlay")
        #expect(try udpExchange(from: c2, to: c1, address: overlay[0], port: 7778, text: "and back") == "and back")

        // Without its FDB entries, h1 can no longer reach c2.
        try hosts[0].deleteFDB(index: vxlan.index, mac: macs[1], vtep: underlay[1])
        try hosts[0].deleteFDB(index: vxlan.index, mac: MACAddress(0)!, vtep: underlay[1])
        try RouteNetlink(in: c1).deleteNeighbour(index: try RouteNetlink(in: c1).requireLink(named: "eth0").index, overlay[1])
        #expect(try udpExchange(from: c1, to: c2, address: overlay[1], port: 7779, text: "lost") == nil)
    }

    @Test func namespacesAreCreatedAndRemovedLikeIPNetns() throws {
        let name = "trt\(UInt32.random(in: 0..<0xffff_ff))-solo"
        defer { try? NetworkNamespace.delete(named: name) }
        _ = try NetworkNamespace.create(named: name)
        #expect(try runProgram(["/usr/sbin/ip", "netns", "list"]).output.contains(name))
        try NetworkNamespace.delete(named: name)
        try NetworkNamespace.delete(named: name)
        let listed = try runProgram(["/usr/sbin/ip", "netns", "list"]).output
        #expect(!listed.contains(name))
    }

    /// A namespace's conntrack entries: none in a quiet one (counted, not dumped), and a UDP exchange once the
    /// namespace tracks connections.
    @Test func conntrackEntriesAreCountedThenListed() throws {
        let namespaces = Namespaces()
        let namespace = try namespaces.make("ct")
        #expect(try namespace.conntrackEntries().isEmpty)
        try NFTables.load("""
            table inet t {
              chain in { type filter hook input priority filter; policy accept; ct state new counter; }
            }
            """, namespacePath: namespace.path)
        #expect(try namespace.conntrackEntries().isEmpty)
        let loopback = IPv4Address("127.0.0.1")!
        #expect(try udpExchange(from: namespace, to: namespace, address: loopback, port: 9999, text: "tracked") == "tracked")
        let entries = try namespace.conntrackEntries()
        #expect(entries.contains { $0.original.protocol == 17 && $0.original.destinationPort == 9999 })
    }
}
