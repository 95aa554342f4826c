/// Traffic-control constants from linux/rtnetlink.h, linux/pkt_sched.h, linux/pkt_cls.h and
/// linux/tc_act/tc_mirred.h, under their kernel names.
public enum TC {
    public static let RTM_NEWQDISC: UInt16 = 36
    public static let RTM_DELQDISC: UInt16 = 37
    public static let RTM_GETQDISC: UInt16 = 38
    public static let RTM_NEWTFILTER: UInt16 = 44
    public static let RTM_GETTFILTER: UInt16 = 46

    public static let TCA_KIND: UInt16 = 1
    public static let TCA_OPTIONS: UInt16 = 2

    /// The parent of a device's root qdisc.
    public static let TC_H_ROOT: UInt32 = 0xffff_ffff
    /// The parent of a device's ingress qdisc, whose own handle is `ffff:`.
    public static let TC_H_INGRESS: UInt32 = 0xffff_fff1
    public static let ingressHandle: UInt32 = 0xffff_0000
    /// The parent of the filters on a clsact (or ingress) qdisc's ingress side (TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_INGRESS)).
    public static let clsactIngress: UInt32 = 0xffff_fff2

    public static let TCA_BPF_FD: UInt16 = 6
    public static let TCA_BPF_NAME: UInt16 = 7
    public static let TCA_BPF_FLAGS: UInt16 = 8
    public static let TCA_BPF_TAG: UInt16 = 10
    public static let TCA_BPF_ID: UInt16 = 11
    /// The program's return code is the action (`direct-action`).
    public static let TCA_BPF_FLAG_ACT_DIRECT: UInt32 = 1

    public static let TCA_TBF_PARMS: UInt16 = 1
    public static let TCA_TBF_RATE64: UInt16 = 4
    public static let TCA_TBF_BURST: UInt16 = 6
    public static let TC_LINKLAYER_ETHERNET: UInt8 = 1
    /// The kernel's scheduler ticks are 2^PSCHED_SHIFT nanoseconds (64 ns).
    public static let PSCHED_SHIFT: UInt64 = 6

    public static let TCA_U32_SEL: UInt16 = 5
    public static let TCA_U32_ACT: UInt16 = 7
    public static let TC_U32_TERMINAL: UInt8 = 1
    public static let TCA_ACT_KIND: UInt16 = 1
    public static let TCA_ACT_OPTIONS: UInt16 = 2
    public static let TCA_MIRRED_PARMS: UInt16 = 2
    public static let TCA_EGRESS_REDIR: Int32 = 1
    public static let TC_ACT_STOLEN: Int32 = 4
    /// ETH_P_ALL in network byte order, as a filter's protocol.
    public static let ETH_P_ALL: UInt16 = 0x0003
}

/// struct tcmsg: the header of qdisc, class and filter messages.
public struct TrafficControlInfo: FamilyHeader, Equatable {
    public static let size = 20
    public var family: UInt8
    public var index: Int32
    public var handle: UInt32
    public var parent: UInt32
    /// For filters: the priority in the upper 16 bits, the protocol (network byte order) in the lower.
    public var info: UInt32

    public init(family: UInt8 = NL.AF_UNSPEC, index: Int32 = 0, handle: UInt32 = 0, parent: UInt32 = 0, info: UInt32 = 0) {
        self.family = family
        self.index = index
        self.handle = handle
        self.parent = parent
        self.info = info
    }

    public func encode(into writer: inout ByteWriter) {
        writer.u8(family)
        writer.u8(0)
        writer.u16(0)
        writer.i32(index)
        writer.u32(handle)
        writer.u32(parent)
        writer.u32(info)
    }

    public init(from reader: inout ByteReader) throws {
        family = try reader.u8()
        try reader.skip(3)
        index = try reader.i32()
        handle = try reader.u32()
        parent = try reader.u32()
        info = try reader.u32()
    }
}

/// A token bucket filter's parameters, as `tc qdisc … tbf rate R burst B latency L` computes them.
public struct TokenBucket: Equatable, Sendable {
    public var bytesPerSecond: UInt64
    /// The bucket's depth: how much may leave at once.
    public var burstBytes: UInt32
    /// The queue: what waits for tokens, beyond which packets are dropped.
    public var limitBytes: UInt32

    /// A bucket for `bitsPerSecond` whose queue holds `latencyMicroseconds` of traffic beyond the burst.
    public init(bitsPerSecond: Int, burstBytes: Int, latencyMicroseconds: Int) {
        bytesPerSecond = UInt64(max(1, bitsPerSecond / 8))
        self.burstBytes = UInt32(clamping: burstBytes)
        let queued = Double(bytesPerSecond) * Double(latencyMicroseconds) / 1_000_000
        limitBytes = UInt32(clamping: Int(queued) + burstBytes)
    }

    public init(bytesPerSecond: UInt64, burstBytes: UInt32, limitBytes: UInt32) {
        self.bytesPerSecond = bytesPerSecond
        self.burstBytes = burstBytes
        self.limitBytes = limitBytes
    }

