/// struct ifinfomsg: the header of link messages.
public struct InterfaceInfo: FamilyHeader, Equatable {
    public static let size = 16
    public var family: UInt8
    public var type: UInt16
    public var index: Int32
    public var flags: UInt32
    public var change: UInt32

    public init(family: UInt8 = NL.AF_UNSPEC, type: UInt16 = 0, index: Int32 = 0, flags: UInt32 = 0, change: UInt32 = 0) {
        self.family = family
        self.type = type
        self.index = index
        self.flags = flags
        self.change = change
    }

    public func encode(into writer: inout ByteWriter) {
        writer.u8(family)
        writer.u8(0)
        writer.u16(type)
        writer.i32(index)
        writer.u32(flags)
        writer.u32(change)
    }

    public init(from reader: inout ByteReader) throws {
        family = try reader.u8()
        try reader.skip(1)
        type = try reader.u16()
        index = try reader.i32()
        flags = try reader.u32()
        change = try reader.u32()
    }
}

/// struct ifaddrmsg: the header of address messages.
public struct AddressInfo: FamilyHeader, Equatable {
    public static let size = 8
    public var family: UInt8
    public var prefixLength: UInt8
    public var flags: UInt8
    public var scope: UInt8
    public var index: UInt32

    public init(family: UInt8 = NL.AF_INET, prefixLength: UInt8 = 0, flags: UInt8 = 0, scope: UInt8 = 0, index: UInt32 = 0) {
        self.family = family
        self.prefixLength = prefixLength
        self.flags = flags
        self.scope = scope
        self.index = index
    }

    public func encode(into writer: inout ByteWriter) {
        writer.u8(family)
        writer.u8(prefixLength)
        writer.u8(flags)
        writer.u8(scope)
        writer.u32(index)
    }

    public init(from reader: inout ByteReader) throws {
        family = try reader.u8()
        prefixLength = try reader.u8()
        flags = try reader.u8()
        scope = try reader.u8()
        index = try reader.u32()
    }
}

/// struct rtmsg: the header of route messages.
public struct RouteInfo: FamilyHeader, Equatable {
    public static let size = 12
    public var family: UInt8
    public var destinationLength: UInt8
    public var sourceLength: UInt8
    public var tos: UInt8
    public var table: UInt8
    public var protocolID: UInt8
    public var scope: UInt8
    public var type: UInt8
    public var flags: UInt32

    public init(family: UInt8 = NL.AF_INET, destinationLength: UInt8 = 0, table: UInt8 = NL.RT_TABLE_MAIN,
                protocolID: UInt8 = NL.RTPROT_STATIC, scope: UInt8 = NL.RT_SCOPE_UNIVERSE, type: UInt8 = NL.RTN_UNICAST) {
        self.family = family
        self.destinationLength = destinationLength
        sourceLength = 0
        tos = 0
        self.table = table
        self.protocolID = protocolID
        self.scope = scope
        self.type = type
        flags = 0
    }

    public func encode(into writer: inout ByteWriter) {
        for byte in [family, destinationLength, sourceLength, tos, table, protocolID, scope, type] { writer.u8(byte) }
        writer.u32(flags)
    }

    public init(from reader: inout ByteReader) throws {
        family = try reader.u8()
        destinationLength = try reader.u8()
        sourceLength = try reader.u8()
        tos = try reader.u8()
        table = try reader.u8()
        protocolID = try reader.u8()
        scope = try reader.u8()
        type = try reader.u8()
        flags = try reader.u32()
    }
}

/// struct ndmsg: the header of neighbour and FDB messages.
public struct NeighbourInfo: FamilyHeader, Equatable {
    public static let size = 12
    public var family: UInt8
    public var index: Int32
    public var state: UInt16
    public var flags: UInt8
    public var type: UInt8

    public init(family: UInt8 = NL.AF_INET, index: Int32 = 0, state: UInt16 = 0, flags: UInt8 = 0, type: UInt8 = 0) {
        self.family = family
        self.index = index
        self.state = state
        self.flags = flags
        self.type = type
    }

    public func encode(into writer: inout ByteWriter) {
        writer.u8(family)
        writer.u8(0)
        writer.u16(0)
        writer.i32(index)
        writer.u16(state)
        writer.u8(flags)
        writer.u8(type)
    }

    public init(from reader: inout ByteReader) throws {
        family = try reader.u8()
        try reader.skip(3)
        index = try reader.i32()
        state = try reader.u16()
        flags = try reader.u8()
        type = try reader.u8()
    }
}
