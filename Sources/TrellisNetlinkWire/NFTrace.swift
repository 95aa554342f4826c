import TrellisModel

/// nftables trace events (`NFT_MSG_TRACE` on the `NFNLGRP_NFTRACE` group), as `nft monitor trace` reads them:
/// one event for each rule a packet marked with `meta nftrace set 1` matched, each chain it returned from,
/// and each base chain policy it met.
public struct NFTraceEvent: Equatable, Sendable {
    public enum Kind: String, Sendable, Codable { case rule, `return`, policy, unspecified }

    /// The nfnetlink multicast group of trace events.
    public static let group: UInt32 = 9
    /// `NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_TRACE`.
    public static let messageType: UInt16 = 10 << 8 | 17
    static let NFTA_TRACE_TABLE: UInt16 = 1, NFTA_TRACE_CHAIN: UInt16 = 2, NFTA_TRACE_RULE_HANDLE: UInt16 = 3
    static let NFTA_TRACE_TYPE: UInt16 = 4, NFTA_TRACE_VERDICT: UInt16 = 5, NFTA_TRACE_ID: UInt16 = 6
    static let NFTA_TRACE_POLICY: UInt16 = 16
    static let NFTA_VERDICT_CODE: UInt16 = 1, NFTA_VERDICT_CHAIN: UInt16 = 2

    /// The address family of the table (`NFPROTO_*`: 1 inet, 2 ip, 7 bridge, 5 netdev).
    public var family: UInt8
    public var table: String
    public var chain: String
    /// The handle of the rule that matched; nil for a policy or a return.
    public var ruleHandle: UInt64?
    public var kind: Kind
    /// The verdict: `accept`, `drop`, `continue`, `jump CHAIN`, `goto CHAIN`, `return`, … (a policy's for a policy event).
    public var verdict: String
    /// The packet's trace id: every event of one packet carries the same.
    public var id: UInt32

    public init(family: UInt8, table: String, chain: String, ruleHandle: UInt64?, kind: Kind, verdict: String, id: UInt32) {
        (self.family, self.table, self.chain, self.ruleHandle, self.kind, self.verdict, self.id) =
            (family, table, chain, ruleHandle, kind, verdict, id)
    }

    /// Reads one trace message; nil for any other message.
    public init?(_ message: NetlinkMessage) throws {
        guard message.type == Self.messageType else { return nil }
        let (header, attributes) = try message.decode(NetfilterHeader.self)
        family = header.family
        table = attributes[Self.NFTA_TRACE_TABLE]?.stringValue ?? ""
        chain = attributes[Self.NFTA_TRACE_CHAIN]?.stringValue ?? ""
        ruleHandle = attributes[Self.NFTA_TRACE_RULE_HANDLE].flatMap(\.bigEndianU64)
        kind = switch attributes[Self.NFTA_TRACE_TYPE].flatMap(\.bigEndianU32) {
        case 1: .policy
        case 2: .return
        case 3: .rule
        default: .unspecified
        }
        id = attributes[Self.NFTA_TRACE_ID].flatMap(\.bigEndianU32) ?? 0
        if kind == .policy, let policy = attributes[Self.NFTA_TRACE_POLICY].flatMap(\.bigEndianU32) {
            verdict = Self.verdictName(Int32(bitPattern: policy), chain: nil)
        } else if let nested = attributes[Self.NFTA_TRACE_VERDICT]?.children,
                  let code = nested[Self.NFTA_VERDICT_CODE].flatMap(\.bigEndianU32) {
            verdict = Self.verdictName(Int32(bitPattern: code), chain: nested[Self.NFTA_VERDICT_CHAIN]?.stringValue)
        } else {
            verdict = kind == .return ? "return" : "continue"
        }
    }

    /// The kernel's verdict codes (`NF_*` and `NFT_*`) as nft writes them.
    static func verdictName(_ code: Int32, chain: String?) -> String {
        switch code {
        case 0: "drop"
        case 1: "accept"
        case 2: "stolen"
        case 3: "queue"
        case -1: "continue"
        case -2: "break"
        case -3: "jump \(chain ?? "?")"
        case -4: "goto \(chain ?? "?")"
        case -5: "return"
        default: "verdict \(code)"
        }
    }

    /// Whether the verdict ends the packet's way through this hook.
    public var isFinal: Bool { ["accept", "drop", "stolen", "queue"].contains(verdict) }
}
