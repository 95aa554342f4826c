import TrellisModel

/// How a new link is made: its kind and kind-specific data.
public enum LinkKind: Equatable, Sendable {
    case bridge
    /// A veth pair; the peer gets `peerName`, `peerMAC`, and lands in `peerNamespace` (a netns fd) when given.
    case veth(peerName: String, peerMAC: MACAddress?, peerNamespace: Int32?)
    /// A VXLAN device without learning; its UDP socket lives in the namespace the request is sent from.
    case vxlan(vni: UInt32, port: UInt16, local: IPv4Address?, underlayIndex: Int32?)
    case dummy
    /// An intermediate functional block: traffic redirected to it can be shaped on its way out.
    case ifb
}

/// Everything a new link may be given at creation, so it never has to be moved or patched afterwards.
public struct LinkSpec: Equatable, Sendable {
    public var name: String
    public var kind: LinkKind
    public var mtu: UInt32?
    public var mac: MACAddress?
    public var master: Int32?
    public var up: Bool
    /// The netns fd the link is created in; nil for the socket's own namespace.
    public var namespace: Int32?

    public init(name: String, kind: LinkKind, mtu: UInt32? = nil, mac: MACAddress? = nil, master: Int32? = nil,
                up: Bool = false, namespace: Int32? = nil) {
        self.name = name
        self.kind = kind
        self.mtu = mtu
        self.mac = mac
        self.master = master
        self.up = up
        self.namespace = namespace
    }
}

/// Builders of rtnetlink requests. Pure: they only make bytes; `RouteNetlink` sends them.
public enum RouteRequests {
    static let create = NL.NLM_F_REQUEST | NL.NLM_F_ACK | NL.NLM_F_CREATE | NL.NLM_F_EXCL
    static let replace = NL.NLM_F_REQUEST | NL.NLM_F_ACK | NL.NLM_F_CREATE | NL.NLM_F_REPLACE
    static let change = NL.NLM_F_REQUEST | NL.NLM_F_ACK
    static let dump = NL.NLM_F_REQUEST | NL.NLM_F_DUMP

    public static func newLink(_ spec: LinkSpec) -> NetlinkMessage {
        var attributes: [Attribute] = [.string(NL.IFLA_IFNAME, spec.name)]
        if let mtu = spec.mtu { attributes.append(.u32(NL.IFLA_MTU, mtu)) }
        if let mac = spec.mac { attributes.append(.mac(NL.IFLA_ADDRESS, mac)) }
        if let master = spec.master { attributes.append(.u32(NL.IFLA_MASTER, UInt32(bitPattern: master))) }
        if let namespace = spec.namespace { attributes.append(.u32(NL.IFLA_NET_NS_FD, UInt32(bitPattern: namespace))) }
        var info: [Attribute]
        switch spec.kind {
        case .bridge:
            info = [.string(NL.IFLA_INFO_KIND, "bridge")]
        case .dummy:
            info = [.string(NL.IFLA_INFO_KIND, "dummy")]
        case .ifb:
            info = [.string(NL.IFLA_INFO_KIND, "ifb")]
        case .veth(let peerName, let peerMAC, let peerNamespace):
            var peer = ByteWriter()
            InterfaceInfo().encode(into: &peer)
            var peerAttributes: [Attribute] = [.string(NL.IFLA_IFNAME, peerName)]
            if let mtu = spec.mtu { peerAttributes.append(.u32(NL.IFLA_MTU, mtu)) }
            if let peerMAC { peerAttributes.append(.mac(NL.IFLA_ADDRESS, peerMAC)) }
            if let peerNamespace { peerAttributes.append(.u32(NL.IFLA_NET_NS_FD, UInt32(bitPattern: peerNamespace))) }
            for attribute in peerAttributes { attribute.encode(into: &peer) }
            info = [.string(NL.IFLA_INFO_KIND, "veth"),
                    .nested(NL.IFLA_INFO_DATA, [Attribute(type: NL.VETH_INFO_PEER, payload: peer.bytes)])]
        case .vxlan(let vni, let port, let local, let underlay):
            var data: [Attribute] = [.u32(NL.IFLA_VXLAN_ID, vni), .u8(NL.IFLA_VXLAN_LEARNING, 0), .be16(NL.IFLA_VXLAN_PORT, port)]
            if let local { data.append(.ipv4(NL.IFLA_VXLAN_LOCAL, local)) }
            if let underlay { data.append(.u32(NL.IFLA_VXLAN_LINK, UInt32(bitPattern: underlay))) }
            info = [.string(NL.IFLA_INFO_KIND, "vxlan"), .nested(NL.IFLA_INFO_DATA, data)]
        }
        attributes.append(.nested(NL.IFLA_LINKINFO, info))
        let header = InterfaceInfo(flags: spec.up ? NL.IFF_UP : 0, change: spec.up ? NL.IFF_UP : 0)
        return NetlinkMessage(type: NL.RTM_NEWLINK, flags: create, header: header, attributes: attributes)
    }

