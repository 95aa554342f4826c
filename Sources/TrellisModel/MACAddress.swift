/// A 48-bit Ethernet MAC address.
public struct MACAddress: Hashable, Comparable, Sendable, TextCodable {
    public let value: UInt64

    public static func < (a: MACAddress, b: MACAddress) -> Bool { a.value < b.value }

    public init?(_ value: UInt64) {
        guard value >> 48 == 0 else { return nil }
        self.value = value
    }

    /// Parses `aa:bb:cc:dd:ee:ff` (either case).
    public init?(_ text: some StringProtocol) {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 6 else { return nil }
        var value: UInt64 = 0
        for part in parts {
            guard part.count == 2, let byte = UInt8(part, radix: 16) else { return nil }
            value = value << 8 | UInt64(byte)
        }
        self.value = value
    }

    /// The six bytes, most significant first.
    public var bytes: [UInt8] { (0..<6).map { UInt8(truncatingIfNeeded: value >> UInt64(40 - 8 * $0)) } }

    /// True when the locally-administered bit of the first octet is set.
    public var isLocallyAdministered: Bool { value >> 40 & 0x02 != 0 }
    /// True when the multicast bit of the first octet is clear.
    public var isUnicast: Bool { value >> 40 & 0x01 == 0 }

    /// Prefix of every endpoint MAC the controller hands out (locally administered, unicast).
    public static let endpointPrefix: UInt64 = 0x02_7e
    /// Prefix of the anycast gateway MACs, kept apart from endpoint MACs so the two never collide.
    public static let gatewayPrefix: UInt64 = 0x02_7f

    /// The endpoint MAC for the controller's `sequence`-th allocation: `02:7e` and 32 bits of sequence.
    public static func endpoint(sequence: UInt32) -> MACAddress {
        MACAddress(endpointPrefix << 32 | UInt64(sequence))!
    }

    /// The anycast gateway MAC of a subnet, the same on every host: `02:7f:00` and the 24-bit VNI.
    public static func gateway(vni: Int) -> MACAddress {
        MACAddress(gatewayPrefix << 32 | UInt64(vni & 0xff_ffff))!
    }

    public var description: String {
        bytes.map { byte in
            let hex = String(byte, radix: 16)
            return hex.count == 1 ? "0" + hex : hex
        }.joined(separator: ":")
    }

    public static func parseText(_ text: String) throws -> MACAddress {
        guard let mac = MACAddress(text) else {
            throw TrellisError.invalid("'\(text)' is not a MAC address (expected aa:bb:cc:dd:ee:ff)", field: "mac")
        }
        return mac
    }
}

/// The range of VXLAN network identifiers the controller allocates from.
public enum VNIRange {
    /// VNIs below this are left to operators' hand-made overlays.
    public static let first = 4096
    /// The largest 24-bit VNI.
    public static let last = 0xff_ffff
}
