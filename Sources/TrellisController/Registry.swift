import Foundation
import TrellisModel
import TrellisStore

/// The controller's business rules over the store: validation, tenancy, parent and child checks,
/// IPAM, and the event recorded with every change. Knows nothing of HTTP.
public struct Registry: Sendable {
    public let store: any Store
    let hub: DesiredStateHub
    let telemetry = TelemetryBoard()
    let authenticationGuard = AuthenticationGuard()
    let callers = CallerCache()
    let programs = CompiledPrograms()
    /// Probes waiting for their hosts' agents (`explain/verify`).
    let probes = ProbeDesk()
    /// The heartbeats this controller received; how long a host may stay silent before it is reported down.
    let heartbeats: HeartbeatBook
    public var heartbeatTimeout: TimeInterval { heartbeats.timeout }
    /// Underlay addresses no floating IP pool may take (VTEPs to come, controllers, the underlay's gateways),
    /// besides every registered host's underlay address.
    public let underlayReserved: [IPv4Network]
    /// How often a quiet desired-state watch sends a bookmark.
    public let watchKeepalive: Duration

    public init(store: any Store, heartbeatTimeout: TimeInterval = 15, heartbeatStoreEvery: TimeInterval = 30,
                underlayReserved: [IPv4Network] = [], watchKeepalive: Duration = .seconds(15)) {
        self.store = store
        self.hub = DesiredStateHub(store: store)
        self.heartbeats = HeartbeatBook(timeout: heartbeatTimeout, storeEvery: heartbeatStoreEvery)
        self.underlayReserved = underlayReserved
        self.watchKeepalive = watchKeepalive
        // Changes other controllers made in a shared store reach this one's watchers as its own do, as the store's
        // watch delivers them (in revision order among themselves; not held back behind this controller's writes).
        store.followChanges(madeElsewhere: { [hub, callers] revision, events in
            if Self.changesCallers(events) { callers.invalidate() }
            if !events.isEmpty { await hub.publish(revision: revision, events: events) }
        })
    }

    // MARK: Plumbing

    /// Runs a write transaction for `caller` and tells the watchers what changed, in revision order with this
    /// controller's other writes (`DesiredStateHub.publish(revision:events:inOrderWith:barrier:)`).
    func mutate<T: Sendable>(_ caller: Caller, _ body: @escaping @Sendable (any StoreWriter) throws -> T) async throws -> T {
        let ticket = hub.writeTickets.begin()
        let result: WriteResult<T>
        do {
            result = try await store.write(actor: caller.name, body)
        } catch {
            await hub.abandonWrite(ticket)
            throw error
        }
        let barrier = hub.writeTickets.barrier()
        if Self.changesCallers(result.events) { callers.invalidate() }
        await hub.publish(revision: result.revision, events: result.events, inOrderWith: ticket, barrier: barrier)
        return result.value
    }

    /// Whether `events` change who a token stands for (users and hosts), which the caller cache must forget.
    private static func changesCallers(_ events: [Event]) -> Bool { events.contains { $0.kind == .user || $0.kind == .host } }

    func get<R: Resource>(_ type: R.Type, _ path: String, _ caller: Caller) async throws -> R {
        try caller.visible(try await store.read { try $0.get(R.self, path) }, path)
    }

    /// Objects of a kind below `prefix` that the caller may see, with the revision they were read at.
    func list<R: Resource>(_ type: R.Type, under prefix: String?, _ caller: Caller) async throws -> ListBody<R> {
        let scope = prefix ?? (caller.admin ? nil : caller.enterprise ?? "")
        let (items, revision) = try await store.read { (try $0.list(R.self, under: scope), try $0.currentRevision()) }
        return ListBody(items: items.filter { caller.sees($0.enterprise) }, revision: revision)
    }

    /// Deletes an object after `check` has found nothing that still depends on it.
    func delete<R: Resource>(_ type: R.Type, _ path: String, _ caller: Caller,
                             check: @escaping @Sendable (any StoreWriter, R) throws -> Void = { _, _ in }) async throws {
        try await mutate(caller) { tx in
            let object = try caller.visible(try tx.get(R.self, path), path)
            try check(tx, object)
            try tx.delete(R.self, path)
            try tx.recordChange(.deleted, object)
        }
    }

