import Foundation

/// What every stored object has: a kind, a unique path within that kind, its owning
/// enterprise (nil for system objects), and the store revision that last changed it.
public protocol Resource: Codable, Sendable, Equatable {
    static var kind: ResourceKind { get }
    var path: String { get }
    var enterprise: String? { get }
    var revision: Int { get set }
    /// The host an object is bound to, for objects the store indexes by host.
    var boundHost: String? { get }
}

extension Resource {
    public var boundHost: String? { nil }
}

/// A tenant.
public struct Enterprise: Resource {
    public static let kind = ResourceKind.enterprise
    public var name: String
    public var description: String?
    public var revision: Int
    public var createdAt: Date
    public var path: String { name }
    public var enterprise: String? { name }

    public init(name: String, description: String? = nil, revision: Int = 0, createdAt: Date = Date()) {
        self.name = name
        self.description = description
        self.revision = revision
        self.createdAt = createdAt
    }
}

/// A routing domain: its subnets can route to each other; domains never see each other,
/// so their address spaces may overlap.
public struct Domain: Resource {
    public static let kind = ResourceKind.domain
    public var path: String
    public var name: String
    public var enterprise: String?
    /// A short number unique across the system, for names of kernel objects (IFNAMSIZ is 15).
    public var id: Int
    public var description: String?
    public var revision: Int
    public var createdAt: Date

    public init(path: String, name: String, enterprise: String? = nil, id: Int, description: String? = nil, revision: Int,
                createdAt: Date) {
        self.path = path
        self.name = name
        self.enterprise = enterprise
        self.id = id
        self.description = description
        self.revision = revision
        self.createdAt = createdAt
    }
}

/// A group of subnets that share policy.
public struct Zone: Resource {
    public static let kind = ResourceKind.zone
    public var path: String
    public var name: String
    public var domain: String
    public var enterprise: String?
    public var description: String?
    public var revision: Int
    public var createdAt: Date

    public init(path: String, name: String, domain: String, enterprise: String? = nil, description: String? = nil, revision: Int,
                createdAt: Date) {
        self.path = path
        self.name = name
        self.domain = domain
        self.enterprise = enterprise
        self.description = description
        self.revision = revision
        self.createdAt = createdAt
    }
}

/// An IPv4 subnet carried as one VXLAN segment.
public struct Subnet: Resource {
    public static let kind = ResourceKind.subnet
    public var path: String
    public var name: String
    public var zone: String
    public var domain: String
    public var enterprise: String?
    public var cidr: IPv4Network
    public var gateway: IPv4Address
    /// The anycast gateway MAC, the same on every host.
    public var gatewayMAC: MACAddress
    public var vni: Int
    public var dhcp: Bool
    public var reserved: [AddressRange]
    public var description: String?
    public var revision: Int
    public var createdAt: Date

    /// The IPAM arithmetic of this subnet.
    public func pool() throws -> AddressPool { try AddressPool(network: cidr, gateway: gateway, reserved: reserved) }

    public init(path: String, name: String, zone: String, domain: String, enterprise: String? = nil, cidr: IPv4Network,
        gateway: IPv4Address, gatewayMAC: MACAddress, vni: Int, dhcp: Bool, reserved: [AddressRange], description: String? = nil,
            revision: Int, createdAt: Date) {
        self.path = path
        self.name = name
        self.zone = zone
        self.domain = domain
        self.enterprise = enterprise
        self.cidr = cidr
        self.gateway = gateway
        self.gatewayMAC = gatewayMAC
        self.vni = vni
        self.dhcp = dhcp
        self.reserved = reserved
        self.description = description
        self.revision = revision
        self.createdAt = createdAt
    }
}

/// Whether an endpoint is a container's port or a VM's.
public enum EndpointKind: String, Codable, Sendable { case container, vm }

/// Where an endpoint's port is: `pending` until an agent attaches it, `up` once attached,
/// `down` when its agent has taken it down, `error` when attaching failed.
public enum EndpointState: String, Codable, Sendable { case pending, up, down, error }

