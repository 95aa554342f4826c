import Foundation
import Logging
import TrellisAgent
import TrellisModel

/// The network driver's and the IPAM driver's calls.
extension RemoteDriver {
    // MARK: IPAM

    /// A pool for a network being made. With `--ipam-opt trellis.subnet=…` it is the subnet's; otherwise
    /// Docker has not said yet which subnet the network stands for (the driver's `-o` reaches only the
    /// network driver, after the pool), so the pool waits for the CreateNetwork that names it.
    func requestPool(_ request: RequestPoolRequest) async throws -> RequestPoolResponse {
        guard request.V6 != true else { throw TrellisError.invalid("IPv6 pools are not supported", field: "V6") }
        guard (request.SubPool ?? "").isEmpty else {
            throw TrellisError.invalid("--ip-range is not supported: Trellis allocates from the whole subnet", field: "SubPool")
        }
        let requested = try request.Pool.flatMap { $0.isEmpty ? nil : try IPv4Network.parse($0, field: "--subnet") }
        let pool: DriverState.PendingPool
        if let path = request.Options?[PluginProtocol.subnetOption] {
            let subnet = try await subnet(path)
            if let requested, requested != subnet.cidr {
                throw TrellisError.invalid("--subnet \(requested) does not agree with \(path), which is \(subnet.cidr)", field: "--subnet")
            }
            pool = DriverState.PendingPool(id: Self.subnetPoolPrefix + path, pool: subnet.cidr.description, requested: requested,
                                           subnet: path)
        } else {
            pool = DriverState.PendingPool(id: Self.pendingPoolPrefix + Self.randomHex(bytes: 8),
                                           pool: requested?.description ?? PluginProtocol.unspecifiedPool, requested: requested,
                                           subnet: nil)
        }
        await state.add(pool)
        return RequestPoolResponse(PoolID: pool.id, Pool: pool.pool, Data: [:])
    }

    func requestAddress(_ request: RequestAddressRequest) async throws -> RequestAddressResponse {
        let wanted = try request.Address.flatMap { $0.isEmpty ? nil : try IPv4Address.parse($0, field: "--ip") }
        if request.Options?[PluginProtocol.addressTypeOption] == PluginProtocol.gatewayAddressType {
            return RequestAddressResponse(Address: try await gateway(pool: request.PoolID, wanted: wanted), Data: [:])
        }
        guard let path = try await subnetPath(pool: request.PoolID) else {
            throw TrellisError.notFound("pool \(request.PoolID) belongs to no Trellis network", field: "PoolID")
        }
        let subnet = try await subnet(path)
        if let wanted, !subnet.cidr.contains(wanted) {
            throw TrellisError.invalid("--ip \(wanted) is outside \(path) (\(subnet.cidr))", field: "--ip")
        }
        let endpoint: Endpoint = try await controller.post("/api/v1/endpoints", EndpointCreate(
            subnet: path, name: "docker-\(Self.randomHex(bytes: 4))", kind: .container, owner: "docker", host: host,
                ip: wanted?.description))
        do {
            try records.put([DriverRecord(endpointID: endpoint.id, pool: request.PoolID, address: endpoint.ip)])
        } catch {
            try? await controller.delete("/api/v1/endpoints/\(endpoint.id)")
            throw error
        }
        await state.remember(allocation: endpoint, pool: request.PoolID)
        return RequestAddressResponse(Address: "\(endpoint.ip)/\(subnet.cidr.prefixLength)", Data: [:])
    }

    /// The gateway of a pool: the subnet's, when the pool's subnet is known; else what Docker asked
    /// for (or the first address of its `--subnet`), checked against the subnet at CreateNetwork.
    private func gateway(pool id: String, wanted: IPv4Address?) async throws -> String {
        if let path = try await subnetPath(pool: id) {
            let subnet = try await subnet(path)
            if let wanted, wanted != subnet.gateway {
                throw TrellisError.invalid("--gateway \(wanted) is not the gateway of \(path) (\(subnet.gateway))", field: "--gateway")
            }
            return "\(subnet.gateway)/\(subnet.cidr.prefixLength)"
        }
        guard let pending = await state.pendingPool(id) else { throw TrellisError.notFound("no pool \(id)", field: "PoolID") }
        guard let requested = pending.requested else { return PluginProtocol.unspecifiedPool }
        return "\(wanted ?? requested.firstHost)/\(requested.prefixLength)"
    }

    func releaseAddress(_ request: ReleaseAddressRequest) async throws -> Empty {
        guard let address = try? IPv4Address.parse(request.Address, field: "Address") else { return Empty() }
        await state.forget(allocation: request.PoolID, address)
        guard let record = records.record(pool: request.PoolID, address: address) else { return Empty() }
        try await Self.remove(record, agent: agent, records: records)
        return Empty()
    }

