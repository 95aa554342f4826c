import Foundation
import Hummingbird
import Logging
import ServiceLifecycle
import TrellisAgent
import TrellisClient
import TrellisModel

/// Top-down: Docker's remote network driver and remote IPAM driver, served by the agent on the
/// engine's plugin socket. A Docker network stands for a Trellis subnet (`-o trellis.subnet=…`);
/// its addresses come from the controller's IPAM, so engines on different hosts never hand out the
/// same one; a container's port is a veth on the subnet's bridge whose other end the engine moves
/// into the container. The network ↔ subnet mapping is kept by the controller, and every call to
/// the controller has a deadline, so that the engine never waits long on Trellis.
public final class RemoteDriver: Service {
    /// The driver's name for `docker network create -d`.
    public static let name = "trellis"
    /// The external id that shows an operator which Docker endpoint an endpoint stands for (the driver
    /// itself finds it in its records).
    public static let endpointKey = "docker-endpoint"
    static let subnetPoolPrefix = "trellis:"
    static let pendingPoolPrefix = "pending:"

    let agent: Agent
    let socketPath: String
    let logger: Logger
    let state = DriverState()
    let records: DriverRecords
    let deadline: Duration

    public init(agent: Agent, socketPath: String, records: DriverRecords, deadline: Duration = .seconds(10),
                logger: Logger = Logger(label: "trellis.docker.driver")) {
        self.agent = agent
        self.socketPath = socketPath
        self.records = records
        self.deadline = deadline
        self.logger = logger
    }

    var controller: ControllerClient { agent.client }
    var host: String { agent.configuration.host }

    /// Serves the plugin socket until the service group shuts down.
    public func run() async throws {
        try FileManager.default.createDirectory(atPath: (socketPath as NSString).deletingLastPathComponent,
                                                withIntermediateDirectories: true)
        let router = Router()
        router.post("/Plugin.Activate") { _, _ in Self.reply(ActivateResponse(Implements: ["NetworkDriver", "IpamDriver"])) }
        // The data scope is local: Docker stores a global-scope network only in a swarm's store, and
        // refuses to make one elsewhere. Connectivity is global: a network spans every host.
        network(router, "GetCapabilities", Empty.self) { _ in CapabilitiesResponse(Scope: "local", ConnectivityScope: "global") }
        network(router, "CreateNetwork", CreateNetworkRequest.self) { try await self.createNetwork($0) }
        network(router, "DeleteNetwork", NetworkRequest.self) { try await self.deleteNetwork($0.NetworkID) }
        network(router, "CreateEndpoint", CreateEndpointRequest.self) { try await self.createEndpoint($0) }
        network(router, "EndpointOperInfo", EndpointRequest.self) { try await self.operInfo($0) }
        network(router, "DeleteEndpoint", EndpointRequest.self) { try await self.deleteEndpoint($0) }
        network(router, "Join", JoinRequest.self) { try await self.join($0) }
        network(router, "Leave", EndpointRequest.self) { try await self.leave($0) }
        for method in ["DiscoverNew", "DiscoverDelete", "ProgramExternalConnectivity", "RevokeExternalConnectivity", "AllocateNetwork",
                       "FreeNetwork"] {
            network(router, method, Empty.self) { _ in Empty() }
        }
        ipam(router, "GetCapabilities", Empty.self) { _ in IPAMCapabilitiesResponse(RequiresMACAddress: false,
                                                                                    RequiresRequestReplay: false) }
        ipam(router, "GetDefaultAddressSpaces", Empty.self) { _ in
            AddressSpacesResponse(LocalDefaultAddressSpace: "trellis", GlobalDefaultAddressSpace: "trellis")
        }
        ipam(router, "RequestPool", RequestPoolRequest.self) { try await self.requestPool($0) }
        ipam(router, "ReleasePool", PoolRequest.self) { await self.state.forget(pool: $0.PoolID); return Empty() }
        ipam(router, "RequestAddress", RequestAddressRequest.self) { try await self.requestAddress($0) }
        ipam(router, "ReleaseAddress", ReleaseAddressRequest.self) { try await self.releaseAddress($0) }
        for method in ["DiscoverNew", "DiscoverDelete"] {
            ipam(router, method, Empty.self) { _ in Empty() }
        }
        let access = agent.configuration.socketAccess, path = socketPath
        let app = Application(router: router,
                              configuration: .init(address: .unixDomainSocket(path: path), serverName: "trellis-docker-plugin"),
                              onServerRunning: { [logger] _ in access.restrict(path, logger: logger) }, logger: logger)
        try await app.run()
    }

    // MARK: Plumbing

