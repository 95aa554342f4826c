import Foundation
import TrellisModel
import TrellisStore

/// Floating IPs: pools of external addresses, each address bound to at most one endpoint. A binding
/// lives on its endpoint (so it follows the endpoint into its host's desired state and goes with it),
/// and the address is claimed system-wide in the same transaction.
extension Registry {
    static let floatingClaims = "fip"

    /// Creates a pool of underlay addresses for an enterprise. Admin only: a bound address is answered
    /// for on the underlay, so a pool over a host, a VTEP or the controller would hand a tenant its traffic.
    public func createFloatingIPPool(_ body: FloatingIPPoolCreate, _ caller: Caller) async throws -> FloatingIPPool {
        try caller.requireAdmin("create floating IP pools (their addresses are taken on the underlay)")
        try Names.validate(body.enterprise, field: "enterprise")
        try Names.validate(body.name)
        try Self.checkDescription(body.description)
        let cidr = try IPv4Network.parse(body.cidr, field: "cidr")
        guard cidr.prefixLength >= 16 else { throw TrellisError.invalid("cidr: a pool is at most a /16", field: "cidr") }
        if let reserved = underlayReserved.first(where: { $0.overlaps(cidr) }) {
            throw TrellisError.conflict("cidr: \(cidr) overlaps the underlay's reserved range \(reserved)", field: "cidr")
        }
        return try await create(caller) { tx in
            if let host = try tx.list(HostRecord.self, under: nil).first(where: { cidr.contains($0.underlayIP) }) {
                throw TrellisError.conflict("cidr: \(cidr) contains \(host.underlayIP), the underlay address of host \(host.name)",
                                            field: "cidr")
            }
            let enterprise = try caller.visible(try tx.get(Enterprise.self, body.enterprise), body.enterprise, field: "enterprise")
            // Pools of every enterprise share the underlay: none may overlap another.
            if let other = try tx.list(FloatingIPPool.self, under: nil).first(where: { $0.cidr.overlaps(cidr) }) {
                let named = caller.sees(other.enterprise) ? other.path : "of another enterprise"
                throw TrellisError.conflict("cidr: \(cidr) overlaps floating IP pool \(named) (\(other.cidr))",
                                            field: "cidr")
            }
            return FloatingIPPool(path: enterprise.name + "/" + body.name, name: body.name, enterprise: enterprise.name, cidr: cidr,
                                  description: body.description, revision: 0, createdAt: Date())
        }
    }

    public func deleteFloatingIPPool(_ path: String, _ caller: Caller) async throws {
        try caller.requireAdmin("delete floating IP pools")
        try await delete(FloatingIPPool.self, path, caller) { tx, pool in
            let bound = try tx.list(Endpoint.self, under: pool.enterprise).filter { $0.floatingPool == path }
            guard bound.isEmpty else {
                throw TrellisError.conflict("pool '\(path)' has \(bound.count) bound addresses"
                                           + " (\(bound[0].floatingIP!) on \(bound[0].path)); unbind them first")
            }
        }
    }

    /// Binds an address of `poolPath` to an endpoint of the same enterprise.
    public func bindFloatingIP(pool poolPath: String, _ body: FloatingIPBind, _ caller: Caller) async throws -> FloatingIPBinding {
        let endpointPath = try await self.endpointPath(body.endpoint, caller, field: "endpoint")
        let endpoint = try await mutate(caller) { tx in
            let pool = try caller.visible(try tx.get(FloatingIPPool.self, poolPath), poolPath)
            var endpoint = try caller.visible(try tx.get(Endpoint.self, endpointPath), endpointPath, field: "endpoint")
            guard endpoint.enterprise == pool.enterprise else {
                throw TrellisError.invalid("endpoint: \(endpoint.path) is not of enterprise \(pool.enterprise ?? "-")", field: "endpoint")
            }
            if let bound = endpoint.floatingIP {
                throw TrellisError.conflict("endpoint: \(endpoint.path) already has floating IP \(bound); unbind it first",
                                            field: "endpoint")
            }
            endpoint.floatingIP = try Self.claimFloatingIP(in: pool, requested: body.address, owner: endpoint.path, tx)
            endpoint.floatingPool = pool.path
            let written = try tx.update(endpoint)
            try tx.recordChange(.updated, written)
            return written
        }
        return FloatingIPBinding(endpoint)!
    }