    /// Updates an object in place with `change`.
    func update<R: Resource>(_ type: R.Type, _ path: String, _ caller: Caller,
                             change: @escaping @Sendable (any StoreWriter, inout R) throws -> Void) async throws -> R {
        try await mutate(caller) { tx in
            var object = try caller.visible(try tx.get(R.self, path), path)
            try change(tx, &object)
            let written = try tx.update(object)
            try tx.recordChange(.updated, written)
            return written
        }
    }

    /// Inserts a new object made by `make` once its parent is found.
    func create<R: Resource>(_ caller: Caller, _ make: @escaping @Sendable (any StoreWriter) throws -> R) async throws -> R {
        try await mutate(caller) { tx in
            let object = try make(tx)
            guard try tx.get(R.self, object.path) == nil else {
                throw TrellisError.conflict("\(R.kind.rawValue) '\(object.path)' already exists", field: "name")
            }
            let written = try tx.insert(object)
            try tx.recordChange(.created, written)
            return written
        }
    }

    /// Refuses a delete while objects of `kind` remain below `path`.
    static func requireEmpty(_ tx: any StoreReader, _ path: String, of kind: ResourceKind, what: ResourceKind) throws {
        let count = try tx.count(kind, under: path)
        guard count == 0 else {
            throw TrellisError.conflict("\(what.rawValue) '\(path)' still has \(count) \(kind.collection); delete them first")
        }
    }

    static func checkDescription(_ description: String?) throws {
        if let description, description.utf8.count > 1024 {
            throw TrellisError.invalid("description: longer than 1024 bytes", field: "description")
        }
    }

    // MARK: Enterprises, domains, zones

    public func updateDescription<R: DescribedResource>(_ type: R.Type, _ path: String, _ body: DescriptionUpdate,
                                                        _ caller: Caller) async throws -> R {
        try Self.checkDescription(body.description)
        return try await update(R.self, path, caller) { _, object in object.description = body.description }
    }

    public func createEnterprise(_ body: EnterpriseCreate, _ caller: Caller) async throws -> Enterprise {
        try caller.requireAdmin("create enterprises")
        try Names.validate(body.name)
        try Self.checkDescription(body.description)
        return try await create(caller) { _ in Enterprise(name: body.name, description: body.description) }
    }

    public func enterprises(_ caller: Caller) async throws -> ListBody<Enterprise> {
        let (items, revision) = try await store.read { (try $0.list(Enterprise.self, under: nil), try $0.currentRevision()) }
        return ListBody(items: items.filter { caller.sees($0.name) }, revision: revision)
    }

    public func deleteEnterprise(_ name: String, _ caller: Caller) async throws {
        try caller.requireAdmin("delete enterprises")
        try await delete(Enterprise.self, name, caller) { tx, _ in
            try Self.requireEmpty(tx, name, of: .domain, what: .enterprise)
            try Self.requireEmpty(tx, name, of: .profile, what: .enterprise)
            let users = try tx.list(User.self, under: nil).filter { $0.enterprise == name }
            guard users.isEmpty else {
                throw TrellisError.conflict("enterprise '\(name)' still has \(users.count) users; delete them first")
            }
        }
    }

    public func createDomain(_ body: DomainCreate, _ caller: Caller) async throws -> Domain {
        try Names.validate(body.enterprise, field: "enterprise")
        try Names.validate(body.name)
        try Self.checkDescription(body.description)
        return try await create(caller) { tx in
            let enterprise = try caller.visible(try tx.get(Enterprise.self, body.enterprise), body.enterprise, field: "enterprise")
            let path = enterprise.name + "/" + body.name
            if try tx.get(Domain.self, path) != nil { throw TrellisError.conflict("domain '\(path)' already exists", field: "name") }
            return Domain(path: path, name: body.name, enterprise: enterprise.name, id: try tx.nextID("domain"),
                          description: body.description, revision: 0, createdAt: Date())
        }
    }

    public func deleteDomain(_ path: String, _ caller: Caller) async throws {
        try await delete(Domain.self, path, caller) { tx, _ in
            try Self.requireEmpty(tx, path, of: .zone, what: .domain)
            try Self.requireEmpty(tx, path, of: .policy, what: .domain)
        }
    }

    public func createZone(_ body: ZoneCreate, _ caller: Caller) async throws -> Zone {
        try Names.split(body.domain, kind: .domain, field: "domain")
        try Names.validate(body.name)
        try Self.checkDescription(body.description)
        return try await create(caller) { tx in
            let domain = try caller.visible(try tx.get(Domain.self, body.domain), body.domain, field: "domain")
            return Zone(path: domain.path + "/" + body.name, name: body.name, domain: domain.path, enterprise: domain.enterprise,
                        description: body.description, revision: 0, createdAt: Date())
        }
    }

