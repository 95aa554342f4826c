import Testing
import TrellisNetlinkWire

/// nftables trace events as the kernel sends them (`nf_tables_trace.c`): big-endian numbers, the rule handle
/// as a 64-bit value, the verdict nested (with NLA_F_NESTED), a policy's verdict in its own attribute.
@Suite struct TraceTests {
    static func be32(_ value: UInt32) -> [UInt8] { (0..<4).reversed().map { UInt8(truncatingIfNeeded: value >> ($0 * 8)) } }
    static func be64(_ value: UInt64) -> [UInt8] { (0..<8).reversed().map { UInt8(truncatingIfNeeded: value >> ($0 * 8)) } }
    static func string(_ text: String) -> [UInt8] { Array(text.utf8) + [0] }

    static func event(family: UInt8, type: UInt32, handle: UInt64? = nil, verdict: Int32? = nil, jump: String? = nil,
                      policy: UInt32? = nil) throws -> NFTraceEvent? {
        var attributes = [Attribute(type: 15, payload: be32(2)), Attribute(type: 4, payload: be32(type)),
                          Attribute(type: 6, payload: be32(0xBEEF)), Attribute(type: 2, payload: string("forward")),
                          Attribute(type: 1, payload: string("trellis"))]
        if let handle { attributes.append(Attribute(type: 3, payload: be64(handle))) }
        if let verdict {
            var nested = Attribute(type: 1, payload: be32(UInt32(bitPattern: verdict))).encoded
            if let jump { nested += Attribute(type: 2, payload: string(jump)).encoded }
            attributes.append(Attribute(type: 5 | 0x8000, payload: nested))
        }
        if let policy { attributes.append(Attribute(type: 16, payload: be32(policy))) }
        let message = NetlinkMessage(type: 10 << 8 | 17, flags: 0, header: NetfilterHeader(family: family), attributes: attributes)
        return try NFTraceEvent(try NetlinkMessage.parseAll(message.encode())[0])
    }

    @Test func rulesPoliciesAndJumpsAreRead() throws {
        let drop = try #require(try Self.event(family: 1, type: 3, handle: 9, verdict: 0))
        #expect(drop == NFTraceEvent(family: 1, table: "trellis", chain: "forward", ruleHandle: 9, kind: .rule, verdict: "drop",
                                     id: 0xBEEF))
        #expect(drop.isFinal)
        let jump = try #require(try Self.event(family: 1, type: 3, handle: 4, verdict: -3, jump: "acl_web"))
        #expect(jump.verdict == "jump acl_web" && !jump.isFinal)
        let policy = try #require(try Self.event(family: 7, type: 1, policy: 1))
        #expect(policy.kind == .policy && policy.verdict == "accept" && policy.ruleHandle == nil && policy.family == 7)
        let back = try #require(try Self.event(family: 1, type: 2))
        #expect(back.kind == .return && back.verdict == "return")
    }

    @Test func otherMessagesAreNotTraces() throws {
        let message = NetlinkMessage(type: 10 << 8 | 6, flags: 0, header: NetfilterHeader(family: 1), attributes: [])
        #expect(try NFTraceEvent(message) == nil)
    }
}

extension Attribute {
    var encoded: [UInt8] {
        var writer = ByteWriter()
        encode(into: &writer)
        return writer.bytes
    }
}