    /// Changes an existing link; nil leaves a property as it is.
    public static func setLink(index: Int32, up: Bool? = nil, master: Int32? = nil, mtu: UInt32? = nil,
                               mac: MACAddress? = nil, namespace: Int32? = nil) -> NetlinkMessage {
        var attributes: [Attribute] = []
        if let master { attributes.append(.u32(NL.IFLA_MASTER, UInt32(bitPattern: master))) }
        if let mtu { attributes.append(.u32(NL.IFLA_MTU, mtu)) }
        if let mac { attributes.append(.mac(NL.IFLA_ADDRESS, mac)) }
        if let namespace { attributes.append(.u32(NL.IFLA_NET_NS_FD, UInt32(bitPattern: namespace))) }
        let header = InterfaceInfo(index: index, flags: up == true ? NL.IFF_UP : 0, change: up == nil ? 0 : NL.IFF_UP)
        return NetlinkMessage(type: NL.RTM_NEWLINK, flags: change, header: header, attributes: attributes)
    }

    /// Sets whether a bridge hands its bridged IPv4 frames to the IP netfilter hooks (conntrack, nftables
    /// `inet` chains); per bridge, unlike the namespace-wide `bridge-nf-call-iptables` sysctl.
    public static func setBridge(index: Int32, callIPHooks: Bool) -> NetlinkMessage {
        let info = Attribute.nested(NL.IFLA_LINKINFO, [
            .string(NL.IFLA_INFO_KIND, "bridge"), .nested(NL.IFLA_INFO_DATA, [.u8(NL.IFLA_BR_NF_CALL_IPTABLES, callIPHooks ? 1 : 0)]),
        ])
        return NetlinkMessage(type: NL.RTM_NEWLINK, flags: change, header: InterfaceInfo(index: index), attributes: [info])
    }

    /// Sets bridge-port options of a bridge's port (learning, ARP/ND suppression).
    public static func setBridgePort(index: Int32, learning: Bool, neighbourSuppress: Bool) -> NetlinkMessage {
        let protinfo = Attribute.nested(NL.IFLA_PROTINFO | NL.NLA_F_NESTED, [
            .u8(NL.IFLA_BRPORT_LEARNING, learning ? 1 : 0), .u8(NL.IFLA_BRPORT_NEIGH_SUPPRESS, neighbourSuppress ? 1 : 0),
        ])
        return NetlinkMessage(type: NL.RTM_SETLINK, flags: change, header: InterfaceInfo(family: NL.AF_BRIDGE, index: index),
                              attributes: [protinfo])
    }

    public static func deleteLink(index: Int32) -> NetlinkMessage {
        NetlinkMessage(type: NL.RTM_DELLINK, flags: change, header: InterfaceInfo(index: index))
    }

    public static func getLink(name: String) -> NetlinkMessage {
        NetlinkMessage(type: NL.RTM_GETLINK, flags: NL.NLM_F_REQUEST, header: InterfaceInfo(), attributes: [.string(NL.IFLA_IFNAME, name)])
    }