    static func claimFloatingIP(in pool: FloatingIPPool, requested: IPv4Address?, owner: String,
                                _ tx: any StoreWriter) throws -> IPv4Address {
        let usable = pool.cidr.prefixLength >= 31 ? pool.cidr.network.value...pool.cidr.broadcast.value
                                                  : pool.cidr.firstHost.value...pool.cidr.lastHost.value
        if let requested {
            guard usable.contains(requested.value) else {
                throw TrellisError.invalid("address: \(requested) is not a usable address of pool \(pool.path) (\(pool.cidr))",
                                           field: "address")
            }
            guard try tx.claim(floatingClaims, requested.description, owner: owner) else {
                let owner = try tx.claimOwner(floatingClaims, requested.description) ?? "another endpoint"
                throw TrellisError.conflict("address: \(requested) is already bound to \(owner)",
                                            field: "address")
            }
            return requested
        }
        for value in usable where try tx.claim(floatingClaims, IPv4Address(value).description, owner: owner) {
            return IPv4Address(value)
        }
        throw TrellisError.conflict("pool \(pool.path) is exhausted: every address of \(pool.cidr) is bound", field: "pool")
    }

    /// The endpoint a floating IP is bound to, if the caller may see it.
    private func boundEndpoint(_ address: String, _ tx: any StoreReader, _ caller: Caller) throws -> Endpoint {
        let parsed = try IPv4Address.parse(address, field: "address")
        guard let owner = try tx.claimOwner(Self.floatingClaims, parsed.description), let endpoint = try tx.get(Endpoint.self, owner),
              caller.sees(endpoint.enterprise) else {
            throw TrellisError.notFound("no floating IP \(parsed) is bound", field: "address")
        }
        return endpoint
    }

    public func unbindFloatingIP(_ address: String, _ caller: Caller) async throws {
        try await mutate(caller) { tx in
            var endpoint = try self.boundEndpoint(address, tx, caller)
            try tx.release(Self.floatingClaims, endpoint.floatingIP!.description)
            endpoint.floatingIP = nil
            endpoint.floatingPool = nil
            try tx.recordChange(.updated, try tx.update(endpoint))
        }
    }

    /// Moves a bound address to another endpoint of the same enterprise, in one transaction.
    public func moveFloatingIP(_ address: String, _ body: FloatingIPMove, _ caller: Caller) async throws -> FloatingIPBinding {
        let targetPath = try await endpointPath(body.endpoint, caller, field: "endpoint")
        let moved = try await mutate(caller) { tx in
            var from = try self.boundEndpoint(address, tx, caller)
            var to = try caller.visible(try tx.get(Endpoint.self, targetPath), targetPath, field: "endpoint")
            guard to.path != from.path else { return from }
            guard to.enterprise == from.enterprise else {
                throw TrellisError.invalid("endpoint: \(to.path) is not of enterprise \(from.enterprise ?? "-")", field: "endpoint")
            }
            if let bound = to.floatingIP {
                throw TrellisError.conflict("endpoint: \(to.path) already has floating IP \(bound)", field: "endpoint")
            }
            (to.floatingIP, to.floatingPool) = (from.floatingIP, from.floatingPool)
            (from.floatingIP, from.floatingPool) = (nil, nil)
            try tx.recordChange(.updated, try tx.update(from))
            let written = try tx.update(to)
            try tx.release(Self.floatingClaims, written.floatingIP!.description)
            _ = try tx.claim(Self.floatingClaims, written.floatingIP!.description, owner: written.path)
            try tx.recordChange(.updated, written)
            return written
        }
        return FloatingIPBinding(moved)!
    }

    public func floatingIPs(_ caller: Caller) async throws -> FloatingIPList {
        let scope = caller.admin ? nil : caller.enterprise ?? ""
        let endpoints = try await store.read { try $0.list(Endpoint.self, under: scope) }
        return FloatingIPList(items: endpoints.filter { caller.sees($0.enterprise) }.compactMap(FloatingIPBinding.init)
            .sorted { $0.address < $1.address })
    }
}
