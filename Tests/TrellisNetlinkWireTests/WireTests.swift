import Testing
import TrellisModel
@testable import TrellisNetlinkWire

/// Requests byte for byte as the kernel reads them (x86-64, little-endian), worked out from
/// struct nlmsghdr, ifinfomsg, rtmsg, ndmsg and nlattr.
@Suite struct GoldenBytesTests {
    @Test func newBridge() {
        let bytes = RouteRequests.newLink(LinkSpec(name: "br0", kind: .bridge)).encode()
        #expect(bytes == [
            0x38, 0, 0, 0, 0x10, 0, 0x05, 0x06, 0, 0, 0, 0, 0, 0, 0, 0,   // nlmsghdr: 56 bytes, RTM_NEWLINK, REQUEST|ACK|EXCL|CREATE
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,               // ifinfomsg
            0x08, 0, 0x03, 0, 0x62, 0x72, 0x30, 0,                         // IFLA_IFNAME "br0"
            0x10, 0, 0x12, 0,                                              // IFLA_LINKINFO
            0x0b, 0, 0x01, 0, 0x62, 0x72, 0x69, 0x64, 0x67, 0x65, 0, 0,    //   IFLA_INFO_KIND "bridge", padded
        ])
    }

    @Test func vxlanFloodEntry() {
        let bytes = RouteRequests.replaceFDB(index: 7, mac: MACAddress("00:00:00:00:00:00")!, vtep: IPv4Address("10.99.0.2")!).encode()
        #expect(bytes == [
            0x30, 0, 0, 0, 0x1c, 0, 0x05, 0x0c, 0, 0, 0, 0, 0, 0, 0, 0,   // RTM_NEWNEIGH, REQUEST|ACK|CREATE|APPEND
            0x07, 0, 0, 0, 0x07, 0, 0, 0, 0xc0, 0, 0x02, 0,               // ndmsg: AF_BRIDGE, ifindex 7, PERMANENT|NOARP, NTF_SELF
            0x0a, 0, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0,                      // NDA_LLADDR 00:00:00:00:00:00, padded
            0x08, 0, 0x01, 0, 10, 99, 0, 2,                                // NDA_DST 10.99.0.2
        ])
    }

    @Test func defaultRoute() {
        let bytes = RouteRequests.replaceRoute(destination: nil, gateway: IPv4Address("192.168.10.1")!, index: nil).encode()
        #expect(bytes == [
            0x24, 0, 0, 0, 0x18, 0, 0x05, 0x05, 0, 0, 0, 0, 0, 0, 0, 0,   // RTM_NEWROUTE, REQUEST|ACK|REPLACE|CREATE
            2, 0, 0, 0, 0xfe, 4, 0, 1, 0, 0, 0, 0,                         // rtmsg: AF_INET /0 main static universe unicast
            0x08, 0, 0x05, 0, 192, 168, 10, 1,                             // RTA_GATEWAY
        ])
    }

    @Test func addressOnALink() {
        let bytes = RouteRequests.addAddress(index: 3, IPv4Address("192.168.10.10")!, prefixLength: 24).encode()
        #expect(bytes == [
            0x28, 0, 0, 0, 0x14, 0, 0x05, 0x05, 0, 0, 0, 0, 0, 0, 0, 0,   // RTM_NEWADDR, REQUEST|ACK|REPLACE|CREATE
            2, 24, 0, 0, 3, 0, 0, 0,                                       // ifaddrmsg: AF_INET /24 index 3
            0x08, 0, 0x02, 0, 192, 168, 10, 10,                            // IFA_LOCAL
            0x08, 0, 0x01, 0, 192, 168, 10, 10,                            // IFA_ADDRESS
        ])
    }

    @Test func bringALinkUpWithoutTouchingAnythingElse() {
        let bytes = RouteRequests.setLink(index: 5, up: true).encode()
        #expect(bytes == [
            0x20, 0, 0, 0, 0x10, 0, 0x05, 0, 0, 0, 0, 0, 0, 0, 0, 0,       // RTM_NEWLINK, REQUEST|ACK
            0, 0, 0, 0, 5, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0,               // ifinfomsg: index 5, flags IFF_UP, change IFF_UP
        ])
    }
}

@Suite struct WireRoundTripTests {
    @Test func vethPeerIsCreatedInItsNamespaceWithItsOwnAddress() throws {
        let spec = LinkSpec(name: "trv1", kind: .veth(peerName: "eth0", peerMAC: MACAddress("02:7e:00:00:00:01"), peerNamespace: 9),
                            mtu: 1450, master: 4, up: true)
        let message = try #require(try NetlinkMessage.parseAll(RouteRequests.newLink(spec).encode()).first)
        let (header, attributes) = try message.decode(InterfaceInfo.self)
        #expect(header.flags == NL.IFF_UP && header.change == NL.IFF_UP)
        #expect(attributes[NL.IFLA_IFNAME]?.stringValue == "trv1" && attributes[NL.IFLA_MTU]?.u32Value == 1450)
        #expect(attributes[NL.IFLA_MASTER]?.u32Value == 4)
        let info = try #require(attributes[NL.IFLA_LINKINFO]).children
        #expect(info[NL.IFLA_INFO_KIND]?.stringValue == "veth")
        let peer = try #require(info[NL.IFLA_INFO_DATA]?.children[NL.VETH_INFO_PEER]).payload
        let peerAttributes = try Attribute.parseAll(peer[InterfaceInfo.size...])
        #expect(peerAttributes[NL.IFLA_IFNAME]?.stringValue == "eth0")
        #expect(peerAttributes[NL.IFLA_NET_NS_FD]?.u32Value == 9)
        #expect(peerAttributes[NL.IFLA_ADDRESS]?.payload == [0x02, 0x7e, 0, 0, 0, 1])
        #expect(peerAttributes[NL.IFLA_MTU]?.u32Value == 1450)
    }