    public static func dumpLinks() -> NetlinkMessage {
        NetlinkMessage(type: NL.RTM_GETLINK, flags: dump, header: InterfaceInfo())
    }

    public static func addAddress(index: Int32, _ address: IPv4Address, prefixLength: Int) -> NetlinkMessage {
        NetlinkMessage(type: NL.RTM_NEWADDR, flags: replace,
                       header: AddressInfo(prefixLength: UInt8(prefixLength), index: UInt32(bitPattern: index)),
                       attributes: [.ipv4(NL.IFA_LOCAL, address), .ipv4(NL.IFA_ADDRESS, address)])
    }

    public static func deleteAddress(index: Int32, _ address: IPv4Address, prefixLength: Int) -> NetlinkMessage {
        NetlinkMessage(type: NL.RTM_DELADDR, flags: change,
                       header: AddressInfo(prefixLength: UInt8(prefixLength), index: UInt32(bitPattern: index)),
                       attributes: [.ipv4(NL.IFA_LOCAL, address), .ipv4(NL.IFA_ADDRESS, address)])
    }

    public static func dumpAddresses() -> NetlinkMessage {
        NetlinkMessage(type: NL.RTM_GETADDR, flags: dump, header: AddressInfo())
    }

    /// Adds or replaces a route to `destination` (nil: the default route) via `gateway` and/or out of `index`.
    public static func replaceRoute(destination: IPv4Network?, gateway: IPv4Address?, index: Int32?) -> NetlinkMessage {
        var attributes: [Attribute] = []
        if let destination { attributes.append(.ipv4(NL.RTA_DST, destination.network)) }
        if let gateway { attributes.append(.ipv4(NL.RTA_GATEWAY, gateway)) }
        if let index { attributes.append(.u32(NL.RTA_OIF, UInt32(bitPattern: index))) }
        let header = RouteInfo(destinationLength: UInt8(destination?.prefixLength ?? 0),
                               scope: gateway == nil ? NL.RT_SCOPE_LINK : NL.RT_SCOPE_UNIVERSE)
        return NetlinkMessage(type: NL.RTM_NEWROUTE, flags: replace, header: header, attributes: attributes)
    }

    public static func deleteRoute(destination: IPv4Network, index: Int32?) -> NetlinkMessage {
        var attributes: [Attribute] = [.ipv4(NL.RTA_DST, destination.network)]
        if let index { attributes.append(.u32(NL.RTA_OIF, UInt32(bitPattern: index))) }
        return NetlinkMessage(type: NL.RTM_DELROUTE, flags: change,
                              header: RouteInfo(destinationLength: UInt8(destination.prefixLength), scope: NL.RT_SCOPE_NOWHERE),
                              attributes: attributes)
    }

    public static func dumpRoutes() -> NetlinkMessage {
        NetlinkMessage(type: NL.RTM_GETROUTE, flags: dump, header: RouteInfo(protocolID: 0, type: 0))
    }

    /// A permanent neighbour entry (IP → MAC) on `index`: ARP answered without asking.
    public static func replaceNeighbour(index: Int32, _ address: IPv4Address, mac: MACAddress) -> NetlinkMessage {
        NetlinkMessage(type: NL.RTM_NEWNEIGH, flags: replace,
                       header: NeighbourInfo(index: index, state: NL.NUD_PERMANENT),
                       attributes: [.ipv4(NL.NDA_DST, address), .mac(NL.NDA_LLADDR, mac)])
    }

    public static func deleteNeighbour(index: Int32, _ address: IPv4Address) -> NetlinkMessage {
        NetlinkMessage(type: NL.RTM_DELNEIGH, flags: change, header: NeighbourInfo(index: index), attributes: [.ipv4(NL.NDA_DST, address)])
    }

