import Testing
@testable import TrellisNetlinkWire

/// Traffic-control requests against what iproute2's `tc` (6.1, Debian 12) sends for the same command,
/// as strace showed it on this machine.
@Suite struct TrafficControlWireTests {
    /// `tc filter add dev IF4 parent ffff: protocol all prio 1 u32 match u32 0 0 action mirred egress redirect dev IF2`
    @Test func redirectFilterIsWhatTcSends() {
        let message = TrafficControlRequests.addRedirectFilter(index: 4, to: 2)
        #expect(message.type == 44)
        #expect(message.flags == 0x605)
        let tc: [UInt8] = [
            0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 3, 1, 0,   // tcmsg: ifindex 4, parent ffff:, prio 1 ETH_P_ALL
            0x08, 0, 0x01, 0, 0x75, 0x33, 0x32, 0,                                // TCA_KIND "u32"
            0x60, 0, 0x02, 0,                                                     // TCA_OPTIONS
            0x38, 0, 0x07, 0, 0x34, 0, 0x01, 0,                                   //   TCA_U32_ACT, action 1
            0x0b, 0, 0x01, 0, 0x6d, 0x69, 0x72, 0x72, 0x65, 0x64, 0, 0,           //     TCA_ACT_KIND "mirred"
            0x24, 0, 0x02, 0x80, 0x20, 0, 0x02, 0,                                //     TCA_ACT_OPTIONS, TCA_MIRRED_PARMS
            0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,           //       tc_gen: action TC_ACT_STOLEN
            1, 0, 0, 0, 2, 0, 0, 0,                                               //       TCA_EGRESS_REDIR to ifindex 2
            0x24, 0, 0x05, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,     //   TCA_U32_SEL: terminal, one key
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,                       //     key: match u32 0 0 at 0
        ]
        #expect(message.payload == tc)
    }

    @Test func ingressQdiscIsWhatTcSends() {
        let message = TrafficControlRequests.addIngressQdisc(index: 4)
        #expect(message.type == 36)
        #expect(message.flags == 0x605)
        #expect(message.payload == [0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0xff, 0xff, 0xf1, 0xff, 0xff, 0xff, 0, 0, 0, 0,
                                    0x0c, 0, 0x01, 0, 0x69, 0x6e, 0x67, 0x72, 0x65, 0x73, 0x73, 0])
    }

    /// `tc qdisc replace dev IF4 root tbf rate 10000000bit burst 16000 latency 50ms` sends rate 1,250,000 B/s,
    /// limit 78,500 B, buffer 200,000 ticks and TCA_TBF_BURST 16,000; it adds a rate table, which the
    /// kernel ignores once the link layer is set.
    @Test func tokenBucketHasTcsParameters() throws {
        let bucket = TokenBucket(bitsPerSecond: 10_000_000, burstBytes: 16_000, latencyMicroseconds: 50_000)
        let message = TrafficControlRequests.replaceRootTokenBucket(index: 4, bucket)
        #expect(message.type == 36)
        #expect(message.flags == 0x505)
        let (header, attributes) = try message.decode(TrafficControlInfo.self)
        #expect(header == TrafficControlInfo(index: 4, parent: 0xffff_ffff))
        #expect(attributes[TC.TCA_KIND]?.stringValue == "tbf")
        let options = try #require(attributes[TC.TCA_OPTIONS]?.children)
        let parameters = try #require(options[TC.TCA_TBF_PARMS]?.payload)
        var reader = ByteReader(parameters[...])
        #expect(try reader.u8() == 0 && reader.u8() == TC.TC_LINKLAYER_ETHERNET)
        try reader.skip(6)
        #expect(try reader.u32() == 1_250_000)
        try reader.skip(12)
        #expect(try reader.u32() == 78_500)
        #expect(try reader.u32() == 200_000)
        #expect(options[TC.TCA_TBF_BURST]?.u32Value == 16_000)
        #expect(options[TC.TCA_TBF_RATE64] == nil)
        // Read back as the kernel reports it, the bucket is the one asked for.
        let reply = NetlinkMessage(type: TC.RTM_NEWQDISC, flags: 0, header: header, attributes: attributes)
        #expect(try Qdisc(reply).tokenBucket == bucket)
        #expect(try Qdisc(reply).isRoot)
    }

    /// Above 2^32 bytes/s the 32-bit rate is saturated and the real one goes in TCA_TBF_RATE64.
    @Test func fastRatesGoInSixtyFourBits() throws {
        let bucket = TokenBucket(bitsPerSecond: 40_000_000_000, burstBytes: 100_000, latencyMicroseconds: 50_000)
        let message = TrafficControlRequests.replaceRootTokenBucket(index: 1, bucket)
        let options = try #require(try message.decode(TrafficControlInfo.self).attributes[TC.TCA_OPTIONS]?.children)
        #expect(options[TC.TCA_TBF_RATE64]?.payload == [0x00, 0xf2, 0x05, 0x2a, 0x01, 0, 0, 0])
        #expect(try Qdisc(NetlinkMessage(type: TC.RTM_NEWQDISC, flags: 0, payload: message.payload)).tokenBucket?.bytesPerSecond
            == 5_000_000_000)
    }
}