/// One port of a container or a VM.
public struct Endpoint: Resource {
    public static let kind = ResourceKind.endpoint
    public var id: Int
    public var path: String
    public var name: String
    public var subnet: String
    public var domain: String
    public var enterprise: String?
    public var kind: EndpointKind
    /// The container id or VM UUID that owns the port.
    public var owner: String?
    public var host: String?
    public var ip: IPv4Address
    public var mac: MACAddress
    public var profile: String?
    public var state: EndpointState
    /// The host-side interface name, once attached.
    public var interface: String?
    /// Free-form ids as the Nexus 1000v records them: `iface-id`, `attached-mac`, `vm-uuid`, `vm-name`.
    public var externalIds: [String: String]
    /// The floating IP bound to the endpoint, and the pool it came from.
    public var floatingIP: IPv4Address?
    public var floatingPool: String?
    /// The endpoint's DNS name inside its domain when it is not its name (a Docker container's name).
    public var hostname: String?
    /// The port's own rate limits (a runtime's bandwidth request), each taking precedence over its
    /// profile's in that direction: `egressRate` from the endpoint, `ingressRate` towards it.
    public var egressRate: RateLimit?
    public var ingressRate: RateLimit?
    public var revision: Int
    public var createdAt: Date
    public var boundHost: String? { host }
    /// The name the domain's resolver answers for: `NAME`, `NAME.SUBNET` and `NAME.SUBNET.DOMAIN`.
    public var dnsName: String { hostname ?? name }

    public init(id: Int, path: String, name: String, subnet: String, domain: String, enterprise: String? = nil, kind: EndpointKind,
        owner: String? = nil, host: String? = nil, ip: IPv4Address, mac: MACAddress, profile: String? = nil, state: EndpointState,
            interface: String? = nil, externalIds: [String: String], revision: Int, createdAt: Date) {
        self.id = id
        self.path = path
        self.name = name
        self.subnet = subnet
        self.domain = domain
        self.enterprise = enterprise
        self.kind = kind
        self.owner = owner
        self.host = host
        self.ip = ip
        self.mac = mac
        self.profile = profile
        self.state = state
        self.interface = interface
        self.externalIds = externalIds
        self.revision = revision
        self.createdAt = createdAt
    }
}

/// Whether an agent has been heard from recently.
public enum HostStatus: String, Codable, Sendable { case up, down }

/// An agent's registration.
public struct HostRecord: Resource {
    public static let kind = ResourceKind.host
    public var name: String
    /// The host's VXLAN tunnel endpoint.
    public var underlayIP: IPv4Address
    public var lastHeartbeat: Date?
    public var status: HostStatus
    /// The desired-state revision the agent last reported as applied.
    public var appliedRevision: Int?
    public var revision: Int
    public var registeredAt: Date
    public var path: String { name }
    public var enterprise: String? { nil }

    public init(name: String, underlayIP: IPv4Address, lastHeartbeat: Date? = nil, status: HostStatus, appliedRevision: Int? = nil,
                revision: Int, registeredAt: Date) {
        self.name = name
        self.underlayIP = underlayIP
        self.lastHeartbeat = lastHeartbeat
        self.status = status
        self.appliedRevision = appliedRevision
        self.revision = revision
        self.registeredAt = registeredAt
    }
}

/// A named per-port policy template: ACL rules, rate limits, flow accounting.
public struct PortProfile: Resource {
    public static let kind = ResourceKind.profile
    public var path: String
    public var name: String
    public var enterprise: String?
    public var rules: [ACLRule]
    public var egressRate: RateLimit?
    public var ingressRate: RateLimit?
    public var flowStats: Bool
    public var description: String?
    public var revision: Int
    public var createdAt: Date

    public init(path: String, name: String, enterprise: String? = nil, rules: [ACLRule], egressRate: RateLimit? = nil,
                ingressRate: RateLimit? = nil, flowStats: Bool, description: String? = nil, revision: Int, createdAt: Date) {
        self.path = path
        self.name = name
        self.enterprise = enterprise
        self.rules = rules
        self.egressRate = egressRate
        self.ingressRate = ingressRate
        self.flowStats = flowStats
        self.description = description
        self.revision = revision
        self.createdAt = createdAt
    }
}

