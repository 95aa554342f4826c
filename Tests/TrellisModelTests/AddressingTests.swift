import Testing
@testable import TrellisModel

@Suite struct IPv4Tests {
    @Test func parsesDottedQuads() throws {
        #expect(IPv4Address("192.168.10.1")?.value == 0xC0A8_0A01)
        #expect(IPv4Address("0.0.0.0")?.value == 0)
        #expect(IPv4Address("255.255.255.255")?.value == UInt32.max)
        for bad in ["", "1.2.3", "1.2.3.4.5", "256.1.1.1", "01.2.3.4", "1.2.3.-4", "a.b.c.d", "1..2.3", " 1.2.3.4", "1.2.3.4 "] {
            #expect(IPv4Address(bad) == nil, "\(bad) should not parse")
        }
        #expect(IPv4Address(0x0A00_0001).description == "10.0.0.1")
    }

    @Test func parsesCIDRs() throws {
        let network = try IPv4Network.parse("192.168.10.0/24")
        #expect(network.prefixLength == 24)
        #expect(network.firstHost.description == "192.168.10.1")
        #expect(network.lastHost.description == "192.168.10.254")
        #expect(network.broadcast.description == "192.168.10.255")
        #expect(network.size == 256)
        #expect(network.contains(IPv4Address("192.168.10.77")!))
        #expect(!network.contains(IPv4Address("192.168.11.1")!))
        #expect(try IPv4Network.parse("0.0.0.0/0").size == 1 << 32)
    }

    @Test func rejectsBadCIDRsWithAHelpfulMessage() {
        let hostBits = #expect(throws: TrellisError.self) { try IPv4Network.parse("192.168.10.5/24") }
        #expect(hostBits?.message.contains("did you mean 192.168.10.0/24") == true)
        #expect(hostBits?.field == "cidr")
        for bad in ["192.168.10.0", "192.168.10.0/33", "192.168.10.0/-1", "192.168.10.0/", "x/24", "192.168.10.0/2a"] {
            #expect(throws: TrellisError.self, "\(bad)") { try IPv4Network.parse(bad) }
        }
    }

    @Test func overlap() throws {
        let a = try IPv4Network.parse("10.0.0.0/16"), b = try IPv4Network.parse("10.0.5.0/24"), c = try IPv4Network.parse("10.1.0.0/16")
        #expect(a.overlaps(b) && b.overlaps(a))
        #expect(!a.overlaps(c))
    }

    @Test func parsesRanges() throws {
        let range = try AddressRange.parse("10.0.0.5-10.0.0.9", field: "reserved")
        #expect(range.count == 5)
        #expect(try AddressRange.parse("10.0.0.5", field: "reserved").count == 1)
        #expect(throws: TrellisError.self) { try AddressRange.parse("10.0.0.9-10.0.0.5", field: "reserved") }
    }
}

@Suite struct AddressPoolTests {
    func pool(_ cidr: String, gateway: String? = nil, reserved: [String] = []) throws -> AddressPool {
        let network = try IPv4Network.parse(cidr)
        return try AddressPool(network: network, gateway: gateway.flatMap { IPv4Address($0) } ?? network.firstHost,
                               reserved: try reserved.map { try AddressRange.parse($0, field: "reserved") })
    }

    /// Allocates every address the way the controller does, with `taken` as the store's claims.
    func allocateAll(_ pool: AddressPool) -> [IPv4Address] {
        var taken: Set<IPv4Address> = []
        var hint: IPv4Address?
        while let next = pool.firstAccepted(startingAt: hint, { taken.insert($0).inserted }) {
            hint = IPv4Address(next.value + 1)
        }
        return taken.sorted()
    }

