import TrellisModel

/// A DHCP (RFC 2131) message, as far as a server that hands out fixed addresses needs one.
public struct DHCPMessage: Equatable, Sendable {
    public enum Kind: UInt8, Sendable { case discover = 1, offer, request, decline, ack, nak, release, inform }

    public var reply: Bool
    public var transactionID: UInt32
    public var broadcastFlag: Bool
    public var clientAddress: IPv4Address
    public var yourAddress: IPv4Address
    public var serverAddress: IPv4Address
    public var clientMAC: MACAddress
    public var kind: Kind
    public var requestedAddress: IPv4Address?
    public var serverIdentifier: IPv4Address?

    /// Parses a BOOTP message with the DHCP magic cookie; nil for anything else.
    public init?(_ bytes: [UInt8]) {
        guard bytes.count >= 240, bytes[1] == 1, bytes[2] == 6, Array(bytes[236..<240]) == [99, 130, 83, 99] else { return nil }
        func u32(_ offset: Int) -> UInt32 { (0..<4).reduce(0) { $0 << 8 | UInt32(bytes[offset + $1]) } }
        reply = bytes[0] == 2
        transactionID = u32(4)
        broadcastFlag = bytes[10] & 0x80 != 0
        clientAddress = IPv4Address(u32(12))
        yourAddress = IPv4Address(u32(16))
        serverAddress = IPv4Address(u32(20))
        guard let mac = MACAddress(bytes[28..<34].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }) else { return nil }
        clientMAC = mac
        var kind: Kind?
        var offset = 240
        while offset < bytes.count, bytes[offset] != 255 {
            let code = bytes[offset]
            if code == 0 { offset += 1; continue }
            guard offset + 1 < bytes.count else { return nil }
            let length = Int(bytes[offset + 1])
            guard offset + 2 + length <= bytes.count else { return nil }
            let value = Array(bytes[(offset + 2)..<(offset + 2 + length)])
            switch (code, length) {
            case (53, 1): kind = Kind(rawValue: value[0])
            case (50, 4): requestedAddress = IPv4Address(value.reduce(0) { $0 << 8 | UInt32($1) })
            case (54, 4): serverIdentifier = IPv4Address(value.reduce(0) { $0 << 8 | UInt32($1) })
            default: break
            }
            offset += 2 + length
        }
        guard let kind else { return nil }
        self.kind = kind
    }

    public init(reply: Bool, transactionID: UInt32, broadcastFlag: Bool, clientAddress: IPv4Address = IPv4Address(0),
                yourAddress: IPv4Address, serverAddress: IPv4Address, clientMAC: MACAddress, kind: Kind,
                requestedAddress: IPv4Address? = nil, serverIdentifier: IPv4Address? = nil) {
        self.reply = reply; self.transactionID = transactionID; self.broadcastFlag = broadcastFlag; self.clientAddress = clientAddress
        self.yourAddress = yourAddress; self.serverAddress = serverAddress; self.clientMAC = clientMAC; self.kind = kind
        self.requestedAddress = requestedAddress; self.serverIdentifier = serverIdentifier
    }
}

/// What a server tells a client besides its address.
public struct DHCPLease: Equatable, Sendable {
    public var address: IPv4Address
    public var network: IPv4Network
    public var gateway: IPv4Address
    public var dnsServer: IPv4Address?
    public var mtu: UInt16
    public var leaseSeconds: UInt32

    public init(address: IPv4Address, network: IPv4Network, gateway: IPv4Address, dnsServer: IPv4Address?, mtu: UInt16,
                leaseSeconds: UInt32) {
        self.address = address; self.network = network; self.gateway = gateway; self.dnsServer = dnsServer
        self.mtu = mtu; self.leaseSeconds = leaseSeconds
    }
}

