import TrellisModel

/// A DNS (RFC 1035) query as far as an authoritative server needs one: the header, the first
/// question, and the EDNS0 (RFC 6891) OPT record of the additional section when there is one.
public struct DNSQuery: Equatable, Sendable {
    public static let typeA: UInt16 = 1
    public static let typePTR: UInt16 = 12
    public static let typeAAAA: UInt16 = 28
    public static let typeOPT: UInt16 = 41
    public static let typeANY: UInt16 = 255
    public static let classIN: UInt16 = 1
    public static let classANY: UInt16 = 255

    public var id: UInt16
    /// The header's opcode; only 0 (a standard query) is answered with records.
    public var opcode: UInt8
    public var recursionDesired: Bool
    /// The question's name in lower case, without the trailing dot.
    public var name: String
    public var type: UInt16
    public var qclass: UInt16
    /// The largest UDP answer the client takes (its OPT record's class); nil when it sent no OPT.
    public var ednsPayloadSize: UInt16?
    /// The EDNS version the client speaks; only 0 exists.
    public var ednsVersion: UInt8 = 0
    /// The question section as it came, echoed in the answer.
    let question: ArraySlice<UInt8>

    /// Parses a query with at least one question; nil for anything else (responses, compressed or
    /// truncated names), which a server drops without an answer.
    public init?(_ bytes: [UInt8]) {
        guard bytes.count >= 12, bytes[2] & 0x80 == 0 else { return nil }
        id = UInt16(bytes[0]) << 8 | UInt16(bytes[1])
        opcode = (bytes[2] >> 3) & 0x0f
        recursionDesired = bytes[2] & 0x01 != 0
        guard Self.count(bytes, at: 4) >= 1 else { return nil }
        var offset = 12
        guard let labels = Self.labels(bytes, at: &offset), offset + 4 <= bytes.count else { return nil }
        name = labels.joined(separator: ".")
        type = Self.count(bytes, at: offset)
        qclass = Self.count(bytes, at: offset + 2)
        question = bytes[12..<(offset + 4)]
        offset += 4
        // The OPT record, if any, is in the additional section; a query has no answers nor authority,
        // and a second question (which no server answers) leaves the rest unread.
        guard Self.count(bytes, at: 4) == 1, Self.count(bytes, at: 6) == 0, Self.count(bytes, at: 8) == 0 else { return }
        for _ in 0..<Self.count(bytes, at: 10) {
            guard Self.labels(bytes, at: &offset) != nil, offset + 10 <= bytes.count else { return }
            let recordType = Self.count(bytes, at: offset), length = Int(Self.count(bytes, at: offset + 8))
            if recordType == Self.typeOPT {
                ednsPayloadSize = Self.count(bytes, at: offset + 2)
                ednsVersion = bytes[offset + 5]
            }
            offset += 10 + length
        }
    }

    static func count(_ bytes: [UInt8], at offset: Int) -> UInt16 { UInt16(bytes[offset]) << 8 | UInt16(bytes[offset + 1]) }

    /// The labels of an uncompressed name at `offset` (moved past it), lower-cased.
    static func labels(_ bytes: [UInt8], at offset: inout Int) -> [String]? {
        var labels: [String] = []
        while true {
            guard offset < bytes.count else { return nil }
            let length = Int(bytes[offset])
            offset += 1
            if length == 0 { return labels }
            guard length < 64, offset + length <= bytes.count, labels.count < 127 else { return nil }
            labels.append(String(decoding: bytes[offset..<(offset + length)], as: UTF8.self).lowercased())
            offset += length
        }
    }

    /// The address a reverse name (`4.10.168.192.in-addr.arpa`) stands for, nil for any other name.
    public var reverseAddress: IPv4Address? {
        let labels = name.split(separator: ".", omittingEmptySubsequences: false)
        guard labels.count == 6, labels[4] == "in-addr", labels[5] == "arpa" else { return nil }
        var value: UInt32 = 0
        for label in labels[0..<4].reversed() {
            guard label.count <= 3, let octet = UInt8(label), label == String(octet) else { return nil }
            value = value << 8 | UInt32(octet)
        }
        return IPv4Address(value)
    }

    /// The answer to this query from `zone`, at most `limit` bytes long: records that do not fit are
    /// left out and the TC bit is set, so the client asks again over TCP.
    public func answer(from zone: DNSZone, limit: Int = 65535, ttl: UInt32 = 5) -> [UInt8] {
        let (rcode, records) = resolve(in: zone)
        return response(rcode: rcode, records: records, limit: limit, ttl: ttl)
    }

    /// The largest UDP answer this client may be sent: 512 bytes without EDNS, else its size up to `cap`.
    public func udpLimit(cap: Int = Self.serverPayloadSize) -> Int { ednsPayloadSize.map { min(max(512, Int($0)), cap) } ?? 512 }

    /// The UDP payload size this server offers in its OPT record (the DNS flag day's 1232).
    public static let serverPayloadSize = 1232

    /// A record of an answer.
    public enum Record: Equatable, Sendable {
        case address(IPv4Address)
        case pointer(String)
    }

    /// The response code and records `zone` gives this question.
    func resolve(in zone: DNSZone) -> (rcode: UInt8, records: [Record]) {
        guard opcode == 0 else { return (Self.notImplemented, []) }
        guard qclass == Self.classIN || qclass == Self.classANY else { return (Self.refused, []) }
        if let address = reverseAddress {
            guard let names = zone.names(of: address) else { return (Self.nameError, []) }
            return (0, type == Self.typePTR || type == Self.typeANY ? names.map(Record.pointer) : [])
        }
        guard let addresses = zone.lookup(name) else { return (Self.nameError, []) }
        return (0, type == Self.typeA || type == Self.typeANY ? addresses.map(Record.address) : [])
    }