    @Test func neverHandsOutGatewayNetworkBroadcastOrReserved() throws {
        let pool = try pool("10.0.0.0/28", gateway: "10.0.0.1", reserved: ["10.0.0.4-10.0.0.6", "10.0.0.14"])
        let addresses = allocateAll(pool)
        #expect(addresses.map(\.description) == ["10.0.0.2", "10.0.0.3", "10.0.0.7", "10.0.0.8", "10.0.0.9", "10.0.0.10",
                                                 "10.0.0.11", "10.0.0.12", "10.0.0.13"])
        #expect(pool.capacity == addresses.count)
    }

    @Test func capacityCountsOverlappingReservationsOnce() throws {
        let pool = try pool("10.0.0.0/24", reserved: ["10.0.0.1-10.0.0.10", "10.0.0.5-10.0.0.20", "10.0.0.0"])
        // 254 hosts, less .1-.20 (which holds the gateway .1).
        #expect(pool.capacity == 234)
        #expect(allocateAll(pool).count == 234)
    }

    @Test func wrapsAroundFromTheHint() throws {
        let pool = try pool("10.0.0.0/29")
        var order: [String] = []
        _ = pool.firstAccepted(startingAt: IPv4Address("10.0.0.5")) { order.append($0.description); return false }
        #expect(order == ["10.0.0.5", "10.0.0.6", "10.0.0.2", "10.0.0.3", "10.0.0.4"])
    }

    @Test func explainsRefusals() throws {
        let pool = try pool("10.0.0.0/24", reserved: ["10.0.0.100-10.0.0.110"])
        #expect(pool.refusal(for: IPv4Address("10.0.1.1")!)?.contains("outside") == true)
        #expect(pool.refusal(for: IPv4Address("10.0.0.1")!)?.contains("gateway") == true)
        #expect(pool.refusal(for: IPv4Address("10.0.0.0")!)?.contains("network address") == true)
        #expect(pool.refusal(for: IPv4Address("10.0.0.255")!)?.contains("broadcast") == true)
        #expect(pool.refusal(for: IPv4Address("10.0.0.105")!)?.contains("reserved") == true)
        #expect(pool.refusal(for: IPv4Address("10.0.0.50")!) == nil)
    }

    @Test func validatesTheSubnet() throws {
        #expect(throws: TrellisError.self) { try pool("10.0.0.0/24", gateway: "10.0.1.1") }
        #expect(throws: TrellisError.self) { try pool("10.0.0.0/24", gateway: "10.0.0.255") }
        #expect(throws: TrellisError.self) { try pool("10.0.0.0/31") }
        #expect(throws: TrellisError.self) { try pool("10.0.0.0/24", reserved: ["10.0.1.1"]) }
        #expect(try pool("10.0.0.0/30").capacity == 1)
    }
}

@Suite struct MACAndVNITests {
    @Test func endpointMACsAreLocallyAdministeredUnicastAndDistinct() {
        let macs = (1...1000).map { MACAddress.endpoint(sequence: UInt32($0)) }
        #expect(Set(macs).count == 1000)
        #expect(macs.allSatisfy { $0.isLocallyAdministered && $0.isUnicast })
        #expect(MACAddress.endpoint(sequence: 0x0102_0304).description == "02:7e:01:02:03:04")
    }

    @Test func gatewayMACsNeverCollideWithEndpointMACs() {
        let gateway = MACAddress.gateway(vni: 4096)
        #expect(gateway.description == "02:7f:00:00:10:00")
        #expect(gateway.isLocallyAdministered && gateway.isUnicast)
        #expect(gateway.value >> 32 != MACAddress.endpointPrefix)
    }

    @Test func parsesMACs() {
        #expect(MACAddress("02:7E:00:00:00:01")?.description == "02:7e:00:00:00:01")
        #expect(MACAddress("02:7e:00:00:00") == nil)
        #expect(MACAddress("02:7e:00:00:00:0g") == nil)
        #expect(MACAddress("02:7e:00:00:00:001") == nil)
    }

    @Test func vniRangeFitsTwentyFourBits() {
        #expect(VNIRange.first > 0 && VNIRange.last == (1 << 24) - 1)
    }
}

@Suite struct NameTests {
    @Test func acceptsDNSLabels() throws {
        for good in ["acme", "app1", "web-1", "a", "x_y", String(repeating: "a", count: 63)] { try Names.validate(good) }
    }

    @Test func rejectsOthers() {
        for bad in ["", "Acme", "-a", "a-", "a/b", "a.b", "a b", String(repeating: "a", count: 64), "é"] {
            #expect(throws: TrellisError.self, "\(bad)") { try Names.validate(bad) }
        }
    }

    @Test func splitsPathsByKind() throws {
        let (parent, name) = try Names.split("acme/app1/web/red", kind: .subnet)
        #expect(parent == "acme/app1/web" && name == "red")
        let error = #expect(throws: TrellisError.self) { try Names.split("acme/app1", kind: .subnet, field: "subnet") }
        #expect(error?.message.contains("ENTERPRISE/DOMAIN/ZONE/SUBNET") == true)
        #expect(throws: TrellisError.self) { try Names.split("acme//web/red", kind: .subnet) }
        #expect(Names.prefix("acme/app1/web/red/web1", 2) == "acme/app1")
    }
}

@Suite struct SHA256Tests {
    @Test func matchesFIPSVectors() {
        #expect(SHA256.hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(SHA256.hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(SHA256.hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")
                == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        #expect(SHA256.hex(String(repeating: "a", count: 1000))
                == "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3")
    }

    @Test func tokensAreRandom() {
        let tokens = Set((0..<100).map { _ in APIToken.generate() })
        #expect(tokens.count == 100)
        #expect(tokens.allSatisfy { $0.hasPrefix("trl_") && $0.count == 44 })
    }
}
