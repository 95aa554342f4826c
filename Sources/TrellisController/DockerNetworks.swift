import Foundation
import TrellisModel
import TrellisStore

/// Docker networks made with Trellis's remote driver: which subnet each engine's network id stands for.
extension Registry {
    public func createDockerNetwork(_ body: DockerNetworkCreate, _ caller: Caller) async throws -> DockerNetwork {
        try Names.validate(body.host, field: "host")
        try Names.split(body.subnet, kind: .subnet, field: "subnet")
        guard (12...64).contains(body.networkID.utf8.count), body.networkID.utf8.allSatisfy({ isxdigit(Int32($0)) != 0 }) else {
            throw TrellisError.invalid("networkID: a Docker network id is 12 to 64 hexadecimal digits", field: "networkID")
        }
        guard (1...256).contains(body.poolID.utf8.count) else { throw TrellisError.invalid("poolID: 1 to 256 bytes", field: "poolID") }
        let networkID = body.networkID.lowercased()
        // Idempotent: the driver records a network again when Docker repeats a CreateNetwork.
        if let own = caller.host, body.host != own { throw Caller.hostForbidden(own, "record Docker networks of host '\(body.host)'") }
        return try await mutate(caller) { tx in
            let subnet = try caller.visible(try tx.get(Subnet.self, body.subnet), body.subnet, field: "subnet")
            _ = try tx.require(HostRecord.self, body.host, field: "host")
            let path = DockerNetwork.path(host: body.host, networkID: networkID)
            if let existing = try tx.get(DockerNetwork.self, path) {
                guard existing.networkID == networkID, existing.subnet == subnet.path, existing.poolID == body.poolID else {
                    let other = caller.sees(existing.enterprise) ? existing.subnet : "a subnet of another enterprise"
                    throw TrellisError.conflict("networkID: \(path) is recorded already, for \(other)", field: "networkID")
                }
                return existing
            }
            let written = try tx.insert(DockerNetwork(path: path, host: body.host, networkID: networkID, subnet: subnet.path,
                                                      enterprise: subnet.enterprise, poolID: body.poolID, revision: 0, createdAt: Date()))
            try tx.recordChange(.created, written)
            return written
        }
    }

    public func dockerNetworks(host: String?, _ caller: Caller) async throws -> ListBody<DockerNetwork> {
        try caller.requireListingOwnHost(host, of: .dockerNetwork)
        guard let host else { return try await list(DockerNetwork.self, under: nil, caller) }
        try Names.validate(host, field: "host")
        let (items, revision) = try await store.read { (try $0.list(DockerNetwork.self, boundTo: host), try $0.currentRevision()) }
        return ListBody(items: items.filter { caller.sees($0.enterprise) }, revision: revision)
    }

    public func deleteDockerNetwork(_ path: String, _ caller: Caller) async throws {
        try await delete(DockerNetwork.self, path, caller) { _, _ in }
    }
}