    public func deleteZone(_ path: String, _ caller: Caller) async throws {
        try await delete(Zone.self, path, caller) { tx, _ in try Self.requireEmpty(tx, path, of: .subnet, what: .zone) }
    }

    // MARK: Subnets

    public func createSubnet(_ body: SubnetCreate, _ caller: Caller) async throws -> Subnet {
        try Names.split(body.zone, kind: .zone, field: "zone")
        try Names.validate(body.name)
        try Self.checkDescription(body.description)
        let cidr = try IPv4Network.parse(body.cidr, field: "cidr")
        let gateway = try body.gateway.map { try IPv4Address.parse($0, field: "gateway") } ?? AddressPool.defaultGateway(of: cidr)
        let reserved = try (body.reserved ?? []).enumerated().map { try AddressRange.parse($1, field: "reserved[\($0)]") }
        guard reserved.count <= 256 else { throw TrellisError.invalid("reserved: at most 256 ranges", field: "reserved") }
        _ = try AddressPool(network: cidr, gateway: gateway, reserved: reserved)
        return try await create(caller) { tx in
            let zone = try caller.visible(try tx.get(Zone.self, body.zone), body.zone, field: "zone")
            let path = zone.path + "/" + body.name
            if try tx.get(Subnet.self, path) != nil { throw TrellisError.conflict("subnet '\(path)' already exists", field: "name") }
            if let clash = try tx.list(Subnet.self, under: zone.domain).first(where: { $0.cidr.overlaps(cidr) }) {
                throw TrellisError.conflict("cidr: \(cidr) overlaps \(clash.cidr) of subnet \(clash.path) in the same domain",
                                            field: "cidr")
            }
            let vni = try tx.allocateVNI(owner: path)
            return Subnet(path: path, name: body.name, zone: zone.path, domain: zone.domain, enterprise: zone.enterprise,
                          cidr: cidr, gateway: gateway, gatewayMAC: .gateway(vni: vni), vni: vni, dhcp: body.dhcp ?? false,
                          reserved: reserved, description: body.description, revision: 0, createdAt: Date())
        }
    }

    public func updateSubnet(_ path: String, _ body: SubnetUpdate, _ caller: Caller) async throws -> Subnet {
        try Self.checkDescription(body.description)
        return try await update(Subnet.self, path, caller) { _, subnet in
            if let dhcp = body.dhcp { subnet.dhcp = dhcp }
            if let description = body.description { subnet.description = description }
        }
    }

    public func deleteSubnet(_ path: String, _ caller: Caller) async throws {
        try await delete(Subnet.self, path, caller) { tx, subnet in
            try Self.requireEmpty(tx, path, of: .endpoint, what: .subnet)
            try tx.release("vni", String(subnet.vni))
            try tx.setCounter("ipam:" + path, 0)
        }
    }

    /// How many addresses of a subnet are in use and how many there are in all.
    public func subnetUsage(_ path: String, _ caller: Caller) async throws -> (used: Int, capacity: Int) {
        let subnet = try await get(Subnet.self, path, caller)
        let used = try await store.read { try $0.claimCount("ip:" + path) }
        return (used, try subnet.pool().capacity)
    }

    // MARK: Endpoints

    static func checkExternalIds(_ ids: [String: String]?, allowEmptyValues: Bool) throws {
        guard let ids else { return }
        guard ids.count <= 32 else { throw TrellisError.invalid("externalIds: at most 32 keys", field: "externalIds") }
        for (key, value) in ids {
            guard !key.isEmpty, key.utf8.count <= 64 else {
                throw TrellisError.invalid("externalIds: keys must be 1 to 64 bytes", field: "externalIds")
            }
            guard value.utf8.count <= 256, allowEmptyValues || !value.isEmpty else {
                throw TrellisError.invalid("externalIds.\(key): values must be 1 to 256 bytes", field: "externalIds.\(key)")
            }
        }
    }

    static func checkShort(_ value: String?, field: String) throws {
        if let value, value.utf8.count > 256 { throw TrellisError.invalid("\(field): longer than 256 bytes", field: field) }
    }