    /// The time the burst takes to send at the rate, in scheduler ticks (struct tc_tbf_qopt's `buffer`).
    var bufferTicks: UInt32 {
        let nanoseconds = Double(burstBytes) * 1_000_000_000 / Double(bytesPerSecond)
        return UInt32(clamping: UInt64(min(nanoseconds, Double(UInt64.max >> 8))) >> TC.PSCHED_SHIFT)
    }

    /// struct tc_tbf_qopt: the rate (struct tc_ratespec), no peak rate, the limit, the buffer and no mtu.
    /// The link layer is given, so the kernel computes packet times itself and needs no rate table.
    func options() -> [UInt8] {
        var writer = ByteWriter()
        writer.u8(0)
        writer.u8(TC.TC_LINKLAYER_ETHERNET)
        writer.u16(0)
        writer.u16(0xffff)
        writer.u16(0)
        writer.u32(UInt32(clamping: bytesPerSecond))
        writer.append([UInt8](repeating: 0, count: 12))
        writer.u32(limitBytes)
        writer.u32(bufferTicks)
        writer.u32(0)
        return writer.bytes
    }
}

/// A qdisc as the kernel reports it.
public struct Qdisc: Equatable, Sendable {
    public var index: Int32
    public var handle: UInt32
    public var parent: UInt32
    /// `tbf`, `ingress`, `noqueue`, `pfifo_fast`, …
    public var kind: String
    /// For a token bucket filter: its rate, limit and (from the buffer) burst.
    public var tokenBucket: TokenBucket?

    public var isRoot: Bool { parent == TC.TC_H_ROOT }
    /// An `ingress` or `clsact` qdisc: both hang at the device's ingress parent.
    public var isIngress: Bool { parent == TC.TC_H_INGRESS }

    public init(_ message: NetlinkMessage) throws {
        let (header, attributes) = try message.decode(TrafficControlInfo.self)
        index = header.index
        handle = header.handle
        parent = header.parent
        kind = attributes[TC.TCA_KIND]?.stringValue ?? ""
        guard kind == "tbf", let options = attributes[TC.TCA_OPTIONS]?.children,
              let parameters = options[TC.TCA_TBF_PARMS]?.payload, parameters.count >= 36 else { return }
        var reader = ByteReader(parameters[...])
        try reader.skip(8)
        var rate = UInt64(try reader.u32())
        try reader.skip(12)
        let limit = try reader.u32(), buffer = try reader.u32()
        if let rate64 = options[TC.TCA_TBF_RATE64]?.payload, rate64.count == 8 {
            rate = rate64.reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        }
        let burst = Double(UInt64(buffer) << TC.PSCHED_SHIFT) * Double(rate) / 1_000_000_000
        tokenBucket = TokenBucket(bytesPerSecond: rate, burstBytes: UInt32(burst.rounded()), limitBytes: limit)
    }
}

/// A BPF filter on a device's ingress hook as the kernel reports it: the program it runs, by the id and tag
/// (a hash of its instructions) the kernel gave it.
public struct BPFFilter: Equatable, Sendable {
    public var index: Int32
    /// The name the filter was given when it was made (`TCA_BPF_NAME`).
    public var name: String
    public var programID: UInt32
    public var programTag: [UInt8]

    public init(index: Int32, name: String, programID: UInt32, programTag: [UInt8]) {
        self.index = index
        self.name = name
        self.programID = programID
        self.programTag = programTag
    }

    /// The filter a message reports, nil for a message of another kind of filter (or of one without a program).
    public init?(_ message: NetlinkMessage) throws {
        guard message.type == TC.RTM_NEWTFILTER else { return nil }
        let (header, attributes) = try message.decode(TrafficControlInfo.self)
        guard attributes[TC.TCA_KIND]?.stringValue == "bpf", let options = attributes[TC.TCA_OPTIONS]?.children,
              let id = options[TC.TCA_BPF_ID]?.u32Value else { return nil }
        index = header.index
        name = options[TC.TCA_BPF_NAME]?.stringValue ?? ""
        programID = id
        programTag = options[TC.TCA_BPF_TAG]?.payload ?? []
    }
}

/// Builders of traffic-control requests. Pure: they only make bytes; `RouteNetlink` sends them.
public enum TrafficControlRequests {
    /// Makes (or replaces) the device's root qdisc a token bucket filter.
    public static func replaceRootTokenBucket(index: Int32, _ bucket: TokenBucket) -> NetlinkMessage {
        var options: [Attribute] = [Attribute(type: TC.TCA_TBF_PARMS, payload: bucket.options()),
                                    .u32(TC.TCA_TBF_BURST, bucket.burstBytes)]
        if bucket.bytesPerSecond > UInt64(UInt32.max) {
            var writer = ByteWriter()
            writer.u32(UInt32(truncatingIfNeeded: bucket.bytesPerSecond))
            writer.u32(UInt32(truncatingIfNeeded: bucket.bytesPerSecond >> 32))
            options.append(Attribute(type: TC.TCA_TBF_RATE64, payload: writer.bytes))
        }
        return NetlinkMessage(type: TC.RTM_NEWQDISC, flags: RouteRequests.replace,
                              header: TrafficControlInfo(index: index, parent: TC.TC_H_ROOT),
                              attributes: [.string(TC.TCA_KIND, "tbf"), .nested(TC.TCA_OPTIONS, options)])
    }

