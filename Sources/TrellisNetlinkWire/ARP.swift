import TrellisModel

/// Ethernet frames for ARP (RFC 826).
public enum ARPFrame {
    /// A gratuitous ARP request: "`ip` is at `mac`", broadcast so that every neighbour on the segment
    /// updates (or completes) its entry for `ip` at once.
    public static func gratuitous(mac: MACAddress, ip: IPv4Address) -> [UInt8] {
        let ipBytes = [UInt8(ip.value >> 24), UInt8(ip.value >> 16 & 0xff), UInt8(ip.value >> 8 & 0xff), UInt8(ip.value & 0xff)]
        return [UInt8](repeating: 0xff, count: 6) + mac.bytes + [0x08, 0x06]    // Ethernet: broadcast, source, ARP
            + [0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01]                         // Ethernet/IPv4, request
            + mac.bytes + ipBytes                                                // sender
            + [UInt8](repeating: 0, count: 6) + ipBytes                          // target: the same address
    }
}
