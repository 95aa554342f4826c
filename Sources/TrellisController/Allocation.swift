import TrellisModel
import TrellisStore

/// Allocation of the numbers the controller hands out — addresses, MACs, VNIs, ids — inside the
/// caller's write transaction, where uniqueness claims make a duplicate impossible.
extension StoreWriter {
    /// Claims an address in `subnet` for `owner`: `requested` if it is free and allowed, else the next
    /// free one after the last allocated (so a released address is not reused at once).
    func allocateAddress(in subnet: Subnet, requested: IPv4Address?, owner: String) throws -> IPv4Address {
        let pool = try subnet.pool()
        let namespace = "ip:" + subnet.path
        if let requested {
            if let reason = pool.refusal(for: requested) {
                throw TrellisError.conflict("ip: \(reason)", field: "ip")
            }
            guard try claim(namespace, requested.description, owner: owner) else {
                let holder = try claimOwner(namespace, requested.description) ?? "another endpoint"
                throw TrellisError.conflict("ip: \(requested) is already in use by \(holder)", field: "ip")
            }
            return requested
        }
        let full = TrellisError.conflict(
            "subnet \(subnet.path) is full: all \(pool.capacity) addresses of \(subnet.cidr) are in use", field: "subnet")
        let hintKey = "ipam:" + subnet.path
        let start = try allocationHint(hintKey).map { IPv4Address(UInt32(truncatingIfNeeded: $0)) }
        // Usually the address after the last one allocated is free and taken at the first try. Only after a run
        // of taken ones are the subnet's claims counted, so a full subnet fails without trying every address.
        // The count reads every claim of the subnet, which in a cluster conflicts with any allocation made
        // meanwhile, while stepping over taken addresses conflicts with nothing.
        var tries = 0
        let address = try pool.firstAccepted(startingAt: start) { candidate in
            tries += 1
            if tries == 16, try claimCount(namespace) >= pool.capacity { throw full }
            return try claim(namespace, candidate.description, owner: owner)
        }
        guard let address else { throw full }
        try setAllocationHint(hintKey, Int(address.value) + 1, range: Int(pool.network.firstHost.value)...Int(pool.network.lastHost.value))
        return address
    }

    func releaseAddresses(of subnetPath: String, owner: String) throws {
        try releaseAll("ip:" + subnetPath, ownedBy: owner)
    }

    /// A fresh locally administered unicast MAC, unique across the system: the one made from `id` (an
    /// endpoint's, itself unique) unless that is taken, and then the next free one of a sequence.
    func allocateMAC(owner: String, id: Int) throws -> MACAddress {
        let preferred = MACAddress.endpoint(sequence: UInt32(truncatingIfNeeded: id))
        if try claim("mac", preferred.description, owner: owner) { return preferred }
        var sequence = try counter("mac")
        while true {
            sequence += 1
            let mac = MACAddress.endpoint(sequence: UInt32(truncatingIfNeeded: sequence))
            if try claim("mac", mac.description, owner: owner) {
                try setCounter("mac", sequence)
                return mac
            }
        }
    }

    /// A VXLAN network id unique across the system.
    func allocateVNI(owner: String) throws -> Int {
        var vni = max(try counter("vni"), VNIRange.first - 1)
        for _ in VNIRange.first...VNIRange.last {
            vni = vni >= VNIRange.last ? VNIRange.first : vni + 1
            if try claim("vni", String(vni), owner: owner) {
                try setCounter("vni", vni)
                return vni
            }
        }
        throw TrellisError.conflict("every VXLAN network id is in use", field: "vni")
    }
}
