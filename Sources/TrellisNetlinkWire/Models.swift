import TrellisModel

/// A link as the kernel reports it.
public struct Link: Equatable, Sendable {
    public var index: Int32
    public var name: String
    public var flags: UInt32
    public var mtu: UInt32?
    public var mac: MACAddress?
    public var master: Int32?
    /// `bridge`, `veth`, `vxlan`, … (IFLA_INFO_KIND); nil for physical links and loopback.
    public var kind: String?
    /// The VNI of a VXLAN link.
    public var vni: UInt32?
    /// For a bridge: whether bridged IPv4 frames pass the IP netfilter hooks.
    public var bridgeCallsIPHooks: Bool?
    /// Packets and bytes received and sent by the link (IFLA_STATS64).
    public var statistics: LinkStatistics?

    public var isUp: Bool { flags & NL.IFF_UP != 0 }

    /// A link as a kernel would report it, for plans made and tested without one.
    public init(index: Int32, name: String, up: Bool, mtu: UInt32? = nil, mac: MACAddress? = nil, master: Int32? = nil,
                kind: String? = nil, vni: UInt32? = nil, bridgeCallsIPHooks: Bool? = nil) {
        self.index = index
        self.name = name
        flags = up ? NL.IFF_UP : 0
        self.mtu = mtu
        self.mac = mac
        self.master = master
        self.kind = kind
        self.vni = vni
        self.bridgeCallsIPHooks = bridgeCallsIPHooks
    }

    public init(_ message: NetlinkMessage) throws {
        let (header, attributes) = try message.decode(InterfaceInfo.self)
        index = header.index
        flags = header.flags
        name = attributes[NL.IFLA_IFNAME]?.stringValue ?? ""
        mtu = attributes[NL.IFLA_MTU]?.u32Value
        mac = attributes[NL.IFLA_ADDRESS].flatMap {
            $0.payload.count == 6 ? MACAddress($0.payload.reduce(0) { $0 << 8 | UInt64($1) }) : nil
        }
        master = attributes[NL.IFLA_MASTER]?.u32Value.map { Int32(bitPattern: $0) }
        let info = attributes[NL.IFLA_LINKINFO]?.children ?? []
        kind = info[NL.IFLA_INFO_KIND]?.stringValue
        vni = kind == "vxlan" ? info[NL.IFLA_INFO_DATA]?.children[NL.IFLA_VXLAN_ID]?.u32Value : nil
        statistics = attributes[NL.IFLA_STATS64].flatMap(LinkStatistics.init)
        let callsIPHooks = info[NL.IFLA_INFO_DATA]?.children[NL.IFLA_BR_NF_CALL_IPTABLES]?.payload.first.map { $0 != 0 }
        bridgeCallsIPHooks = kind == "bridge" ? callsIPHooks : nil
    }
}

/// An IPv4 address on a link.
public struct InterfaceAddress: Equatable, Sendable {
    public var index: Int32
    public var address: IPv4Address
    public var prefixLength: Int

    public init(index: Int32, address: IPv4Address, prefixLength: Int) {
        self.index = index
        self.address = address
        self.prefixLength = prefixLength
    }

    public init?(_ message: NetlinkMessage) throws {
        let (header, attributes) = try message.decode(AddressInfo.self)
        guard header.family == NL.AF_INET, let attribute = attributes[NL.IFA_LOCAL] ?? attributes[NL.IFA_ADDRESS],
              let address = ipv4(attribute.payload) else { return nil }
        index = Int32(bitPattern: header.index)
        self.address = address
        prefixLength = Int(header.prefixLength)
    }
}

/// An IPv4 route of the main table.
public struct Route: Equatable, Sendable {
    public var destination: IPv4Network?
    public var gateway: IPv4Address?
    public var index: Int32?

    public init?(_ message: NetlinkMessage) throws {
        let (header, attributes) = try message.decode(RouteInfo.self)
        guard header.family == NL.AF_INET, header.table == NL.RT_TABLE_MAIN else { return nil }
        destination = attributes[NL.RTA_DST].flatMap { ipv4($0.payload) }
            .flatMap { IPv4Network(network: $0, prefixLength: Int(header.destinationLength)) }
        gateway = attributes[NL.RTA_GATEWAY].flatMap { ipv4($0.payload) }
        index = attributes[NL.RTA_OIF]?.u32Value.map { Int32(bitPattern: $0) }
    }
}

/// A neighbour (ARP) entry, or with family AF_BRIDGE an FDB entry.
public struct Neighbour: Equatable, Sendable {
    public var family: UInt8
    public var index: Int32
    public var state: UInt16
    public var flags: UInt8
    /// The IP (neighbour) or the remote VTEP (FDB entry on a VXLAN device).
    public var address: IPv4Address?
    public var mac: MACAddress?
    /// For FDB entries of a bridge port: the bridge (`bridge fdb … master`).
    public var master: Int32?

    public init(family: UInt8, index: Int32, state: UInt16, flags: UInt8, address: IPv4Address?, mac: MACAddress?, master: Int32? = nil) {
        self.family = family
        self.index = index
        self.state = state
        self.flags = flags
        self.address = address
        self.mac = mac
        self.master = master
    }

    public init(_ message: NetlinkMessage) throws {
        let (header, attributes) = try message.decode(NeighbourInfo.self)
        master = attributes[NL.NDA_MASTER]?.u32Value.map { Int32(bitPattern: $0) }
        family = header.family
        index = header.index
        state = header.state
        flags = header.flags
        address = attributes[NL.NDA_DST].flatMap { ipv4($0.payload) }
        mac = attributes[NL.NDA_LLADDR].flatMap { $0.payload.count == 6 ? MACAddress($0.payload.reduce(0) { $0 << 8 | UInt64($1) }) : nil }
    }

    public var isPermanent: Bool { state & NL.NUD_PERMANENT != 0 }
}

func ipv4(_ bytes: [UInt8]) -> IPv4Address? {
    bytes.count == 4 ? IPv4Address(bytes.reduce(UInt32(0)) { $0 << 8 | UInt32($1) }) : nil
}

/// The first counters of struct rtnl_link_stats64.
public struct LinkStatistics: Equatable, Sendable {
    public var receivedPackets: UInt64
    public var sentPackets: UInt64
    public var receivedBytes: UInt64
    public var sentBytes: UInt64

    init?(_ attribute: Attribute) {
        guard attribute.payload.count >= 32 else { return nil }
        var reader = ByteReader(attribute.payload[...])
        func next() -> UInt64 {
            let low = UInt64((try? reader.u32()) ?? 0)
            let high = UInt64((try? reader.u32()) ?? 0)
            return high << 32 | low
        }
        receivedPackets = next()
        sentPackets = next()
        receivedBytes = next()
        sentBytes = next()
    }
}
