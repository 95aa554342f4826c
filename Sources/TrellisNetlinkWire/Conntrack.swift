import TrellisModel

/// struct nfgenmsg: the header of nfnetlink messages (conntrack among them).
public struct NetfilterHeader: FamilyHeader, Equatable {
    public static let size = 4
    public var family: UInt8
    public var version: UInt8
    /// Big-endian on the wire.
    public var resourceID: UInt16

    public init(family: UInt8 = NL.AF_INET, version: UInt8 = 0, resourceID: UInt16 = 0) {
        self.family = family
        self.version = version
        self.resourceID = resourceID
    }

    public func encode(into writer: inout ByteWriter) {
        writer.u8(family)
        writer.u8(version)
        writer.u16(resourceID.byteSwapped)
    }

    public init(from reader: inout ByteReader) throws {
        family = try reader.u8()
        version = try reader.u8()
        resourceID = try reader.u16().byteSwapped
    }
}

/// ctnetlink: the conntrack subsystem of nfnetlink.
public enum Conntrack {
    public static let NETLINK_NETFILTER: Int32 = 12
    static let NFNL_SUBSYS_CTNETLINK: UInt16 = 1
    static let IPCTNL_MSG_CT_NEW: UInt16 = 0
    static let IPCTNL_MSG_CT_GET: UInt16 = 1
    static let IPCTNL_MSG_CT_GET_STATS: UInt16 = 5
    static let CTA_STATS_GLOBAL_ENTRIES: UInt16 = 1
    static let CTA_TUPLE_ORIG: UInt16 = 1, CTA_TUPLE_REPLY: UInt16 = 2, CTA_STATUS: UInt16 = 3, CTA_PROTOINFO: UInt16 = 4
    static let CTA_TIMEOUT: UInt16 = 7, CTA_MARK: UInt16 = 8, CTA_COUNTERS_ORIG: UInt16 = 9, CTA_COUNTERS_REPLY: UInt16 = 10
    static let CTA_TUPLE_IP: UInt16 = 1, CTA_TUPLE_PROTO: UInt16 = 2
    static let CTA_IP_V4_SRC: UInt16 = 1, CTA_IP_V4_DST: UInt16 = 2
    static let CTA_PROTO_NUM: UInt16 = 1, CTA_PROTO_SRC_PORT: UInt16 = 2, CTA_PROTO_DST_PORT: UInt16 = 3
    static let CTA_PROTOINFO_TCP: UInt16 = 1, CTA_PROTOINFO_TCP_STATE: UInt16 = 1
    static let CTA_COUNTERS_PACKETS: UInt16 = 1, CTA_COUNTERS_BYTES: UInt16 = 2

    /// Message type of a conntrack entry (in dumps and events).
    public static let newEntry = NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_NEW

    /// A request for every IPv4 conntrack entry of the namespace.
    public static func dumpIPv4() -> NetlinkMessage {
        NetlinkMessage(type: NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_GET, flags: NL.NLM_F_REQUEST | NL.NLM_F_DUMP,
                       header: NetfilterHeader(family: NL.AF_INET))
    }

    /// A request for the number of conntrack entries of the namespace: one lookup, where a dump walks
    /// the host's whole conntrack table (every namespace's) to find the namespace's entries.
    public static func countRequest() -> NetlinkMessage {
        NetlinkMessage(type: NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_GET_STATS, flags: NL.NLM_F_REQUEST | NL.NLM_F_ACK,
                       header: NetfilterHeader(family: NL.AF_UNSPEC))
    }

    /// The number of entries in the answer to `countRequest()`.
    public static func count(_ reply: NetlinkMessage) throws -> UInt32? {
        let attributes = try reply.decode(NetfilterHeader.self).attributes
        return attributes[CTA_STATS_GLOBAL_ENTRIES]?.u32Value.map { UInt32(bigEndian: $0) }
    }

    /// The kernel's names of TCP conntrack states, by number (enum tcp_conntrack).
    static let tcpStates = ["NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT", "LAST_ACK", "TIME_WAIT", "CLOSE",
                            "SYN_SENT2"]
}

