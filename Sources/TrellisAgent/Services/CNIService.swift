import Foundation
import TrellisCNI
import TrellisModel
import TrellisNetlink
import TrellisNetlinkWire

/// What the CNI plugin asks of the agent: ADD is the agent's attach, owned by the container id and
/// interface name; DEL, CHECK and GC find endpoints by that owner among this host's. The plugin keeps
/// nothing, so DELs it could not deliver wait in `pendingDirectory` and are carried out from there.
extension Agent {
    /// Where the plugin leaves DELs while this agent is away.
    var cniPendingDirectory: String { TrellisCNI.cniPendingDirectory(agentSocket: configuration.socketPath) }

    /// ADD: the endpoint, its veth inside the runtime's namespace, and what the result reports.
    func cniAdd(_ request: CNIAddRequest) async throws -> CNIAttachmentResult {
        let attachment = CNIAttachment(containerID: request.containerID, ifname: request.ifname)
        try await carryOutPendingDeletes()
        let endpoint = try await attach(AttachRequest(
            subnet: request.subnet, name: request.name, ip: request.ip, ifname: request.ifname, profile: request.profile,
            netns: request.netns, user: request.user, owner: attachment.owner,
            externalIds: ["cni-network": request.network, "cni-container": request.containerID],
            egressRate: Self.rateLimit(request.bandwidth?.egressRate, burstBits: request.bandwidth?.egressBurst),
            ingressRate: Self.rateLimit(request.bandwidth?.ingressRate, burstBits: request.bandwidth?.ingressBurst)),
            recordInBackground: true)
        let (_, subnet) = try await placement(of: endpoint)
        let parts = endpoint.subnet.split(separator: "/")
        return CNIAttachmentResult(endpoint: endpoint.path, ip: endpoint.ip.description, prefixLength: subnet.cidr.prefixLength,
                                   gateway: subnet.gateway.description, mac: endpoint.mac.description,
                                   nameserver: DNSService.address.description, search: ["\(parts[3]).\(parts[1])", String(parts[1])])
    }

    /// A direction of the bandwidth capability as a port's rate limit: none without a rate; the burst is
    /// in bits there and in bytes here. Absent, 0, or more than a limit may hold, it is Trellis's default
    /// burst: Kubernetes sends 2^31-1 bits to mean "no particular burst", not a 268 MB bucket.
    static func rateLimit(_ bitsPerSecond: Int?, burstBits: Int?) -> RateLimit? {
        guard let bitsPerSecond, bitsPerSecond > 0 else { return nil }
        let bytes = (burstBits ?? 0) / 8
        return RateLimit(bitsPerSecond: bitsPerSecond,
                         burstBytes: bytes > 0 && bytes <= RateLimit.largestBurst(bitsPerSecond: bitsPerSecond) ? bytes : nil)
    }

    /// This host's endpoints that the CNI plugin made for `network` (all networks when nil).
    func cniEndpoints(network: String?) async throws -> [Endpoint] {
        let listed: ListBody<Endpoint> = try await client.get("/api/v1/endpoints?host=\(configuration.host)")
        return listed.items.filter { endpoint in
            endpoint.owner?.hasPrefix("cni:") == true && (network == nil || endpoint.externalIds["cni-network"] == network)
        }
    }

    /// The endpoint of one attachment (a container id and interface name) of `request`'s network.
    func cniEndpoint(_ request: CNIAttachmentRequest) async throws -> Endpoint? {
        let owner = CNIAttachment(containerID: request.containerID, ifname: request.ifname).owner
        return try await cniEndpoints(network: request.network).first { $0.owner == owner }
    }

    /// DEL: removes the attachment's endpoint if there is one; nothing there is success too (DEL after
    /// a failed ADD, or twice).
    func cniDelete(_ request: CNIAttachmentRequest) async throws {
        if let endpoint = try await cniEndpoint(request) { try await detach(endpoint) }
    }