    /// Puts back the device's default root qdisc.
    public static func deleteRootQdisc(index: Int32) -> NetlinkMessage {
        NetlinkMessage(type: TC.RTM_DELQDISC, flags: RouteRequests.change, header: TrafficControlInfo(index: index, parent: TC.TC_H_ROOT))
    }

    /// An `ingress` qdisc (for a redirect's u32 filter) or a `clsact` one (for a BPF program) at the device's ingress
    /// parent; an error if the device has either already.
    public static func addIngressQdisc(index: Int32, kind: String = "ingress") -> NetlinkMessage {
        NetlinkMessage(type: TC.RTM_NEWQDISC, flags: RouteRequests.create,
                       header: TrafficControlInfo(index: index, handle: TC.ingressHandle, parent: TC.TC_H_INGRESS),
                       attributes: [.string(TC.TCA_KIND, kind)])
    }

    /// Removes the device's ingress-side qdisc of `kind` and every filter on it (one of the other kind stays).
    public static func deleteIngressQdisc(index: Int32, kind: String = "ingress") -> NetlinkMessage {
        NetlinkMessage(type: TC.RTM_DELQDISC, flags: RouteRequests.change,
                       header: TrafficControlInfo(index: index, handle: TC.ingressHandle, parent: TC.TC_H_INGRESS),
                       attributes: [.string(TC.TCA_KIND, kind)])
    }

    /// A u32 filter on the device's ingress qdisc that matches every packet and redirects it to the
    /// egress of device `target` (`u32 match u32 0 0 action mirred egress redirect dev TARGET`).
    public static func addRedirectFilter(index: Int32, to target: Int32) -> NetlinkMessage {
        var mirred = ByteWriter()
        for field: Int32 in [0, 0, TC.TC_ACT_STOLEN, 0, 0, TC.TCA_EGRESS_REDIR, target] { mirred.i32(field) }
        let action = Attribute.nested(1, [
            .string(TC.TCA_ACT_KIND, "mirred"),
            .nested(TC.TCA_ACT_OPTIONS | NL.NLA_F_NESTED, [Attribute(type: TC.TCA_MIRRED_PARMS, payload: mirred.bytes)]),
        ])
        var selector = ByteWriter()
        selector.u8(TC.TC_U32_TERMINAL)
        selector.u8(0)
        selector.u8(1)
        selector.append([UInt8](repeating: 0, count: 13 + 16))
        let protocolAll = UInt32(TC.ETH_P_ALL.bigEndian)
        return NetlinkMessage(type: TC.RTM_NEWTFILTER, flags: RouteRequests.create,
                              header: TrafficControlInfo(index: index, parent: TC.ingressHandle, info: 1 << 16 | protocolAll),
                              attributes: [.string(TC.TCA_KIND, "u32"), .nested(TC.TCA_OPTIONS, [
                                  .nested(TC.TCA_U32_ACT, [action]), Attribute(type: TC.TCA_U32_SEL, payload: selector.bytes),
                              ])])
    }

    /// Makes the BPF program `program` (a descriptor) the device's ingress filter at `priority`, in direct-action mode,
    /// replacing atomically whatever filter was there: frames never go unclassified while one program takes
    /// over from another (`tc filter replace dev X ingress pref P handle 1 bpf da fd F`).
    public static func replaceBPFFilter(index: Int32, program: Int32, name: String, priority: UInt16) -> NetlinkMessage {
        let protocolAll = UInt32(TC.ETH_P_ALL.bigEndian)
        return NetlinkMessage(type: TC.RTM_NEWTFILTER, flags: RouteRequests.replace,
                              header: TrafficControlInfo(index: index, handle: 1, parent: TC.clsactIngress,
                                                         info: UInt32(priority) << 16 | protocolAll),
                              attributes: [.string(TC.TCA_KIND, "bpf"), .nested(TC.TCA_OPTIONS, [
                                  .u32(TC.TCA_BPF_FD, UInt32(bitPattern: program)), .string(TC.TCA_BPF_NAME, name),
                                  .u32(TC.TCA_BPF_FLAGS, TC.TCA_BPF_FLAG_ACT_DIRECT),
                              ])])
    }

    /// Every filter on the ingress side of the device's clsact qdisc (`tc filter show dev X ingress`).
    public static func dumpIngressFilters(index: Int32) -> NetlinkMessage {
        NetlinkMessage(type: TC.RTM_GETTFILTER, flags: RouteRequests.dump,
                       header: TrafficControlInfo(index: index, parent: TC.clsactIngress))
    }

    public static func dumpQdiscs() -> NetlinkMessage {
        NetlinkMessage(type: TC.RTM_GETQDISC, flags: RouteRequests.dump, header: TrafficControlInfo())
    }
}
