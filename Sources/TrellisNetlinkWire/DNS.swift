import TrellisModel

/// A DNS (RFC 1035) query as far as an authoritative server for A records needs one: the header
/// and the first question.
public struct DNSQuery: Equatable, Sendable {
    public static let typeA: UInt16 = 1
    public static let classIN: UInt16 = 1

    public var id: UInt16
    public var recursionDesired: Bool
    /// The question's name in lower case, without the trailing dot.
    public var name: String
    public var type: UInt16
    public var qclass: UInt16
    /// The question section as it came, echoed in the answer.
    let question: ArraySlice<UInt8>

    /// Parses a standard query with at least one question; nil for anything else (responses,
    /// other opcodes, compressed or truncated names).
    public init?(_ bytes: [UInt8]) {
        guard bytes.count >= 12, bytes[2] & 0x80 == 0, (bytes[2] >> 3) & 0x0f == 0 else { return nil }
        id = UInt16(bytes[0]) << 8 | UInt16(bytes[1])
        recursionDesired = bytes[2] & 0x01 != 0
        guard (UInt16(bytes[4]) << 8 | UInt16(bytes[5])) >= 1 else { return nil }
        var labels: [String] = []
        var offset = 12
        while true {
            guard offset < bytes.count else { return nil }
            let length = Int(bytes[offset])
            offset += 1
            if length == 0 { break }
            guard length < 64, offset + length <= bytes.count, labels.count < 127 else { return nil }
            labels.append(String(decoding: bytes[offset..<(offset + length)], as: UTF8.self).lowercased())
            offset += length
        }
        guard offset + 4 <= bytes.count else { return nil }
        name = labels.joined(separator: ".")
        type = UInt16(bytes[offset]) << 8 | UInt16(bytes[offset + 1])
        qclass = UInt16(bytes[offset + 2]) << 8 | UInt16(bytes[offset + 3])
        question = bytes[12..<(offset + 4)]
    }

    /// The answer: `addresses` as A records (`ttl` seconds) when the name exists, NXDOMAIN when it does not.
    /// A name that exists but has no record of the asked type answers with no records (NODATA).
    public func answer(addresses: [IPv4Address]?, ttl: UInt32 = 5) -> [UInt8] {
        let records = type == Self.typeA && qclass == Self.classIN ? addresses ?? [] : []
        let rcode: UInt8 = addresses == nil ? 3 : 0
        var out: [UInt8] = [UInt8(id >> 8), UInt8(id & 0xff),
                            0x84 | (recursionDesired ? 0x01 : 0), rcode,  // response, authoritative
                            0, 1, UInt8(records.count >> 8), UInt8(records.count & 0xff), 0, 0, 0, 0]
        out += question
        for address in records {
            out += [0xc0, 12, 0, 1, 0, 1]  // the question's name, A, IN
            out += [UInt8(ttl >> 24), UInt8((ttl >> 16) & 0xff), UInt8((ttl >> 8) & 0xff), UInt8(ttl & 0xff), 0, 4]
            out += [UInt8(address.value >> 24), UInt8((address.value >> 16) & 0xff), UInt8((address.value >> 8) & 0xff), UInt8(address.value & 0xff)]
        }
        return out
    }
}

/// The names of one domain: every endpoint as `NAME`, `NAME.SUBNET` and `NAME.SUBNET.DOMAIN`.
public struct DNSZone: Equatable, Sendable {
    public private(set) var records: [String: [IPv4Address]] = [:]

    public init() {}

    /// Adds an endpoint named `name` of subnet `subnet` (a path) in domain `domain` (a path).
    public mutating func add(name: String, subnet: String, domain: String, address: IPv4Address) {
        let short = name.lowercased()
        let subnetName = subnet.split(separator: "/").last.map(String.init) ?? subnet
        let domainName = domain.split(separator: "/").last.map(String.init) ?? domain
        for key in [short, "\(short).\(subnetName)", "\(short).\(subnetName).\(domainName)"] where !(records[key]?.contains(address) ?? false) {
            records[key, default: []].append(address)
        }
    }

    /// The addresses of `name` (lower case, no trailing dot), nil when the zone does not know it.
    public func lookup(_ name: String) -> [IPv4Address]? { records[name]?.sorted { $0.value < $1.value } }
}