    /// Finds the profile an endpoint of `enterprise` names, in that enterprise only.
    static func profile(_ path: String, for enterprise: String?, _ tx: any StoreReader) throws -> String {
        try Names.split(path, kind: .profile, field: "profile")
        guard Names.prefix(path, 1) == enterprise, try tx.get(PortProfile.self, path) != nil else {
            throw TrellisError.notFound("profile: no profile '\(path)' in enterprise \(enterprise ?? "")", field: "profile")
        }
        return path
    }

    public func createEndpoint(_ body: EndpointCreate, _ caller: Caller) async throws -> Endpoint {
        try Names.split(body.subnet, kind: .subnet, field: "subnet")
        try Names.validate(body.name)
        let requested = try body.ip.map { try IPv4Address.parse($0, field: "ip") }
        if let host = body.host { try Names.validate(host, field: "host") }
        try Self.checkShort(body.owner, field: "owner")
        try Self.checkExternalIds(body.externalIds, allowEmptyValues: false)
        if let hostname = body.hostname { try Names.validate(hostname, field: "hostname") }
        try body.egressRate?.validate(field: "egressRate")
        try body.ingressRate?.validate(field: "ingressRate")
        return try await create(caller) { tx in
            if let own = caller.host, body.host != own {
                throw Caller.hostForbidden(own, "create endpoints placed on \(body.host.map { "host '\($0)'" } ?? "no host")")
            }
            let subnet = try caller.visible(try tx.get(Subnet.self, body.subnet), body.subnet, field: "subnet")
            let path = subnet.path + "/" + body.name
            if try tx.get(Endpoint.self, path) != nil { throw TrellisError.conflict("endpoint '\(path)' already exists", field: "name") }
            if let host = body.host { _ = try tx.require(HostRecord.self, host, field: "host") }
            let profile = try body.profile.map { try Self.profile($0, for: subnet.enterprise, tx) }
            let ip = try tx.allocateAddress(in: subnet, requested: requested, owner: path)
            let id = try tx.nextID("endpoint")
            let mac = try tx.allocateMAC(owner: path, id: id)
            _ = try tx.claim("endpoint-id", String(id), owner: path)
            var endpoint = Endpoint(id: id, path: path, name: body.name, subnet: subnet.path, domain: subnet.domain,
                                    enterprise: subnet.enterprise, kind: body.kind ?? .container, owner: body.owner, host: body.host,
                                    ip: ip, mac: mac, profile: profile, state: .pending, interface: nil,
                                    externalIds: body.externalIds ?? [:], revision: 0, createdAt: Date())
            endpoint.hostname = body.hostname
            endpoint.egressRate = body.egressRate
            endpoint.ingressRate = body.ingressRate
            return endpoint
        }
    }

    /// The path of an endpoint named by its path or by its numeric id. An id of an endpoint the caller
    /// may not see is not found as an id: the path it stands for names another tenant's objects.
    public func endpointPath(_ reference: String, _ caller: Caller, field: String? = nil) async throws -> String {
        guard let id = Int(reference) else { return reference }
        guard let path = try await store.read({ try $0.claimOwner("endpoint-id", String(id)) }),
              caller.sees(Names.prefix(path, 1)) else {
            throw TrellisError.notFound("\(field.map { "\($0): " } ?? "")no endpoint with id \(id)", field: field)
        }
        return path
    }

    public func endpoints(subnet: String?, host: String?, _ caller: Caller) async throws -> ListBody<Endpoint> {
        if let subnet { try Names.split(subnet, kind: .subnet, field: "subnet") }
        try caller.requireListingOwnHost(host, of: .endpoint)
        guard let host else { return try await list(Endpoint.self, under: subnet, caller) }
        try Names.validate(host, field: "host")
        let (items, revision) = try await store.read { (try $0.list(Endpoint.self, boundTo: host), try $0.currentRevision()) }
        return ListBody(items: items.filter { caller.sees($0.enterprise) && (subnet == nil || $0.subnet == subnet) },
                        revision: revision)
    }

