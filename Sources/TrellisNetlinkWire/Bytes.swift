/// Appends host-order integers and raw bytes, as netlink wants them.
public struct ByteWriter {
    public private(set) var bytes: [UInt8] = []

    public init() {}

    public mutating func u8(_ value: UInt8) { bytes.append(value) }
    public mutating func u16(_ value: UInt16) { withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) } }
    public mutating func u32(_ value: UInt32) { withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) } }
    public mutating func i32(_ value: Int32) { u32(UInt32(bitPattern: value)) }
    public mutating func append(_ data: [UInt8]) { bytes.append(contentsOf: data) }
    /// Pads with zeros to the next multiple of 4 (NLMSG_ALIGN / NLA_ALIGN).
    public mutating func align() { while bytes.count % 4 != 0 { bytes.append(0) } }
    public mutating func set(u16 value: UInt16, at offset: Int) {
        bytes[offset] = UInt8(truncatingIfNeeded: value)
        bytes[offset + 1] = UInt8(truncatingIfNeeded: value >> 8)
    }
    public mutating func set(u32 value: UInt32, at offset: Int) {
        for index in 0..<4 { bytes[offset + index] = UInt8(truncatingIfNeeded: value >> UInt32(8 * index)) }
    }
}

/// Reads host-order integers from a byte slice, failing softly at its end.
public struct ByteReader {
    public let bytes: ArraySlice<UInt8>
    public private(set) var offset: Int

    public init(_ bytes: ArraySlice<UInt8>) {
        self.bytes = bytes
        offset = bytes.startIndex
    }

    public var remaining: Int { bytes.endIndex - offset }

    public mutating func u8() throws -> UInt8 {
        guard remaining >= 1 else { throw WireError.truncated }
        defer { offset += 1 }
        return bytes[offset]
    }

    public mutating func u16() throws -> UInt16 {
        guard remaining >= 2 else { throw WireError.truncated }
        defer { offset += 2 }
        return UInt16(bytes[offset]) | UInt16(bytes[offset + 1]) << 8
    }

    public mutating func u32() throws -> UInt32 {
        guard remaining >= 4 else { throw WireError.truncated }
        defer { offset += 4 }
        return (0..<4).reduce(UInt32(0)) { $0 | UInt32(bytes[offset + $1]) << UInt32(8 * $1) }
    }

    public mutating func i32() throws -> Int32 { Int32(bitPattern: try u32()) }

    public mutating func take(_ count: Int) throws -> ArraySlice<UInt8> {
        guard count >= 0, remaining >= count else { throw WireError.truncated }
        defer { offset += count }
        return bytes[offset..<offset + count]
    }

    public mutating func skip(_ count: Int) throws { _ = try take(count) }
}

/// What can be wrong with bytes the kernel sent.
public enum WireError: Error, Equatable, CustomStringConvertible {
    case truncated
    case badLength(Int)

    public var description: String {
        switch self {
        case .truncated: "netlink message truncated"
        case .badLength(let length): "netlink length \(length) does not fit the message"
        }
    }
}