    /// Removes a recorded endpoint's port, then the endpoint (releasing its address), then the record;
    /// `endpoint` is the recorded one when the caller has read it already.
    static func remove(_ record: DriverRecord, endpoint: Endpoint? = nil, agent: Agent, records: DriverRecords) async throws {
        do {
            let endpoint: Endpoint = if let endpoint { endpoint } else {
                try await agent.client.get("/api/v1/endpoints/\(record.endpointID)")
            }
            try? await agent.unplug(endpoint)
            try await agent.client.delete("/api/v1/endpoints/\(record.endpointID)")
        } catch let error as TrellisError where error.code == .notFound {}
        try records.remove([record.endpointID])
    }

    static func randomHex(bytes: Int) -> String {
        (0..<bytes).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
    }

    /// The subnet a pool allocates from, nil while its network is not made yet.
    func subnetPath(pool id: String) async throws -> String? {
        if id.hasPrefix(Self.subnetPoolPrefix) { return String(id.dropFirst(Self.subnetPoolPrefix.count)) }
        if let path = await state.subnet(ofPool: id) { return path }
        if let pending = await state.pendingPool(id) { return pending.subnet }
        let listed: ListBody<DockerNetwork> = try await controller.get("/api/v1/docker-networks?host=\(host)")
        for network in listed.items { await state.remember(network) }
        return listed.items.first { $0.poolID == id }?.subnet
    }

    func subnet(_ path: String) async throws -> Subnet {
        if let subnet = await state.subnet(path) { return subnet }
        try Names.split(path, kind: .subnet, field: PluginProtocol.subnetOption)
        let subnet: Subnet = try await controller.get("/api/v1/subnets/\(path)")
        await state.remember(subnet)
        return subnet
    }

    // MARK: Networks

    func createNetwork(_ request: CreateNetworkRequest) async throws -> Empty {
        guard let path = request.generic[PluginProtocol.subnetOption] else {
            throw TrellisError.invalid("name the subnet: docker network create -d trellis --ipam-driver trellis"
                                       + " -o trellis.subnet=ENTERPRISE/DOMAIN/ZONE/SUBNET NAME",
                                       field: PluginProtocol.subnetOption)
        }
        guard (request.IPv6Data ?? []).isEmpty else { throw TrellisError.invalid("IPv6 is not supported", field: "--ipv6") }
        guard let data = request.IPv4Data?.first, let poolText = data.Pool, let pool = await state.takePending(pool: poolText) else {
            throw TrellisError.invalid("the network's addresses must come from Trellis: add --ipam-driver trellis", field: "--ipam-driver")
        }
        let subnet = try await subnet(path)
        if let named = pool.subnet, named != path {
            throw TrellisError.invalid("--ipam-opt trellis.subnet=\(named) and -o trellis.subnet=\(path) differ",
                                       field: PluginProtocol.subnetOption)
        }
        if let requested = pool.requested, requested != subnet.cidr {
            throw TrellisError.invalid("--subnet \(requested) does not agree with \(path), which is \(subnet.cidr)", field: "--subnet")
        }
        if let gateway = data.Gateway.flatMap({ $0.split(separator: "/").first }).map(String.init),
           gateway != "0.0.0.0", gateway != subnet.gateway.description {
            throw TrellisError.invalid("--gateway \(gateway) is not the gateway of \(path) (\(subnet.gateway))", field: "--gateway")
        }
        let network: DockerNetwork = try await controller.post("/api/v1/docker-networks", DockerNetworkCreate(
            host: host, networkID: request.NetworkID, subnet: path, poolID: pool.id))
        await state.remember(network)
        logger.info("Docker network \(request.NetworkID.prefix(12)) stands for \(path)")
        return Empty()
    }

    func deleteNetwork(_ id: String) async throws -> Empty {
        await state.forget(network: id)
        do {
            try await controller.delete("/api/v1/docker-networks/\(DockerNetwork.path(host: host, networkID: id))")
        } catch let error as TrellisError where error.code == .notFound {}
        return Empty()
    }

    func network(_ id: String) async throws -> DockerNetwork {
        if let network = await state.network(id) { return network }
        let network: DockerNetwork = try await controller.get("/api/v1/docker-networks/\(DockerNetwork.path(host: host, networkID: id))")
        await state.remember(network)
        return network
    }

    // MARK: Endpoints