public enum DHCPServerLogic {
    /// The answer to `request` from a client whose one address is `lease` (nil when the client is not
    /// a port of this host): an offer to a discover, an ack to a request for that address, a nak to a
    /// request for any other, nothing otherwise.
    public static func answer(_ request: DHCPMessage, lease: DHCPLease?) -> (kind: DHCPMessage.Kind, lease: DHCPLease)? {
        guard !request.reply, let lease else { return nil }
        switch request.kind {
        case .discover:
            return (.offer, lease)
        case .request:
            if let server = request.serverIdentifier, server != lease.gateway { return nil }  // the client chose another server
            let asked = request.requestedAddress ?? request.clientAddress
            return (asked == lease.address ? .ack : .nak, lease)
        case .inform:
            return (.ack, lease)
        default:
            return nil
        }
    }

    /// The BOOTP/DHCP payload of a reply.
    public static func replyPayload(to request: DHCPMessage, kind: DHCPMessage.Kind, lease: DHCPLease) -> [UInt8] {
        var writer = [UInt8](repeating: 0, count: 236)
        func put32(_ value: UInt32,
            at offset: Int) { for index in 0..<4 { writer[offset + index] = UInt8(truncatingIfNeeded: value >> UInt32(24 - 8 * index)) } }
        writer[0] = 2
        writer[1] = 1
        writer[2] = 6
        put32(request.transactionID, at: 4)
        if request.broadcastFlag { writer[10] = 0x80 }
        put32(request.clientAddress.value, at: 12)
        if kind != .nak { put32(kind == .ack && request.kind == .inform ? 0 : lease.address.value, at: 16) }
        put32(lease.gateway.value, at: 20)
        for (index, byte) in request.clientMAC.bytes.enumerated() { writer[28 + index] = byte }
        var options: [UInt8] = [99, 130, 83, 99, 53, 1, kind.rawValue, 54, 4] + bytes(lease.gateway)
        if kind != .nak {
            options += [51, 4] + bytes(lease.leaseSeconds) + [1, 4] + bytes(lease.network.mask) + [3, 4] + bytes(lease.gateway.value)
                + [26, 2, UInt8(lease.mtu >> 8), UInt8(lease.mtu & 0xff)]
            if let dns = lease.dnsServer { options += [6, 4] + bytes(dns) }
        }
        return writer + options + [255]
    }

    static func bytes(_ address: IPv4Address) -> [UInt8] { bytes(address.value) }
    static func bytes(_ value: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: value >> UInt32(24 - 8 * $0)) } }
}

/// An Ethernet frame carrying a UDP datagram over IPv4 (for answers sent straight out of one port).
public enum UDPFrame {
    public static func make(sourceMAC: MACAddress, destinationMAC: MACAddress, source: IPv4Address, destination: IPv4Address,
                            sourcePort: UInt16, destinationPort: UInt16, payload: [UInt8]) -> [UInt8] {
        let udpLength = 8 + payload.count, totalLength = 20 + udpLength
        var ip: [UInt8] = [0x45, 0, UInt8(totalLength >> 8), UInt8(totalLength & 0xff), 0, 0, 0x40, 0, 64, 17, 0, 0]
            + DHCPServerLogic.bytes(source) + DHCPServerLogic.bytes(destination)
        let checksum = internetChecksum(ip)
        ip[10] = UInt8(checksum >> 8)
        ip[11] = UInt8(checksum & 0xff)
        let udp: [UInt8] = [UInt8(sourcePort >> 8), UInt8(sourcePort & 0xff), UInt8(destinationPort >> 8), UInt8(destinationPort & 0xff),
                            UInt8(udpLength >> 8), UInt8(udpLength & 0xff), 0, 0]  // checksum 0: none, allowed over IPv4
        return destinationMAC.bytes + sourceMAC.bytes + [0x08, 0x00] + ip + udp + payload
    }

    /// The one's-complement sum of RFC 1071.
    public static func internetChecksum(_ bytes: [UInt8]) -> UInt16 {
        var sum: UInt32 = 0
        for index in stride(from: 0, to: bytes.count, by: 2) {
            sum += UInt32(bytes[index]) << 8 | (index + 1 < bytes.count ? UInt32(bytes[index + 1]) : 0)
        }
        while sum >> 16 != 0 { sum = (sum & 0xffff) + (sum >> 16) }
        return ~UInt16(sum)
    }
}