    /// A static FDB entry on a VXLAN device (`bridge fdb replace MAC dev VX dst VTEP self permanent`);
    /// the all-zero MAC makes a flood entry.
    public static func replaceFDB(index: Int32, mac: MACAddress, vtep: IPv4Address) -> NetlinkMessage {
        NetlinkMessage(type: NL.RTM_NEWNEIGH, flags: NL.NLM_F_REQUEST | NL.NLM_F_ACK | NL.NLM_F_CREATE | NL.NLM_F_APPEND,
                       header: NeighbourInfo(family: NL.AF_BRIDGE, index: index, state: NL.NUD_PERMANENT | NL.NUD_NOARP,
                                             flags: NL.NTF_SELF),
                       attributes: [.mac(NL.NDA_LLADDR, mac), .ipv4(NL.NDA_DST, vtep)])
    }

    /// A static entry in the bridge's own FDB (`bridge fdb replace MAC dev PORT master static`): the bridge
    /// knows which port leads to MAC, so it needs no flooding and can answer ARP for it (neigh_suppress).
    public static func replaceBridgeFDB(index: Int32, mac: MACAddress) -> NetlinkMessage {
        NetlinkMessage(type: NL.RTM_NEWNEIGH, flags: replace,
                       header: NeighbourInfo(family: NL.AF_BRIDGE, index: index, state: NL.NUD_NOARP, flags: NL.NTF_MASTER),
                       attributes: [.mac(NL.NDA_LLADDR, mac)])
    }

    public static func deleteBridgeFDB(index: Int32, mac: MACAddress) -> NetlinkMessage {
        NetlinkMessage(type: NL.RTM_DELNEIGH, flags: change,
                       header: NeighbourInfo(family: NL.AF_BRIDGE, index: index, flags: NL.NTF_MASTER),
                       attributes: [.mac(NL.NDA_LLADDR, mac)])
    }

    public static func deleteFDB(index: Int32, mac: MACAddress, vtep: IPv4Address) -> NetlinkMessage {
        NetlinkMessage(type: NL.RTM_DELNEIGH, flags: change,
                       header: NeighbourInfo(family: NL.AF_BRIDGE, index: index, flags: NL.NTF_SELF),
                       attributes: [.mac(NL.NDA_LLADDR, mac), .ipv4(NL.NDA_DST, vtep)])
    }

    public static func dumpNeighbours(family: UInt8) -> NetlinkMessage {
        NetlinkMessage(type: NL.RTM_GETNEIGH, flags: dump, header: NeighbourInfo(family: family))
    }

    /// A proxy ARP entry (`ip neigh replace proxy ADDRESS dev LINK`): the host answers ARP for `address` on `index`.
    public static func replaceProxyNeighbour(index: Int32, _ address: IPv4Address) -> NetlinkMessage {
        NetlinkMessage(type: NL.RTM_NEWNEIGH, flags: replace, header: NeighbourInfo(index: index, flags: NL.NTF_PROXY),
                       attributes: [.ipv4(NL.NDA_DST, address)])
    }

    public static func deleteProxyNeighbour(index: Int32, _ address: IPv4Address) -> NetlinkMessage {
        NetlinkMessage(type: NL.RTM_DELNEIGH, flags: change, header: NeighbourInfo(index: index, flags: NL.NTF_PROXY),
                       attributes: [.ipv4(NL.NDA_DST, address)])
    }

    /// Every proxy ARP entry of the namespace.
    public static func dumpProxyNeighbours() -> NetlinkMessage {
        NetlinkMessage(type: NL.RTM_GETNEIGH, flags: dump, header: NeighbourInfo(flags: NL.NTF_PROXY))
    }
}

extension Attribute {
    /// An IPv4 address in network byte order.
    public static func ipv4(_ type: UInt16, _ address: IPv4Address) -> Attribute {
        Attribute(type: type, payload: [UInt8(address.value >> 24), UInt8(address.value >> 16 & 0xff),
                                        UInt8(address.value >> 8 & 0xff), UInt8(address.value & 0xff)])
    }

    public static func mac(_ type: UInt16, _ mac: MACAddress) -> Attribute { Attribute(type: type, payload: mac.bytes) }
}