/// Rules that join subnets and zones of one domain.
public struct NetworkPolicy: Resource {
    public static let kind = ResourceKind.policy
    public var path: String
    public var name: String
    public var domain: String
    public var enterprise: String?
    public var rules: [PolicyRule]
    public var description: String?
    public var revision: Int
    public var createdAt: Date

    public init(path: String, name: String, domain: String, enterprise: String? = nil, rules: [PolicyRule], description: String? = nil,
                revision: Int, createdAt: Date) {
        self.path = path
        self.name = name
        self.domain = domain
        self.enterprise = enterprise
        self.rules = rules
        self.description = description
        self.revision = revision
        self.createdAt = createdAt
    }
}

/// A person or program with an API token: an admin, or a member of one enterprise.
public struct User: Resource {
    public static let kind = ResourceKind.user
    public var name: String
    public var enterprise: String?
    public var admin: Bool
    public var revision: Int
    public var createdAt: Date
    public var path: String { name }

    public init(name: String, enterprise: String? = nil, admin: Bool, revision: Int, createdAt: Date) {
        self.name = name
        self.enterprise = enterprise
        self.admin = admin
        self.revision = revision
        self.createdAt = createdAt
    }
}

/// What happened to an object.
public enum EventAction: String, Codable, Sendable {
    case created, updated, deleted
    /// An agent refused to make an object (a container's port) and says why; nothing was stored.
    case refused
    /// A host exchanged a join token for its credential.
    case joined
    /// Requests from one client failed authentication (counted, so a guessing client cannot flood the log).
    case unauthenticated

    /// Whether the event records a change of an object (which watchers of desired state follow).
    public var changes: Bool { self == .created || self == .updated || self == .deleted }
}

/// One recorded change: who did what to which object, when, and at which store revision.
public struct Event: Codable, Sendable, Equatable {
    public var id: Int
    public var revision: Int
    public var time: Date
    public var actor: String
    public var action: EventAction
    public var kind: ResourceKind
    public var path: String
    public var enterprise: String?
    /// The object as the store wrote it: its JSON bytes, decoded only by whoever reads it.
    public var encodedObject: Data?
    /// The object itself, when the event was made in this process (never encoded; not compared).
    public var resource: (any Resource)?

    /// The object after the change (before it, for deletions).
    public var object: JSONValue? {
        get { encodedObject.flatMap { try? JSONCoding.decoder().decode(JSONValue.self, from: $0) } }
        set { encodedObject = newValue.flatMap { try? JSONCoding.encoder().encode($0) } }
    }

    public init(id: Int, revision: Int, time: Date, actor: String, action: EventAction, kind: ResourceKind,
                path: String, enterprise: String?, object: JSONValue?) {
        self.init(id: id, revision: revision, time: time, actor: actor, action: action, kind: kind, path: path,
                  enterprise: enterprise, encodedObject: object.flatMap { try? JSONCoding.encoder().encode($0) })
    }

    public init(id: Int, revision: Int, time: Date, actor: String, action: EventAction, kind: ResourceKind,
                path: String, enterprise: String?, encodedObject: Data?) {
        self.id = id
        self.revision = revision
        self.time = time
        self.actor = actor
        self.action = action
        self.kind = kind
        self.path = path
        self.enterprise = enterprise
        self.encodedObject = encodedObject
    }

    /// The object decoded as the resource it is.
    public func decodedObject<R: Resource>(_ type: R.Type) -> R? {
        if let resource = resource as? R { return resource }
        return encodedObject.flatMap { try? JSONCoding.decoder().decode(R.self, from: $0) }
    }