    private func network<Body: Decodable & Sendable>(_ router: Router<BasicRequestContext>, _ method: String, _ type: Body.Type,
                                                     _ handle: @escaping @Sendable (Body) async throws -> any Encodable & Sendable) {
        route(router, "/NetworkDriver.\(method)", type, handle) { NetworkError(Err: $0) }
    }

    private func ipam<Body: Decodable & Sendable>(_ router: Router<BasicRequestContext>, _ method: String, _ type: Body.Type,
                                                  _ handle: @escaping @Sendable (Body) async throws -> any Encodable & Sendable) {
        route(router, "/IpamDriver.\(method)", type, handle) { IPAMError(Error: $0) }
    }

    /// A POST handler: the body (Docker sends no Content-Type, and an empty body when it replays a
    /// call) decoded as `Body`, the answer encoded as JSON, and any failure answered in the driver's
    /// error shape with status 200, which the engine reports as the call's error.
    private func route<Body: Decodable & Sendable>(_ router: Router<BasicRequestContext>, _ path: String, _ type: Body.Type,
                                                   _ handle: @escaping @Sendable (Body) async throws -> any Encodable & Sendable,
                                                   failure: @escaping @Sendable (String) -> any Encodable & Sendable) {
        router.post(RouterPath(path)) { request, _ -> Response in
            let started = ContinuousClock.now
            do {
                var data = Data(try await request.collectedBody().readableBytesView)
                if data.isEmpty { data = Data("{}".utf8) }
                let body: Body
                do {
                    body = try JSONDecoder().decode(Body.self, from: data)
                } catch let error as DecodingError {
                    throw JSONCoding.describe(error)
                }
                let answer = try await self.withDeadline { try await handle(body) }
                self.logger.debug("\(path) took \(ContinuousClock.now - started)")
                return Self.reply(answer)
            } catch {
                let message = (error as? TrellisError)?.message ?? "\(error)"
                self.logger.error("\(path) failed after \(ContinuousClock.now - started): \(message)")
                return Self.reply(failure(message))
            }
        }
    }

    static func reply(_ value: any Encodable) -> Response {
        let data = (try? JSONEncoder().encode(value)) ?? Data("{}".utf8)
        return Response(status: .ok, headers: [.contentType: PluginProtocol.contentType], body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    /// Runs `body`, or fails once the driver's deadline has passed.
    private func withDeadline<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) async throws -> T {
        let deadline = self.deadline
        return try await withThrowingTaskGroup(of: T.self) { group in
            group.addTask { try await body() }
            group.addTask {
                try await Task.sleep(for: deadline)
                throw TrellisError(.unavailable, "Trellis did not answer within \(deadline) (is the controller reachable?)")
            }
            defer { group.cancelAll() }
            return try await group.next()!
        }
    }
}

/// What the driver remembers between calls; everything in it can be found again at the controller.
actor DriverState {
    struct PendingPool {
        var id: String
        var pool: String
        var requested: IPv4Network?
        var subnet: String?
    }

    private var pending: [PendingPool] = []
    private var poolSubnets: [String: String] = [:]
    private var networks: [String: DockerNetwork] = [:]
    private var subnets: [String: Subnet] = [:]
    private var endpoints: [String: Endpoint] = [:]
    private var allocations: [String: Endpoint] = [:]

    func add(_ pool: PendingPool) { pending.append(pool) }

    /// The oldest pool asked for that answered `pool` and is not yet a network's.
    func takePending(pool: String) -> PendingPool? {
        guard let index = pending.firstIndex(where: { $0.pool == pool }) else { return nil }
        return pending.remove(at: index)
    }

    func forget(pool id: String) {
        pending.removeAll { $0.id == id }
        poolSubnets[id] = nil
    }

    func pendingPool(_ id: String) -> PendingPool? { pending.first { $0.id == id } }
    func subnet(ofPool id: String) -> String? { poolSubnets[id] }
    func remember(_ network: DockerNetwork) {
        networks[network.networkID] = network
        poolSubnets[network.poolID] = network.subnet
    }
    func network(_ id: String) -> DockerNetwork? { networks[id] }
    func forget(network id: String) { networks[id] = nil }
    func remember(_ subnet: Subnet) { subnets[subnet.path] = subnet }
    func subnet(_ path: String) -> Subnet? { subnets[path] }
    func remember(_ endpoint: Endpoint, as id: String) { endpoints[id] = endpoint }
    func endpoint(_ id: String) -> Endpoint? { endpoints[id] }
    func forget(endpoint id: String) { endpoints[id] = nil }
    func remember(allocation endpoint: Endpoint, pool: String) { allocations["\(pool) \(endpoint.ip)"] = endpoint }
    func allocation(_ pool: String, _ address: IPv4Address) -> Endpoint? { allocations["\(pool) \(address)"] }
    func forget(allocation pool: String, _ address: IPv4Address) { allocations["\(pool) \(address)"] = nil }
}
