import Testing
import TrellisModel
@testable import TrellisNetlinkWire

@Suite struct DHCPTests {
    let mac = MACAddress("02:7e:00:00:00:07")!
    var lease: DHCPLease {
        DHCPLease(address: IPv4Address("192.168.30.7")!, network: try! IPv4Network.parse("192.168.30.0/24"),
                  gateway: IPv4Address("192.168.30.1")!, dnsServer: IPv4Address("192.168.30.1"), mtu: 1450, leaseSeconds: 86400)
    }

    /// A client's message as busybox udhcpc sends it (op, htype, hlen, xid, flags, chaddr, cookie, options).
    func request(_ kind: UInt8, requested: [UInt8]? = nil, server: [UInt8]? = nil) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: 236)
        bytes[0] = 1; bytes[1] = 1; bytes[2] = 6
        bytes[4...7] = [0xde, 0xad, 0xbe, 0xef]
        bytes[10] = 0x80
        bytes[28...33] = [0x02, 0x7e, 0, 0, 0, 7]
        var options: [UInt8] = [99, 130, 83, 99, 53, 1, kind, 0]
        if let requested { options += [50, 4] + requested }
        if let server { options += [54, 4] + server }
        return bytes + options + [55, 3, 1, 3, 6, 255]
    }

    @Test func parsesClientMessages() throws {
        let discover = try #require(DHCPMessage(request(1)))
        #expect(discover.kind == .discover && !discover.reply && discover.transactionID == 0xdeadbeef && discover.broadcastFlag)
        #expect(discover.clientMAC == mac)
        let chosen = try #require(DHCPMessage(request(3, requested: [192, 168, 30, 7], server: [192, 168, 30, 1])))
        #expect(chosen.kind == .request && chosen.requestedAddress?.description == "192.168.30.7"
            && chosen.serverIdentifier?.description == "192.168.30.1")
        #expect(DHCPMessage([UInt8](repeating: 0, count: 300)) == nil, "no magic cookie")
        #expect(DHCPMessage(Array(request(1).prefix(200))) == nil, "truncated")
        var overrun = request(1)
        overrun.removeLast(6)
        overrun += [50, 200, 1, 2]
        #expect(DHCPMessage(overrun) == nil, "an option longer than the message")
    }

    @Test func offersAcksAndRefusesOnlyTheControllersAddress() throws {
        let discover = try #require(DHCPMessage(request(1)))
        #expect(DHCPServerLogic.answer(discover, lease: lease)?.kind == .offer)
        #expect(DHCPServerLogic.answer(discover, lease: nil) == nil, "not a port of this host: no answer")
        let right = try #require(DHCPMessage(request(3, requested: [192, 168, 30, 7], server: [192, 168, 30, 1])))
        #expect(DHCPServerLogic.answer(right, lease: lease)?.kind == .ack)
        let wrong = try #require(DHCPMessage(request(3, requested: [192, 168, 30, 99])))
        #expect(DHCPServerLogic.answer(wrong, lease: lease)?.kind == .nak)
        let elsewhere = try #require(DHCPMessage(request(3, requested: [192, 168, 30, 7], server: [10, 0, 0, 1])))
        #expect(DHCPServerLogic.answer(elsewhere, lease: lease) == nil)
    }

    @Test func replyCarriesAddressGatewayMaskMTUAndDNS() throws {
        let discover = try #require(DHCPMessage(request(1)))
        let payload = DHCPServerLogic.replyPayload(to: discover, kind: .offer, lease: lease)
        let reply = try #require(DHCPMessage(payload))
        #expect(reply.reply && reply.kind == .offer && reply.transactionID == 0xdeadbeef && reply.clientMAC == mac)
        #expect(reply.yourAddress.description == "192.168.30.7" && reply.serverIdentifier?.description == "192.168.30.1")
        let options = payload[240...]
        #expect(options.starts(with: [53, 1, 2, 54, 4, 192, 168, 30, 1, 51, 4, 0, 1, 0x51, 0x80, 1, 4, 255, 255, 255, 0, 3, 4, 192, 168, 30,
                                      1,
                                      26, 2, 0x05, 0xaa, 6, 4, 192, 168, 30, 1, 255]))
    }

    @Test func framesHaveAValidIPChecksum() {
        let frame = UDPFrame.make(sourceMAC: .gateway(vni: 4096), destinationMAC: mac, source: IPv4Address("192.168.30.1")!,
                                  destination: IPv4Address("255.255.255.255")!, sourcePort: 67, destinationPort: 68, payload: [1, 2, 3])
        #expect(frame.count == 14 + 20 + 8 + 3)
        #expect(Array(frame[0..<6]) == mac.bytes && Array(frame[12..<14]) == [0x08, 0x00])
        #expect(UDPFrame.internetChecksum(Array(frame[14..<34])) == 0, "a header with its checksum sums to zero")
        #expect(Array(frame[34..<38]) == [0, 67, 0, 68])
    }
}