    enum CodingKeys: String, CodingKey {
        case id, revision, time, actor, action, kind, path, enterprise, object
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init(id: try container.decode(Int.self, forKey: .id), revision: try container.decode(Int.self, forKey: .revision),
                  time: try container.decode(Date.self, forKey: .time), actor: try container.decode(String.self, forKey: .actor),
                  action: try container.decode(EventAction.self, forKey: .action),
                  kind: try container.decode(ResourceKind.self, forKey: .kind),
                  path: try container.decode(String.self, forKey: .path),
                  enterprise: try container.decodeIfPresent(String.self, forKey: .enterprise),
                  object: try container.decodeIfPresent(JSONValue.self, forKey: .object))
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(id, forKey: .id)
        try container.encode(revision, forKey: .revision)
        try container.encode(time, forKey: .time)
        try container.encode(actor, forKey: .actor)
        try container.encode(action, forKey: .action)
        try container.encode(kind, forKey: .kind)
        try container.encode(path, forKey: .path)
        try container.encodeIfPresent(enterprise, forKey: .enterprise)
        try container.encodeIfPresent(object, forKey: .object)
    }

    public static func == (left: Event, right: Event) -> Bool {
        (left.id, left.revision, left.time, left.actor, left.path) == (right.id, right.revision, right.time, right.actor, right.path)
            && (left.action, left.kind, left.enterprise) == (right.action, right.kind, right.enterprise) && left.object == right.object
    }
}

/// Objects whose only mutable part is a free-text description.
public protocol DescribedResource: Resource {
    var description: String? { get set }
}

extension Enterprise: DescribedResource {}
extension Domain: DescribedResource {}
extension Zone: DescribedResource {}

/// A pool of external addresses an enterprise binds to its endpoints as floating IPs. Pools never
/// overlap, so an address is bound at most once system-wide.
public struct FloatingIPPool: Resource {
    public static let kind = ResourceKind.fippool
    public var path: String
    public var name: String
    public var enterprise: String?
    public var cidr: IPv4Network
    public var description: String?
    public var revision: Int
    public var createdAt: Date

    public init(path: String, name: String, enterprise: String?, cidr: IPv4Network, description: String? = nil, revision: Int,
                createdAt: Date) {
        self.path = path; self.name = name; self.enterprise = enterprise; self.cidr = cidr; self.description = description
        self.revision = revision; self.createdAt = createdAt
    }
}

/// A Docker network made with Trellis's remote driver on one host's engine, and the subnet it
/// stands for. Kept by the controller, so that an agent restart never loses the mapping. Its path is
/// the host and the network id's first 12 characters (Docker's short id); `networkID` is the whole id.
public struct DockerNetwork: Resource {
    public static let kind = ResourceKind.dockerNetwork
    public var path: String
    public var host: String
    public var networkID: String
    public var subnet: String
    public var enterprise: String?
    /// The id of the IPAM pool Docker asked for this network.
    public var poolID: String
    public var revision: Int
    public var createdAt: Date
    public var boundHost: String? { host }

    public init(path: String, host: String, networkID: String, subnet: String, enterprise: String?, poolID: String, revision: Int,
                createdAt: Date) {
        self.path = path; self.host = host; self.networkID = networkID; self.subnet = subnet; self.enterprise = enterprise
        self.poolID = poolID; self.revision = revision; self.createdAt = createdAt
    }

    /// The path of network `networkID` of the engine on `host`.
    public static func path(host: String, networkID: String) -> String { host + "/" + networkID.prefix(12) }
}

/// A floating IP and the endpoint it reaches.
public struct FloatingIPBinding: Codable, Sendable, Equatable {
    public var address: IPv4Address
    public var pool: String
    public var endpoint: String
    public var endpointIP: IPv4Address
    public var host: String?

    public init(address: IPv4Address, pool: String, endpoint: String, endpointIP: IPv4Address, host: String?) {
        self.address = address; self.pool = pool; self.endpoint = endpoint; self.endpointIP = endpointIP; self.host = host
    }

    public init?(_ endpoint: Endpoint) {
        guard let address = endpoint.floatingIP, let pool = endpoint.floatingPool else { return nil }
        self.init(address: address, pool: pool, endpoint: endpoint.path, endpointIP: endpoint.ip, host: endpoint.host)
    }
}