    @Test func decodesALinkMessage() throws {
        let spec = LinkSpec(name: "trx4096", kind: .vxlan(vni: 4096, port: 4789, local: IPv4Address("10.99.0.1"), underlayIndex: 2),
                            mtu: 1450, mac: MACAddress("02:7f:00:00:10:00"))
        let message = try #require(try NetlinkMessage.parseAll(RouteRequests.newLink(spec).encode()).first)
        let link = try Link(message)
        #expect(link.name == "trx4096" && link.kind == "vxlan" && link.vni == 4096 && link.mtu == 1450)
        #expect(link.mac?.description == "02:7f:00:00:10:00" && !link.isUp)
        let data = try #require(try message.decode(InterfaceInfo.self).attributes[NL.IFLA_LINKINFO]?.children[NL.IFLA_INFO_DATA]).children
        #expect(data[NL.IFLA_VXLAN_PORT]?.payload == [0x12, 0xb5], "the port is big-endian")
        #expect(data[NL.IFLA_VXLAN_LEARNING]?.payload == [0])
    }

    @Test func parsesErrorsAndAcknowledgements() throws {
        let datagram: [UInt8] = [
            0x24, 0, 0, 0, 0x02, 0, 0x00, 0x01, 5, 0, 0, 0, 0, 0, 0, 0,   // NLMSG_ERROR, seq 5, NLM_F_CAPPED
            0xef, 0xff, 0xff, 0xff,                                        // -17 (EEXIST)
            0x38, 0, 0, 0, 0x10, 0, 0x05, 0x06, 5, 0, 0, 0, 0, 0, 0, 0,   // the request's header
            0x14, 0, 0, 0, 0x02, 0, 0x00, 0x01, 6, 0, 0, 0, 0, 0, 0, 0,   // an acknowledgement (error 0), seq 6
            0, 0, 0, 0,
        ]
        let messages = try NetlinkMessage.parseAll(datagram)
        #expect(messages.map(\.sequence) == [5, 6])
        #expect(messages.map(\.errorCode) == [-17, 0])
    }

    @Test func rejectsLengthsThatDoNotFit() {
        #expect(throws: WireError.self) { try NetlinkMessage.parseAll([0xff, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]) }
        #expect(throws: WireError.self) { try Attribute.parseAll([0x02, 0, 1, 0][...]) }
    }

    @Test func masksTheNestedFlagOffAttributeTypes() throws {
        var writer = ByteWriter()
        Attribute.nested(NL.IFLA_PROTINFO | NL.NLA_F_NESTED, [.u8(NL.IFLA_BRPORT_LEARNING, 0)]).encode(into: &writer)
        let attributes = try Attribute.parseAll(writer.bytes[...])
        #expect(attributes.map(\.type) == [NL.IFLA_PROTINFO])
        #expect(attributes[0].children.map(\.type) == [NL.IFLA_BRPORT_LEARNING])
    }

    @Test func decodesNeighboursAndRoutes() throws {
        let fdb = try #require(try NetlinkMessage.parseAll(
            RouteRequests.replaceFDB(index: 7, mac: MACAddress("02:7e:00:00:00:05")!, vtep: IPv4Address("10.99.0.2")!).encode()).first)
        let neighbour = try Neighbour(fdb)
        #expect(neighbour.family == NL.AF_BRIDGE && neighbour.index == 7 && neighbour.isPermanent)
        #expect(neighbour.mac?.description == "02:7e:00:00:00:05" && neighbour.address?.description == "10.99.0.2")
        let routeMessage = try #require(try NetlinkMessage.parseAll(
            RouteRequests.replaceRoute(destination: try IPv4Network.parse("10.0.0.0/8"), gateway: nil, index: 3).encode()).first)
        let route = try #require(try Route(routeMessage))
        #expect(route.destination?.description == "10.0.0.0/8" && route.index == 3 && route.gateway == nil)
    }
}

@Suite struct ARPFrameTests {
    @Test func gratuitousRequest() {
        let frame = ARPFrame.gratuitous(mac: MACAddress("02:7e:00:00:00:01")!, ip: IPv4Address("192.168.10.2")!)
        #expect(frame == [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x7e, 0, 0, 0, 1, 0x08, 0x06,   // to all, from the endpoint, ethertype ARP
            0, 1, 0x08, 0, 6, 4, 0, 1,                                               // Ethernet, IPv4, lengths 6 and 4, request
            0x02, 0x7e, 0, 0, 0, 1, 192, 168, 10, 2,                                 // sender MAC and IP
            0, 0, 0, 0, 0, 0, 192, 168, 10, 2,                                       // target: the sender's own IP
        ])
    }
}