    /// Ties the endpoint that the IPAM request made to Docker's endpoint, and gives Docker its MAC.
    func createEndpoint(_ request: CreateEndpointRequest) async throws -> CreateEndpointResponse {
        let network = try await network(request.NetworkID)
        guard let text = request.Interface?.Address, let address = try? IPv4Address.parse(String(text.split(separator: "/").first ?? ""),
                                                                                          field: "Address")
        else { throw TrellisError.invalid("Docker gave no address: the network's IPAM driver must be trellis", field: "Address") }
        guard let endpoint = try await allocated(address, network: network) else {
            throw TrellisError.notFound("no Trellis endpoint holds \(address) in \(network.subnet)", field: "Address")
        }
        let docker = request.Interface?.MacAddress ?? ""
        if !docker.isEmpty, docker.lowercased() != endpoint.mac.description {
            throw TrellisError.invalid("Trellis assigns MAC addresses: leave out --mac-address", field: "MacAddress")
        }
        if var record = records.entry(endpoint.id) {
            record.dockerEndpoint = request.EndpointID
            try records.put([record])
        }
        await state.remember(endpoint, as: request.EndpointID)
        return CreateEndpointResponse(Interface: docker.isEmpty ? .init(MacAddress: endpoint.mac.description) : nil)
    }

    /// The endpoint that RequestAddress made for `address`: remembered, or found at the controller.
    func allocated(_ address: IPv4Address, network: DockerNetwork) async throws -> Endpoint? {
        if let endpoint = await state.allocation(network.poolID, address) { return endpoint }
        guard let record = records.record(pool: network.poolID, address: address) else { return nil }
        return try await controller.get("/api/v1/endpoints/\(record.endpointID)")
    }

    func endpoint(_ id: String) async throws -> Endpoint {
        if let endpoint = await state.endpoint(id) { return endpoint }
        guard let record = records.record(dockerEndpoint: id) else {
            throw TrellisError.notFound("no Trellis endpoint for Docker endpoint \(id.prefix(12))", field: "EndpointID")
        }
        let endpoint: Endpoint = try await controller.get("/api/v1/endpoints/\(record.endpointID)")
        await state.remember(endpoint, as: id)
        return endpoint
    }

    func operInfo(_ request: EndpointRequest) async throws -> OperInfoResponse {
        let endpoint = try await endpoint(request.EndpointID)
        return OperInfoResponse(Value: ["trellis.endpoint": endpoint.path, "trellis.mac": endpoint.mac.description])
    }

    func join(_ request: JoinRequest) async throws -> JoinResponse {
        let endpoint = try await endpoint(request.EndpointID)
        let subnet = try await subnet(endpoint.subnet)
        let handover = "trh" + String(endpoint.id, radix: 36)
        let port = try await agent.plugForHandover(endpoint, handover: handover)
        // Recorded while the engine moves the interface in: the port works without the record, and
        // the engine's container starts that much sooner.
        let ids = [Self.endpointKey: request.EndpointID, "docker-network": request.NetworkID]
        agent.recordInBackground(endpoint, agent.pluggedUpdate(endpoint, port: port, externalIds: ids))
        return JoinResponse(InterfaceName: .init(SrcName: handover, DstPrefix: "eth"), Gateway: subnet.gateway.description)
    }

    func leave(_ request: EndpointRequest) async throws -> Empty {
        try await agent.unplug(try await endpoint(request.EndpointID))
        return Empty()
    }

    func deleteEndpoint(_ request: EndpointRequest) async throws -> Empty {
        guard let endpoint = try? await endpoint(request.EndpointID) else { return Empty() }
        try await agent.unplug(endpoint)
        await state.forget(endpoint: request.EndpointID)
        return Empty()
    }

    /// Removes what the driver made for containers the engine no longer knows (it could not tell a
    /// stopped agent): endpoints older than a minute whose Docker endpoint is on no trellis network,
    /// and the records of endpoints that `listed` (this host's) no longer has.
    static func removeStaleEndpoints(agent: Agent, engine: DockerEngine, records: DriverRecords, listed: [Endpoint],
                                     logger: Logger) async throws {
        let byID = Dictionary(listed.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        try records.remove(records.entries.keys.filter { byID[$0] == nil })
        let made = records.entries.values.filter { byID[$0.endpointID].map { $0.createdAt < Date().addingTimeInterval(-60) } ?? false }
        guard !made.isEmpty else { return }
        let known = Set(try await engine.networks(driver: name).flatMap { ($0.Containers ?? [:]).values.compactMap(\.EndpointID) })
        for record in made where !known.contains(record.dockerEndpoint ?? "") {
            let endpoint = byID[record.endpointID]
            logger.info("removing \(endpoint?.path ?? "endpoint \(record.endpointID)"): its Docker endpoint is gone")
            try await remove(record, endpoint: endpoint, agent: agent, records: records)
        }
    }
}
