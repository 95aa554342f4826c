/// A netlink attribute (struct nlattr): a type and a payload, which may itself be attributes.
public struct Attribute: Equatable, Sendable {
    /// The type without the nested and byte-order flags.
    public var type: UInt16
    public var payload: [UInt8]

    public init(type: UInt16, payload: [UInt8]) {
        self.type = type
        self.payload = payload
    }

    public static func u8(_ type: UInt16, _ value: UInt8) -> Attribute { Attribute(type: type, payload: [value]) }
    public static func u16(_ type: UInt16, _ value: UInt16) -> Attribute {
        var writer = ByteWriter()
        writer.u16(value)
        return Attribute(type: type, payload: writer.bytes)
    }
    public static func u32(_ type: UInt16, _ value: UInt32) -> Attribute {
        var writer = ByteWriter()
        writer.u32(value)
        return Attribute(type: type, payload: writer.bytes)
    }
    /// A big-endian 16-bit value (ports).
    public static func be16(_ type: UInt16, _ value: UInt16) -> Attribute {
        Attribute(type: type, payload: [UInt8(value >> 8), UInt8(value & 0xff)])
    }
    /// A NUL-terminated string.
    public static func string(_ type: UInt16, _ value: String) -> Attribute {
        Attribute(type: type, payload: Array(value.utf8) + [0])
    }
    /// Attributes inside an attribute, written as iproute2 writes them (without NLA_F_NESTED).
    public static func nested(_ type: UInt16, _ children: [Attribute]) -> Attribute {
        var writer = ByteWriter()
        for child in children { child.encode(into: &writer) }
        return Attribute(type: type, payload: writer.bytes)
    }

    public func encode(into writer: inout ByteWriter) {
        writer.u16(UInt16(4 + payload.count))
        writer.u16(type)
        writer.append(payload)
        writer.align()
    }

    /// Every attribute in `bytes`, in order.
    public static func parseAll(_ bytes: ArraySlice<UInt8>) throws -> [Attribute] {
        var reader = ByteReader(bytes)
        var attributes: [Attribute] = []
        while reader.remaining >= 4 {
            let length = Int(try reader.u16())
            let type = try reader.u16() & 0x3fff
            guard length >= 4 else { throw WireError.badLength(length) }
            let payload = try reader.take(length - 4)
            attributes.append(Attribute(type: type, payload: Array(payload)))
            try reader.skip(min((4 - length % 4) % 4, reader.remaining))
        }
        return attributes
    }

    public var children: [Attribute] { (try? Attribute.parseAll(payload[...])) ?? [] }
    public var u32Value: UInt32? {
        var reader = ByteReader(payload[...])
        return try? reader.u32()
    }
    public var stringValue: String {
        String(decoding: payload.prefix { $0 != 0 }, as: UTF8.self)
    }
}

extension Array where Element == Attribute {
    /// The first attribute of `type`.
    public subscript(type: UInt16) -> Attribute? { first { $0.type == type } }
}

/// A fixed-size family header that follows the netlink header (ifinfomsg, ifaddrmsg, rtmsg, ndmsg).
public protocol FamilyHeader: Sendable {
    static var size: Int { get }
    func encode(into writer: inout ByteWriter)
    init(from reader: inout ByteReader) throws
}

/// One netlink message: the header (struct nlmsghdr) and its payload.
public struct NetlinkMessage: Equatable, Sendable {
    public var type: UInt16
    public var flags: UInt16
    public var sequence: UInt32
    public var portID: UInt32
    public var payload: [UInt8]

    public init(type: UInt16, flags: UInt16, sequence: UInt32 = 0, portID: UInt32 = 0, payload: [UInt8]) {
        self.type = type
        self.flags = flags
        self.sequence = sequence
        self.portID = portID
        self.payload = payload
    }

    /// A message whose payload is a family header followed by attributes.
    public init(type: UInt16, flags: UInt16, header: some FamilyHeader, attributes: [Attribute] = []) {
        var writer = ByteWriter()
        header.encode(into: &writer)
        for attribute in attributes { attribute.encode(into: &writer) }
        self.init(type: type, flags: flags, payload: writer.bytes)
    }

    public static let headerSize = 16

    public func encode() -> [UInt8] {
        var writer = ByteWriter()
        writer.u32(UInt32(Self.headerSize + payload.count))
        writer.u16(type)
        writer.u16(flags)
        writer.u32(sequence)
        writer.u32(portID)
        writer.append(payload)
        writer.align()
        return writer.bytes
    }

    /// Every message in one datagram from the kernel.
    public static func parseAll(_ bytes: [UInt8]) throws -> [NetlinkMessage] {
        var reader = ByteReader(bytes[...])
        var messages: [NetlinkMessage] = []
        while reader.remaining >= headerSize {
            let length = Int(try reader.u32())
            guard length >= headerSize, length - 4 <= reader.remaining else { throw WireError.badLength(length) }
            let type = try reader.u16(), flags = try reader.u16(), sequence = try reader.u32(), portID = try reader.u32()
            let payload = try reader.take(length - headerSize)
            messages.append(NetlinkMessage(type: type, flags: flags, sequence: sequence, portID: portID, payload: Array(payload)))
            try reader.skip(min((4 - length % 4) % 4, reader.remaining))
        }
        return messages
    }

    /// For NLMSG_ERROR: the negative errno, or 0 for an acknowledgement.
    public var errorCode: Int32? {
        guard type == NL.NLMSG_ERROR else { return nil }
        var reader = ByteReader(payload[...])
        return try? reader.i32()
    }

    /// The family header and the attributes after it.
    public func decode<H: FamilyHeader>(_ type: H.Type) throws -> (header: H, attributes: [Attribute]) {
        var reader = ByteReader(payload[...])
        let header = try H(from: &reader)
        return (header, try Attribute.parseAll(payload[min(H.size, payload.count)...]))
    }
}