    public func updateEndpoint(_ path: String, _ body: EndpointUpdate, _ caller: Caller) async throws -> Endpoint {
        if let host = body.host, !host.isEmpty { try Names.validate(host, field: "host") }
        try Self.checkShort(body.owner, field: "owner")
        try Self.checkShort(body.interface, field: "interface")
        try Self.checkExternalIds(body.externalIds, allowEmptyValues: true)
        if let hostname = body.hostname, !hostname.isEmpty { try Names.validate(hostname, field: "hostname") }
        return try await update(Endpoint.self, path, caller) { tx, endpoint in
            if let hostname = body.hostname { endpoint.hostname = hostname.isEmpty ? nil : hostname }
            if let host = body.host {
                if let own = caller.host, host != own { throw Caller.hostForbidden(own, "move endpoints to other hosts") }
                if !host.isEmpty { _ = try tx.require(HostRecord.self, host, field: "host") }
                endpoint.host = host.isEmpty ? nil : host
            }
            if let profile = body.profile {
                endpoint.profile = profile.isEmpty ? nil : try Self.profile(profile, for: endpoint.enterprise, tx)
            }
            if let state = body.state { endpoint.state = state }
            if let owner = body.owner { endpoint.owner = owner.isEmpty ? nil : owner }
            if let interface = body.interface { endpoint.interface = interface.isEmpty ? nil : interface }
            for (key, value) in body.externalIds ?? [:] { endpoint.externalIds[key] = value.isEmpty ? nil : value }
        }
    }

    /// Deletes an endpoint and releases its address, MAC and id in the same transaction.
    public func deleteEndpoint(_ path: String, _ caller: Caller) async throws {
        try await delete(Endpoint.self, path, caller) { tx, endpoint in
            if let floating = endpoint.floatingIP { try tx.release(Self.floatingClaims, floating.description) }
            try tx.releaseAddresses(of: endpoint.subnet, owner: path)
            try tx.releaseAll("mac", ownedBy: path)
            try tx.release("endpoint-id", String(endpoint.id))
        }
    }

    // MARK: Profiles and policies

    static func checkProfile(rules: [ACLRule], egress: RateLimit?, ingress: RateLimit?) throws {
        guard rules.count <= 10_000 else { throw TrellisError.invalid("rules: at most 10000 rules", field: "rules") }
        for (index, rule) in rules.enumerated() { try rule.validate(field: "rules[\(index)]") }
        try egress?.validate(field: "egressRate")
        try ingress?.validate(field: "ingressRate")
    }

    public func createProfile(_ body: ProfileCreate, _ caller: Caller) async throws -> PortProfile {
        try Names.validate(body.enterprise, field: "enterprise")
        try Names.validate(body.name)
        try Self.checkDescription(body.description)
        try Self.checkProfile(rules: body.rules ?? [], egress: body.egressRate, ingress: body.ingressRate)
        return try await create(caller) { tx in
            let enterprise = try caller.visible(try tx.get(Enterprise.self, body.enterprise), body.enterprise, field: "enterprise")
            return PortProfile(path: enterprise.name + "/" + body.name, name: body.name, enterprise: enterprise.name,
                               rules: body.rules ?? [], egressRate: body.egressRate, ingressRate: body.ingressRate,
                               flowStats: body.flowStats ?? false, description: body.description, revision: 0, createdAt: Date())
        }
    }

    public func replaceProfile(_ path: String, _ body: ProfileUpdate, _ caller: Caller) async throws -> PortProfile {
        try Self.checkDescription(body.description)
        try Self.checkProfile(rules: body.rules, egress: body.egressRate, ingress: body.ingressRate)
        return try await update(PortProfile.self, path, caller) { _, profile in
            profile.rules = body.rules
            profile.egressRate = body.egressRate
            profile.ingressRate = body.ingressRate
            profile.flowStats = body.flowStats
            profile.description = body.description
        }
    }

    public func deleteProfile(_ path: String, _ caller: Caller) async throws {
        try await delete(PortProfile.self, path, caller) { tx, profile in
            let users = try tx.list(Endpoint.self, under: profile.enterprise).filter { $0.profile == path }
            guard users.isEmpty else {
                throw TrellisError.conflict("profile '\(path)' is used by \(users.count) endpoints (\(users[0].path)…);"
                                           + " change them first")
            }
        }
    }

