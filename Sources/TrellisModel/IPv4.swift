/// An IPv4 address as a 32-bit number; parses and prints dotted quads strictly.
public struct IPv4Address: Hashable, Comparable, Sendable, TextCodable {
    public var value: UInt32

    public init(_ value: UInt32) { self.value = value }

    /// Parses `a.b.c.d`: four decimal octets, no leading zeros, nothing else.
    public init?(_ text: some StringProtocol) {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var value: UInt32 = 0
        for part in parts {
            guard (1...3).contains(part.count), part.allSatisfy({ $0.isASCII && $0.isNumber }),
                  part.count == 1 || part.first != "0", let octet = UInt32(part), octet <= 255
            else { return nil }
            value = value << 8 | octet
        }
        self.value = value
    }

    /// Parses `text`, or throws an error naming `field`.
    public static func parse(_ text: String, field: String?) throws -> IPv4Address {
        guard let address = IPv4Address(text) else {
            throw TrellisError.invalid(prefixed(field, "'\(text)' is not an IPv4 address (expected a.b.c.d)"), field: field)
        }
        return address
    }

    public var description: String {
        "\(value >> 24).\(value >> 16 & 0xff).\(value >> 8 & 0xff).\(value & 0xff)"
    }

    public static func < (a: Self, b: Self) -> Bool { a.value < b.value }

    public static func parseText(_ text: String) throws -> IPv4Address { try parse(text, field: nil) }
}

/// An IPv4 network in CIDR notation whose host bits are all zero.
public struct IPv4Network: Hashable, Sendable, TextCodable {
    public let network: IPv4Address
    public let prefixLength: Int

    /// Creates a network; returns nil unless `prefixLength` is 0...32 and the host bits of `network` are zero.
    public init?(network: IPv4Address, prefixLength: Int) {
        guard (0...32).contains(prefixLength) else { return nil }
        let mask = IPv4Network.mask(prefixLength)
        guard network.value & ~mask == 0 else { return nil }
        self.network = network
        self.prefixLength = prefixLength
    }

    /// Parses `a.b.c.d/n` with a clear error: a bad address, a bad prefix, or host bits set
    /// (with the network the user probably meant).
    /// The /32 of one address.
    public init(single address: IPv4Address) { self.init(network: address, prefixLength: 32)! }

    public static func parse(_ text: String, field: String? = "cidr") throws -> IPv4Network {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let address = IPv4Address(parts[0]),
              parts[1].allSatisfy({ $0.isASCII && $0.isNumber }), let length = Int(parts[1]), (0...32).contains(length)
        else {
            throw TrellisError.invalid(prefixed(field, "'\(text)' is not an IPv4 CIDR (expected a.b.c.d/n with n from 0 to 32)"),
                                       field: field)
        }
        let mask = mask(length)
        guard let network = IPv4Network(network: address, prefixLength: length) else {
            let meant = IPv4Address(address.value & mask)
            throw TrellisError.invalid(prefixed(field, "'\(text)' has host bits set; did you mean \(meant)/\(length)?"), field: field)
        }
        return network
    }

    static func mask(_ length: Int) -> UInt32 { length == 0 ? 0 : UInt32.max << UInt32(32 - length) }

    public var mask: UInt32 { IPv4Network.mask(prefixLength) }
    public var broadcast: IPv4Address { IPv4Address(network.value | ~mask) }
    /// Number of addresses in the network, network and broadcast included.
    public var size: UInt64 { UInt64(1) << UInt64(32 - prefixLength) }

    public func contains(_ address: IPv4Address) -> Bool { address.value & mask == network.value }

    public func overlaps(_ other: IPv4Network) -> Bool {
        contains(other.network) || other.contains(network)
    }

    /// The first address hosts may use (the one after the network address).
    public var firstHost: IPv4Address { IPv4Address(network.value &+ 1) }
    /// The last address hosts may use (the one before broadcast).
    public var lastHost: IPv4Address { IPv4Address(broadcast.value &- 1) }

    public var description: String { "\(network)/\(prefixLength)" }

    public static func parseText(_ text: String) throws -> IPv4Network { try parse(text, field: nil) }
}

/// An inclusive range of IPv4 addresses, written `a.b.c.d-e.f.g.h` or as a single address.
public struct AddressRange: Hashable, Sendable, TextCodable {
    public let first: IPv4Address
    public let last: IPv4Address

    public init?(first: IPv4Address, last: IPv4Address) {
        guard first <= last else { return nil }
        self.first = first
        self.last = last
    }

    public static func parse(_ text: String, field: String?) throws -> AddressRange {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard (1...2).contains(parts.count), let first = IPv4Address(parts[0]),
              let last = parts.count == 2 ? IPv4Address(parts[1]) : first
        else {
            throw TrellisError.invalid(prefixed(field, "'\(text)' is not an address range (expected a.b.c.d-e.f.g.h)"), field: field)
        }
        guard let range = AddressRange(first: first, last: last) else {
            throw TrellisError.invalid(prefixed(field, "range '\(text)' ends before it starts"), field: field)
        }
        return range
    }

    public func contains(_ address: IPv4Address) -> Bool { first <= address && address <= last }

    public var count: UInt64 { UInt64(last.value - first.value) + 1 }

    public var description: String { first == last ? "\(first)" : "\(first)-\(last)" }

    public static func parseText(_ text: String) throws -> AddressRange { try parse(text, field: nil) }
}

/// `message` led by the field it concerns, when there is one.
func prefixed(_ field: String?, _ message: String) -> String {
    field.map { "\($0): \(message)" } ?? message
}