    /// CHECK: the endpoint exists and the interface in the namespace still has its MAC, address and route.
    func cniCheck(_ request: CNIAttachmentRequest) async throws {
        guard let endpoint = try await cniEndpoint(request) else {
            throw TrellisError.notFound("no Trellis endpoint for container \(request.containerID) interface \(request.ifname)")
        }
        let path = request.netns ?? boundNamespace(of: endpoint.id) ?? ""
        let (_, subnet) = try await placement(of: endpoint)
        let ifname = request.ifname
        // The namespace's links, addresses and routes are read on a thread of its own, not the cooperative pool.
        try await onOwnThread {
            guard let namespace = try? NetworkNamespace(path: path) else {
                throw TrellisError.notFound("the network namespace \(path) is gone")
            }
            let inside = try RouteNetlink(in: namespace)
            guard let link = try inside.link(named: ifname) else {
                throw TrellisError.notFound("interface \(ifname) is missing in \(path)")
            }
            guard link.mac == endpoint.mac else {
                throw TrellisError.conflict("interface \(ifname) has MAC \(link.mac.map(\.description) ?? "none"), not \(endpoint.mac)")
            }
            guard try inside.addresses().contains(where: { $0.index == link.index && $0.address == endpoint.ip }) else {
                throw TrellisError.conflict("interface \(ifname) lacks its address \(endpoint.ip)/\(subnet.cidr.prefixLength)")
            }
            guard try inside.routes().contains(where: { $0.destination == nil && $0.gateway == subnet.gateway }) else {
                throw TrellisError.conflict("\(path) has no default route via \(subnet.gateway)")
            }
        }
    }

    /// GC: removes the network's endpoints whose attachment is not among the runtime's valid ones.
    func cniCollect(_ request: CNIGarbageRequest) async throws -> CNIGarbageReply {
        let valid = Set(request.valid.map(\.owner))
        var removed: [String] = []
        for endpoint in try await cniEndpoints(network: request.network) where !valid.contains(endpoint.owner ?? "") {
            try await detach(endpoint)
            removed.append(endpoint.path)
        }
        return CNIGarbageReply(removed: removed)
    }

    /// Carries out the DELs the plugin recorded while this agent was away, and removes the CNI endpoints
    /// whose network namespace is gone (most runtimes never send GC): no address stays taken by a
    /// container that no longer exists.
    func carryOutPendingDeletes() async throws {
        let directory = cniPendingDirectory
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory))?.filter { $0.hasSuffix(".json") } ?? []
        for name in names.sorted() {
            let path = "\(directory)/\(name)"
            guard let data = FileManager.default.contents(atPath: path),
                  let request = try? JSONCoding.decoder().decode(CNIAttachmentRequest.self, from: data) else {
                try? FileManager.default.removeItem(atPath: path)
                continue
            }
            try await cniDelete(request)
            try? FileManager.default.removeItem(atPath: path)
            logger.info("carried out the DEL of container \(request.containerID) (\(request.ifname)) recorded while the agent was away")
        }
    }

    /// Removes CNI endpoints of this host whose namespace no longer exists (their runtime is gone).
    func removeCNIEndpointsWithoutNamespace() async {
        guard let endpoints = try? await cniEndpoints(network: nil) else { return }
        for endpoint in endpoints {
            guard let path = boundNamespace(of: endpoint.id), !FileManager.default.fileExists(atPath: path) else { continue }
            logger.info("removing \(endpoint.path): its network namespace \(path) is gone")
            try? await detach(endpoint)
        }
    }

    /// While connected: pending DELs every second (a directory listing when there are none), and
    /// endpoints left by vanished containers on every resync interval.
    func sweepCNI() async {
        let clock = ContinuousClock()
        var lastNamespaceSweep: ContinuousClock.Instant?
        while !Task.isCancelled {
            if await state.connected {
                do { try await carryOutPendingDeletes() } catch { logger.warning("pending CNI deletes wait for the next sweep: \(error)") }
                if lastNamespaceSweep.map({ $0.duration(to: clock.now) >= configuration.resyncInterval }) ?? true {
                    await removeCNIEndpointsWithoutNamespace()
                    lastNamespaceSweep = clock.now
                }
            }
            try? await Task.sleep(for: .seconds(1))
        }
    }
}