    static let serverFailure: UInt8 = 2
    static let nameError: UInt8 = 3
    static let notImplemented: UInt8 = 4
    static let refused: UInt8 = 5

    /// A SERVFAIL answer: the server cannot say yet (it has no zone for this domain).
    public func serverFailureAnswer() -> [UInt8] { response(rcode: Self.serverFailure, records: [], limit: 65535, ttl: 0) }

    func response(rcode: UInt8, records: [Record], limit: Int, ttl: UInt32) -> [UInt8] {
        // An EDNS version other than 0 is answered BADVERS (extended code 16: 1 in the OPT's upper bits).
        let badVersion = ednsPayloadSize != nil && ednsVersion != 0
        let encoded = badVersion ? [] : records.map { Self.encode($0, ttl: ttl) }
        var opt: [UInt8] = []
        if ednsPayloadSize != nil {
            let size = UInt16(Self.serverPayloadSize)
            opt = [0, 0, 41, UInt8(size >> 8), UInt8(size & 0xff), badVersion ? 1 : 0, 0, 0, 0, 0, 0]
        }
        let fixed = 12 + question.count + opt.count
        var fitting = 0, length = fixed
        for record in encoded where length + record.count <= limit {
            length += record.count
            fitting += 1
        }
        let truncated = fitting < encoded.count
        var out: [UInt8] = [UInt8(id >> 8), UInt8(id & 0xff),
                            0x84 | opcode << 3 | (truncated ? 0x02 : 0) | (recursionDesired ? 0x01 : 0),  // response, authoritative
                            badVersion ? 0 : rcode & 0x0f,
                            0, 1, UInt8(fitting >> 8), UInt8(fitting & 0xff), 0, 0, 0, opt.isEmpty ? 0 : 1]
        out += question
        for record in encoded.prefix(fitting) { out += record }
        return out + opt
    }

    /// A resource record whose owner is the question's name (a pointer to offset 12), class IN.
    static func encode(_ record: Record, ttl: UInt32) -> [UInt8] {
        let type: UInt16, data: [UInt8]
        switch record {
        case .address(let address):
            type = typeA
            data = [24, 16, 8, 0].map { UInt8((address.value >> $0) & 0xff) }
        case .pointer(let name):
            type = typePTR
            data = name.split(separator: ".").flatMap { [UInt8($0.utf8.count)] + Array($0.utf8) } + [0]
        }
        return [0xc0, 12, UInt8(type >> 8), UInt8(type & 0xff), 0, 1,
                UInt8(ttl >> 24), UInt8((ttl >> 16) & 0xff), UInt8((ttl >> 8) & 0xff), UInt8(ttl & 0xff),
                UInt8(data.count >> 8), UInt8(data.count & 0xff)] + data
    }
}

/// The names of one domain: every endpoint as `NAME`, `NAME.SUBNET` and `NAME.SUBNET.DOMAIN`, and
/// its address back to `NAME.SUBNET.DOMAIN` (PTR).
public struct DNSZone: Equatable, Sendable {
    public private(set) var records: [String: [IPv4Address]] = [:]
    public private(set) var pointers: [IPv4Address: [String]] = [:]

    public init() {}

    /// Adds an endpoint named `name` of subnet `subnet` (a path) in domain `domain` (a path).
    public mutating func add(name: String, subnet: String, domain: String, address: IPv4Address) {
        let short = name.lowercased()
        let subnetName = subnet.split(separator: "/").last.map(String.init) ?? subnet
        let domainName = domain.split(separator: "/").last.map(String.init) ?? domain
        let full = "\(short).\(subnetName).\(domainName)"
        for key in [short, "\(short).\(subnetName)", full] where !(records[key]?.contains(address) ?? false) {
            records[key, default: []].append(address)
        }
        if !(pointers[address]?.contains(full) ?? false) { pointers[address, default: []].append(full) }
    }

    /// The addresses of `name` (lower case, no trailing dot), nil when the zone does not know it.
    public func lookup(_ name: String) -> [IPv4Address]? { records[name]?.sorted { $0.value < $1.value } }

    /// The full names of the endpoints at `address`, nil when none is there.
    public func names(of address: IPv4Address) -> [String]? { pointers[address]?.sorted() }
}

/// DNS over TCP (RFC 1035 4.2.2, RFC 7766): messages each behind a two-byte length, several on one
/// connection. Collects a connection's bytes and hands out the whole messages among them.
public struct DNSStreamFramer: Sendable {
    private var buffer: [UInt8] = []

    public init() {}

    /// Bytes held that do not yet make a whole message.
    public var pending: Int { buffer.count }

    /// Adds `bytes` read from the connection and returns the messages now complete, in order.
    public mutating func feed(_ bytes: some Collection<UInt8>) -> [[UInt8]] {
        buffer += bytes
        var messages: [[UInt8]] = []
        var start = 0
        while buffer.count - start >= 2 {
            let length = Int(buffer[start]) << 8 | Int(buffer[start + 1])
            guard buffer.count - start - 2 >= length else { break }
            messages.append(Array(buffer[(start + 2)..<(start + 2 + length)]))
            start += 2 + length
        }
        buffer.removeFirst(start)
        return messages
    }

    /// `message` with its length in front, as it goes on a connection.
    public static func frame(_ message: [UInt8]) -> [UInt8] { [UInt8(message.count >> 8), UInt8(message.count & 0xff)] + message }
}