@Suite struct DNSTests {
    /// A query for `name` of `type` as a stub resolver sends it, with an EDNS0 OPT record of
    /// `payloadSize` (version `ednsVersion`) when one is given.
    func query(_ name: String, type: UInt16 = 1, id: UInt16 = 0x1234, payloadSize: UInt16? = nil, ednsVersion: UInt8 = 0) -> [UInt8] {
        var bytes: [UInt8] = [UInt8(id >> 8), UInt8(id & 0xff), 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, payloadSize == nil ? 0 : 1]
        for label in name.split(separator: ".") { bytes += [UInt8(label.utf8.count)] + Array(label.utf8) }
        bytes += [0, UInt8(type >> 8), UInt8(type & 0xff), 0, 1]
        if let payloadSize { bytes += [0, 0, 41, UInt8(payloadSize >> 8), UInt8(payloadSize & 0xff), 0, ednsVersion, 0, 0, 0, 0] }
        return bytes
    }

    func zone() throws -> DNSZone {
        var zone = DNSZone()
        zone.add(name: "db", subnet: "acme/app1/web/red", domain: "acme/app1", address: try .parse("192.168.10.4", field: nil))
        return zone
    }

    @Test func answersARecordsAuthoritatively() throws {
        let zone = try zone()
        let parsed = try #require(DNSQuery(query("DB.red.App1")))
        #expect(parsed.name == "db.red.app1" && parsed.type == DNSQuery.typeA && parsed.id == 0x1234 && parsed.ednsPayloadSize == nil)
        let answer = parsed.answer(from: zone)
        #expect(Array(answer[0..<4]) == [0x12, 0x34, 0x85, 0x00], "id, response + authoritative + RD, NOERROR")
        #expect(Array(answer[6..<8]) == [0, 1] && Array(answer[10..<12]) == [0, 0], "one answer, no OPT for a client without EDNS")
        #expect(Array(answer.suffix(4)) == [192, 168, 10, 4])
        #expect(zone.lookup("db") != nil && zone.lookup("db.red") != nil && zone.lookup("db.blue.app1") == nil)
    }

    @Test func unknownNamesAreNXDOMAINAndOtherTypesNODATA() throws {
        let zone = try zone()
        let missing = try #require(DNSQuery(query("web")))
        #expect(missing.answer(from: zone)[3] & 0x0f == 3)
        let aaaa = try #require(DNSQuery(query("db", type: DNSQuery.typeAAAA)))
        let nodata = aaaa.answer(from: zone)
        #expect(nodata[3] & 0x0f == 0 && Array(nodata[6..<8]) == [0, 0])
        #expect(DNSQuery(Array(query("db").prefix(14))) == nil, "a truncated query is ignored")
    }