/// One direction of a tracked connection.
public struct ConntrackTuple: Equatable, Sendable {
    public var source: IPv4Address
    public var destination: IPv4Address
    public var `protocol`: UInt8
    public var sourcePort: UInt16?
    public var destinationPort: UInt16?
}

/// A conntrack entry as ctnetlink reports it.
public struct ConntrackEntry: Equatable, Sendable {
    public var original: ConntrackTuple
    public var reply: ConntrackTuple
    /// The TCP state (`ESTABLISHED`, …), nil for other protocols.
    public var tcpState: String?
    public var mark: UInt32
    public var timeout: UInt32
    /// Packets and bytes in the original and reply directions (zero unless nf_conntrack_acct is on).
    public var originalPackets: UInt64 = 0, originalBytes: UInt64 = 0, replyPackets: UInt64 = 0, replyBytes: UInt64 = 0

    public init(_ message: NetlinkMessage) throws {
        let (_, attributes) = try message.decode(NetfilterHeader.self)
        guard let original = attributes[Conntrack.CTA_TUPLE_ORIG].flatMap(Self.tuple),
              let reply = attributes[Conntrack.CTA_TUPLE_REPLY].flatMap(Self.tuple) else { throw WireError.truncated }
        self.original = original
        self.reply = reply
        mark = attributes[Conntrack.CTA_MARK].flatMap(\.bigEndianU32) ?? 0
        timeout = attributes[Conntrack.CTA_TIMEOUT].flatMap(\.bigEndianU32) ?? 0
        let tcp = attributes[Conntrack.CTA_PROTOINFO]?.children[Conntrack.CTA_PROTOINFO_TCP]
        if let state = tcp?.children[Conntrack.CTA_PROTOINFO_TCP_STATE]?.payload.first {
            tcpState = Int(state) < Conntrack.tcpStates.count ? Conntrack.tcpStates[Int(state)] : "\(state)"
        }
        if let counters = attributes[Conntrack.CTA_COUNTERS_ORIG]?.children {
            originalPackets = counters[Conntrack.CTA_COUNTERS_PACKETS].flatMap(\.bigEndianU64) ?? 0
            originalBytes = counters[Conntrack.CTA_COUNTERS_BYTES].flatMap(\.bigEndianU64) ?? 0
        }
        if let counters = attributes[Conntrack.CTA_COUNTERS_REPLY]?.children {
            replyPackets = counters[Conntrack.CTA_COUNTERS_PACKETS].flatMap(\.bigEndianU64) ?? 0
            replyBytes = counters[Conntrack.CTA_COUNTERS_BYTES].flatMap(\.bigEndianU64) ?? 0
        }
    }

    static func tuple(_ attribute: Attribute) -> ConntrackTuple? {
        let parts = attribute.children
        guard let ip = parts[Conntrack.CTA_TUPLE_IP]?.children, let proto = parts[Conntrack.CTA_TUPLE_PROTO]?.children,
              let source = ip[Conntrack.CTA_IP_V4_SRC].flatMap(\.bigEndianU32),
              let destination = ip[Conntrack.CTA_IP_V4_DST].flatMap(\.bigEndianU32),
              let number = proto[Conntrack.CTA_PROTO_NUM]?.payload.first else { return nil }
        return ConntrackTuple(source: IPv4Address(source), destination: IPv4Address(destination), protocol: number,
                              sourcePort: proto[Conntrack.CTA_PROTO_SRC_PORT].flatMap(\.bigEndianU16),
                              destinationPort: proto[Conntrack.CTA_PROTO_DST_PORT].flatMap(\.bigEndianU16))
    }
}

extension Attribute {
    /// The payload as a big-endian (network order) integer, as netfilter attributes carry them.
    public var bigEndianU16: UInt16? { payload.count >= 2 ? UInt16(payload[0]) << 8 | UInt16(payload[1]) : nil }
    public var bigEndianU32: UInt32? { payload.count >= 4 ? payload.prefix(4).reduce(0) { $0 << 8 | UInt32($1) } : nil }
    public var bigEndianU64: UInt64? { payload.count >= 8 ? payload.prefix(8).reduce(0) { $0 << 8 | UInt64($1) } : nil }
}
