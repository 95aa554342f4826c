import TrellisModel

/// Ethernet frames for ARP (RFC 826).
public enum ARPFrame {
    /// A broadcast ARP request from `mac`/`ip` asking who has `target`.
    public static func request(mac: MACAddress, ip: IPv4Address, target: IPv4Address) -> [UInt8] {
        [UInt8](repeating: 0xff, count: 6) + mac.bytes + [0x08, 0x06]    // Ethernet: broadcast, source, ARP
            + [0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01]                 // Ethernet/IPv4, request
            + mac.bytes + bytes(ip)                                      // sender
            + [UInt8](repeating: 0, count: 6) + bytes(target)            // target
    }

    /// A gratuitous ARP request: "`ip` is at `mac`", broadcast so that every neighbour on the segment
    /// updates (or completes) its entry for `ip` at once.
    public static func gratuitous(mac: MACAddress, ip: IPv4Address) -> [UInt8] {
        request(mac: mac, ip: ip, target: ip)
    }

    /// The operation (1 request, 2 reply), sender MAC and sender and target IPs of an ARP frame; nil for other frames.
    public static func parse(_ frame: [UInt8]) -> (operation: UInt16, senderMAC: MACAddress, senderIP: IPv4Address,
                                                   targetIP: IPv4Address)? {
        guard frame.count >= 42, frame[12] == 0x08, frame[13] == 0x06,
              let mac = MACAddress(frame[22..<28].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }) else { return nil }
        func ip(_ offset: Int) -> IPv4Address { IPv4Address(frame[offset..<offset + 4].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }) }
        return (UInt16(frame[20]) << 8 | UInt16(frame[21]), mac, ip(28), ip(38))
    }

    static func bytes(_ ip: IPv4Address) -> [UInt8] {
        [UInt8(ip.value >> 24), UInt8(ip.value >> 16 & 0xff), UInt8(ip.value >> 8 & 0xff), UInt8(ip.value & 0xff)]
    }
}