    /// Checks each rule's `from` and `to`: `any`, a CIDR, or a zone or subnet of `domain` that exists.
    static func checkPolicy(rules: [PolicyRule], domain: String, _ tx: any StoreReader) throws {
        guard rules.count <= 10_000 else { throw TrellisError.invalid("rules: at most 10000 rules", field: "rules") }
        for (index, rule) in rules.enumerated() {
            if !rule.ports.isEmpty && !rule.protocol.hasPorts {
                throw TrellisError.invalid("rules[\(index)]: ports need tcp or udp, not \(rule.protocol.rawValue)",
                                           field: "rules[\(index)].ports")
            }
            for (side, value) in [("from", rule.from), ("to", rule.to)] {
                let field = "rules[\(index)].\(side)"
                if value == "any" || IPv4Address(value.split(separator: "/").first ?? "") != nil {
                    if value != "any" { _ = try IPv4Network.parse(value, field: field) }
                    continue
                }
                let depth = value.split(separator: "/", omittingEmptySubsequences: false).count
                guard depth == 3 || depth == 4, Names.prefix(value, 2) == domain else {
                    throw TrellisError.invalid("\(field): '\(value)' is not any, a CIDR, or a zone or subnet of domain \(domain)",
                                               field: field)
                }
                let exists = depth == 3 ? try tx.get(Zone.self, value) != nil : try tx.get(Subnet.self, value) != nil
                guard exists else {
                    throw TrellisError.invalid("\(field): no \(depth == 3 ? "zone" : "subnet") '\(value)'", field: field)
                }
            }
        }
    }

    public func createPolicy(_ body: PolicyCreate, _ caller: Caller) async throws -> NetworkPolicy {
        try Names.split(body.domain, kind: .domain, field: "domain")
        try Names.validate(body.name)
        try Self.checkDescription(body.description)
        return try await create(caller) { tx in
            let domain = try caller.visible(try tx.get(Domain.self, body.domain), body.domain, field: "domain")
            try Self.checkPolicy(rules: body.rules ?? [], domain: domain.path, tx)
            return NetworkPolicy(path: domain.path + "/" + body.name, name: body.name, domain: domain.path,
                                 enterprise: domain.enterprise, rules: body.rules ?? [], description: body.description,
                                 revision: 0, createdAt: Date())
        }
    }

    public func replacePolicy(_ path: String, _ body: PolicyUpdate, _ caller: Caller) async throws -> NetworkPolicy {
        try Self.checkDescription(body.description)
        return try await update(NetworkPolicy.self, path, caller) { tx, policy in
            try Self.checkPolicy(rules: body.rules, domain: policy.domain, tx)
            policy.rules = body.rules
            policy.description = body.description
        }
    }

    // MARK: Users and tokens

    public func createUser(_ body: UserCreate, _ caller: Caller) async throws -> UserWithToken {
        try caller.requireAdmin("create users")
        try Names.validate(body.name)
        let admin = body.admin ?? false
        guard admin != (body.enterprise != nil) else {
            throw TrellisError.invalid("enterprise: a user is either an admin or a member of one enterprise", field: "enterprise")
        }
        let token = APIToken.generate()
        let user = try await create(caller) { tx in
            if let enterprise = body.enterprise {
                try Names.validate(enterprise, field: "enterprise")
                _ = try tx.require(Enterprise.self, enterprise, field: "enterprise")
            }
            guard try tx.claim("token", SHA256.hex(token), owner: body.name) else {
                throw TrellisError(.internalError, "token collision; try again")
            }
            return User(name: body.name, enterprise: body.enterprise, admin: admin, revision: 0, createdAt: Date())
        }
        return UserWithToken(user: user, token: token)
    }

    /// Replaces a user's token; the old one stops working at once.
    public func rotateToken(_ name: String, _ caller: Caller) async throws -> UserWithToken {
        guard caller.admin || caller.name == name else { throw TrellisError.forbidden("only an admin may rotate another user's token") }
        let token = APIToken.generate()
        let user = try await update(User.self, name, .system) { tx, user in
            try tx.releaseAll("token", ownedBy: name)
            _ = try tx.claim("token", SHA256.hex(token), owner: name)
        }
        return UserWithToken(user: user, token: token)
    }

    public func deleteUser(_ name: String, _ caller: Caller) async throws {
        try caller.requireAdmin("delete users")
        guard name != caller.name else { throw TrellisError.conflict("you cannot delete yourself") }
        try await delete(User.self, name, caller) { tx, _ in try tx.releaseAll("token", ownedBy: name) }
    }