    @Test func reverseNamesAnswerWithTheEndpointsFullName() throws {
        let zone = try zone()
        let parsed = try #require(DNSQuery(query("4.10.168.192.in-addr.arpa", type: DNSQuery.typePTR)))
        #expect(parsed.reverseAddress == IPv4Address("192.168.10.4"))
        let answer = parsed.answer(from: zone)
        #expect(answer[3] & 0x0f == 0 && Array(answer[6..<8]) == [0, 1])
        let name: [UInt8] = [2] + Array("db".utf8) + [3] + Array("red".utf8) + [4] + Array("app1".utf8) + [0]
        #expect(Array(answer.suffix(name.count + 2)) == [0, UInt8(name.count)] + name, "PTR db.red.app1.")
        let other = try #require(DNSQuery(query("5.10.168.192.in-addr.arpa", type: DNSQuery.typePTR)))
        #expect(other.answer(from: zone)[3] & 0x0f == 3, "an address no endpoint has is NXDOMAIN")
        for bad in ["1.2.3.in-addr.arpa", "256.10.168.192.in-addr.arpa", "04.10.168.192.in-addr.arpa", "x.10.168.192.in-addr.arpa"] {
            #expect(try #require(DNSQuery(query(bad, type: DNSQuery.typePTR))).reverseAddress == nil, "\(bad) is no address")
        }
    }

    @Test func ednsClientsGetAnOPTAndTheirSize() throws {
        let parsed = try #require(DNSQuery(query("db", payloadSize: 4096)))
        #expect(parsed.ednsPayloadSize == 4096 && parsed.udpLimit() == DNSQuery.serverPayloadSize)
        #expect(try #require(DNSQuery(query("db", payloadSize: 100))).udpLimit() == 512, "no client gets less than 512")
        let answer = parsed.answer(from: try zone())
        #expect(Array(answer[10..<12]) == [0, 1], "one additional record: the OPT")
        #expect(Array(answer.suffix(11)) == [0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0], "OPT, our size 1232, version 0")
        let future = try #require(DNSQuery(query("db", payloadSize: 1232, ednsVersion: 1)))
        let refused = future.answer(from: try zone())
        #expect(Array(refused[6..<8]) == [0, 0] && refused[refused.count - 6] == 1, "EDNS version 1 is BADVERS (extended rcode 1)")
    }

    @Test func answersThatDoNotFitAreTruncated() throws {
        var zone = DNSZone()
        for index in 1...40 {
            zone.add(name: "pool", subnet: "acme/app1/web/red", domain: "acme/app1", address: IPv4Address(0xC0A8_0A00 + UInt32(index)))
        }
        let parsed = try #require(DNSQuery(query("pool")))
        let udp = parsed.answer(from: zone, limit: parsed.udpLimit())
        #expect(udp.count <= 512 && udp[2] & 0x02 != 0, "TC set")
        let fitted = Int(udp[6]) << 8 | Int(udp[7])
        #expect(fitted > 0 && fitted < 40 && udp.count == 12 + 10 + fitted * 16, "as many whole records as fit")
        let tcp = parsed.answer(from: zone)
        #expect(tcp[2] & 0x02 == 0 && Array(tcp[6..<8]) == [0, 40], "over TCP all 40")
    }

    @Test func otherOpcodesAndClassesAreRefused() throws {
        var status = query("db")
        status[2] = 0x10  // opcode 2, STATUS
        #expect(try #require(DNSQuery(status)).answer(from: try zone())[3] & 0x0f == 4, "NOTIMP")
        var chaos = query("db")
        chaos[chaos.count - 1] = 3  // class CH
        #expect(try #require(DNSQuery(chaos)).answer(from: try zone())[3] & 0x0f == 5, "REFUSED")
        var response = query("db")
        response[2] |= 0x80
        #expect(DNSQuery(response) == nil, "a response is never answered")
    }

    @Test func tcpMessagesAreSplitFromTheStreamWhereverItBreaks() {
        let first = query("db"), second = query("web", id: 7)
        let stream = DNSStreamFramer.frame(first) + DNSStreamFramer.frame(second)
        for cut in 0...stream.count {
            var framer = DNSStreamFramer()
            let messages = framer.feed(stream[0..<cut]) + framer.feed(stream[cut...])
            #expect(messages == [first, second] && framer.pending == 0, "cut at \(cut)")
        }
        var framer = DNSStreamFramer()
        #expect(framer.feed([0x01, 0x00] + [UInt8](repeating: 0, count: 10)).isEmpty && framer.pending == 12, "256 announced, 10 came")
    }
}
