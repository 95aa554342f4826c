/// The IPAM arithmetic of one subnet: which addresses may be handed out, in which order,
/// and why a requested address may not. Pure: the store supplies which addresses are taken.
public struct AddressPool: Sendable {
    public let network: IPv4Network
    public let gateway: IPv4Address
    /// Ranges never handed out, merged and sorted, clipped to the host range.
    public let reserved: [AddressRange]

    /// Validates the subnet's gateway and reserved ranges against its network.
    public init(network: IPv4Network, gateway: IPv4Address, reserved: [AddressRange] = []) throws {
        guard network.prefixLength <= 30 else {
            throw TrellisError.invalid("cidr: /\(network.prefixLength) leaves no room for a gateway and endpoints; use /30 or larger",
                                       field: "cidr")
        }
        guard network.contains(gateway) else {
            throw TrellisError.invalid("gateway: \(gateway) is outside \(network)", field: "gateway")
        }
        guard gateway != network.network, gateway != network.broadcast else {
            throw TrellisError.invalid("gateway: \(gateway) is the network or broadcast address of \(network)", field: "gateway")
        }
        for (index, range) in reserved.enumerated() where !(network.contains(range.first) && network.contains(range.last)) {
            throw TrellisError.invalid("reserved[\(index)]: \(range) is not inside \(network)", field: "reserved")
        }
        self.network = network
        self.gateway = gateway
        self.reserved = AddressPool.merge(reserved)
    }

    /// The default gateway of a network: its first host address.
    public static func defaultGateway(of network: IPv4Network) -> IPv4Address { network.firstHost }

    static func merge(_ ranges: [AddressRange]) -> [AddressRange] {
        var merged: [AddressRange] = []
        for range in ranges.sorted(by: { $0.first < $1.first }) {
            if let last = merged.last, UInt64(range.first.value) <= UInt64(last.last.value) + 1 {
                merged[merged.count - 1] = AddressRange(first: last.first, last: max(last.last, range.last))!
            } else {
                merged.append(range)
            }
        }
        return merged
    }

    /// How many addresses endpoints can get in all: host addresses less gateway and reserved ones.
    public var capacity: Int {
        var count = Int(network.size) - 2
        var gatewayReserved = false
        for range in reserved {
            let first = max(range.first, network.firstHost), last = min(range.last, network.lastHost)
            if first <= last {
                count -= Int(last.value - first.value) + 1
                if first <= gateway && gateway <= last { gatewayReserved = true }
            }
        }
        return gatewayReserved ? count : count - 1
    }

    /// Why `address` can never be handed out in this subnet, or nil if it can.
    public func refusal(for address: IPv4Address) -> String? {
        if !network.contains(address) { return "\(address) is outside the subnet \(network)" }
        if address == network.network { return "\(address) is the network address of \(network)" }
        if address == network.broadcast { return "\(address) is the broadcast address of \(network)" }
        if address == gateway { return "\(address) is the subnet's gateway" }
        if let range = reserved.first(where: { $0.contains(address) }) { return "\(address) is in the reserved range \(range)" }
        return nil
    }

    /// Calls `body` with each allocatable address once, starting at `start` (or the first host) and
    /// wrapping around, skipping the gateway and reserved ranges, until `body` returns true.
    /// Returns the address `body` accepted, or nil when it refused them all.
    public func firstAccepted(startingAt start: IPv4Address?, _ body: (IPv4Address) throws -> Bool) rethrows -> IPv4Address? {
        let low = network.firstHost.value, high = network.lastHost.value
        let begin = start.map(\.value).flatMap { (low...high).contains($0) ? $0 : nil } ?? low
        var segments = [(begin, high)]
        if begin > low { segments.append((low, begin - 1)) }
        for (from, to) in segments {
            var value = from
            while true {
                let address = IPv4Address(value)
                if let range = reserved.first(where: { $0.contains(address) }) {
                    if range.last.value >= to { break }
                    value = range.last.value + 1
                    continue
                }
                if address != gateway, try body(address) { return address }
                if value == to { break }
                value += 1
            }
        }
        return nil
    }
}