    /// The caller a bearer token stands for.
    public func authenticate(token: String) async throws -> Caller {
        let unauthorized = TrellisError(.unauthorized, "the token is not valid")
        guard token.utf8.count <= 256 else { throw unauthorized }
        let hash = SHA256.hex(token)
        let (cached, generation) = callers.lookup(hash)
        if let cached { return cached }
        let caller: Caller
        if token.hasPrefix(APIToken.hostPrefix) {
            caller = try await authenticateHost(token: token, digest: hash)
        } else {
            let user = try await store.read { tx -> User? in
                guard let name = try tx.claimOwner("token", hash) else { return nil }
                return try tx.get(User.self, name)
            }
            guard let user else { throw unauthorized }
            caller = Caller(name: user.name, enterprise: user.enterprise, admin: user.admin)
        }
        callers.store(caller, for: hash, generation: generation)
        return caller
    }

    /// The caller an admin becomes when it acts for `user` (an agent attaching a container for its
    /// owner): that user's rights, and both names in the event log.
    /// A host's credential acting for a user gets that user's enterprise and keeps its host's limits;
    /// acting for an admin adds nothing to what the host may do on its own.
    public func act(for user: String, _ caller: Caller) async throws -> Caller {
        if caller.host == nil { try caller.requireAdmin("act on behalf of another user") }
        try Names.validate(user, field: "user")
        guard let record = try await store.read({ try $0.get(User.self, user) }) else {
            throw TrellisError(.forbidden, "user: no user '\(user)'", field: "user")
        }
        let name = "\(record.name) (via \(caller.name))"
        if let host = caller.host {
            return Caller(name: name, enterprise: record.admin ? nil : record.enterprise, admin: false, host: host)
        }
        return Caller(name: name, enterprise: record.enterprise, admin: record.admin)
    }

    /// Makes sure `path` holds a working admin token: keeps a valid one, else creates or re-keys the
    /// `admin` user and writes its new token to `path`, readable only by its owner.
    public func ensureAdminToken(at path: String) async throws {
        if let data = FileManager.default.contents(atPath: path),
           let token = String(data: data, encoding: .utf8)?.trimmingCharacters(in: .whitespacesAndNewlines),
           let caller = try? await authenticate(token: token), caller.admin {
            return
        }
        let token = APIToken.generate()
        try await mutate(.system) { tx in
            let hash = SHA256.hex(token)
            if var user = try tx.get(User.self, "admin") {
                user.admin = true
                user.enterprise = nil
                try tx.releaseAll("token", ownedBy: "admin")
                _ = try tx.claim("token", hash, owner: "admin")
                try tx.recordChange(.updated, try tx.update(user))
            } else {
                _ = try tx.claim("token", hash, owner: "admin")
                try tx.recordChange(.created, try tx.insert(User(name: "admin", enterprise: nil, admin: true, revision: 0,
                                                                 createdAt: Date())))
            }
        }
        try SecretFile.write(token + "\n", to: path, what: "the admin token")
    }

    // MARK: Hosts

    func withStatus(_ host: HostRecord, stored: (time: Date, appliedRevision: Int?)?) -> HostRecord {
        var host = host
        let (beat, up) = heartbeats.latest(host.name, stored: stored.map { Heartbeat(time: $0.time, appliedRevision: $0.appliedRevision) })
        host.lastHeartbeat = beat?.time
        host.appliedRevision = beat?.appliedRevision
        host.status = up ? .up : .down
        return host
    }

    public func hosts(_ caller: Caller) async throws -> ListBody<HostRecord> {
        try caller.requireAdmin("list hosts")
        let (items, revision) = try await store.read { tx in
            (try tx.list(HostRecord.self, under: nil).map { ($0, try tx.heartbeat($0.name)) }, try tx.currentRevision())
        }
        return ListBody(items: items.map { withStatus($0.0, stored: $0.1) }, revision: revision)
    }

    public func host(_ name: String, _ caller: Caller) async throws -> HostRecord {
        try caller.requireAdmin("read hosts")
        let (host, heartbeat) = try await store.read { tx in (try tx.require(HostRecord.self, name), try tx.heartbeat(name)) }
        return withStatus(host, stored: heartbeat)
    }

    /// Registers a host or changes its underlay address; idempotent.
    public func registerHost(_ name: String, _ body: HostRegistration, _ caller: Caller) async throws -> HostRecord {
        try caller.requireOwnHost(name, "register hosts")
        try Names.validate(name)
        let underlay = try IPv4Address.parse(body.underlayIP, field: "underlayIP")
        let host = try await mutate(caller) { tx -> HostRecord in
            let existing = try tx.get(HostRecord.self, name)
            if let existing, existing.underlayIP == underlay { return existing }
            if let holder = try tx.claimOwner("vtep", underlay.description), holder != name {
                throw TrellisError.conflict("underlayIP: \(underlay) is already the underlay address of host \(holder)",
                                            field: "underlayIP")
            }
            // A floating IP is answered for on the underlay by its endpoint's host: a host cannot share one.
            if let pool = try tx.list(FloatingIPPool.self, under: nil).first(where: { $0.cidr.contains(underlay) }) {
                throw TrellisError.conflict("underlayIP: \(underlay) is in floating IP pool \(pool.path) (\(pool.cidr))",
                                            field: "underlayIP")
            }
            try tx.releaseAll("vtep", ownedBy: name)
            _ = try tx.claim("vtep", underlay.description, owner: name)
            let host = HostRecord(name: name, underlayIP: underlay, lastHeartbeat: nil, status: .down, appliedRevision: nil,
                            revision: 0, registeredAt: existing?.registeredAt ?? Date())
            let written = existing == nil ? try tx.insert(host) : try tx.update(host)
            try tx.recordChange(existing == nil ? .created : .updated, written)
            return written
        }
        return try await self.host(host.name, .system)
    }

    /// Notes a host's heartbeat, and stores it when this controller has not stored one for the host lately (`HeartbeatBook`).
    public func heartbeat(_ name: String, _ body: HostHeartbeat, _ caller: Caller) async throws -> HostRecord {
        try caller.requireOwnHost(name, "send heartbeats")
        let beat = Heartbeat(time: Date(), appliedRevision: body.appliedRevision)
        let (host, stored) = try await store.read { tx in (try tx.require(HostRecord.self, name), try tx.heartbeat(name)) }
        if heartbeats.receive(name, beat) {
            _ = try await store.write(actor: caller.name) { tx in
                _ = try tx.require(HostRecord.self, name)
                try tx.setHeartbeat(name, time: beat.time, appliedRevision: beat.appliedRevision)
            }
            heartbeats.stored(name, at: beat.time)
        }
        return withStatus(host, stored: stored)
    }

    /// Records in the event log that a host's agent refused to attach a container, and why.
    public func recordRefusal(host: String, _ body: AttachRefusal, _ caller: Caller) async throws {
        try caller.requireOwnHost(host, "report refused attachments")
        guard (1...512).contains(body.path.utf8.count) else { throw TrellisError.invalid("path: 1 to 512 bytes", field: "path") }
        guard (1...2048).contains(body.reason.utf8.count) else { throw TrellisError.invalid("reason: 1 to 2048 bytes", field: "reason") }
        try Self.checkShort(body.container, field: "container")
        try Self.checkShort(body.user, field: "user")
        try await mutate(caller) { tx in
            _ = try tx.require(HostRecord.self, host)
            let enterprise = Names.prefix(body.path, 1)
            var object: [String: JSONValue] = ["host": .string(host), "reason": .string(body.reason)]
            if let container = body.container { object["container"] = .string(container) }
            if let user = body.user { object["user"] = .string(user) }
            try tx.record(.refused, kind: .endpoint, path: body.path,
                          enterprise: try tx.get(Enterprise.self, enterprise) == nil ? nil : enterprise, object: .object(object))
        }
    }

    public func deleteHost(_ name: String, _ caller: Caller) async throws {
        try caller.requireAdmin("delete hosts")
        try await delete(HostRecord.self, name, caller) { tx, _ in
            let bound = try tx.list(Endpoint.self, boundTo: name)
            guard bound.isEmpty else {
                throw TrellisError.conflict("host '\(name)' still has \(bound.count) endpoints; delete or move them first")
            }
            try tx.releaseAll("vtep", ownedBy: name)
            try tx.releaseAll(Self.hostCredentialClaims, ownedBy: name)
        }
        heartbeats.forget(name)
    }

    // MARK: Events and desired state

    public func events(afterID: Int, limit: Int, _ caller: Caller) async throws -> [Event] {
        let scope = caller.admin ? nil : caller.enterprise ?? ""
        return try await store.read { try $0.events(afterID: afterID, limit: limit, enterprise: scope) }
    }

    public func desiredState(host: String, _ caller: Caller) async throws -> DesiredState {
        try Names.validate(host, field: "host")
        try caller.requireOwnHost(host, "read the desired state")
        return try await hub.state(for: host)
    }
}
