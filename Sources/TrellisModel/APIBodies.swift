import Foundation

/// The JSON bodies of requests to the REST API. Values that need parsing (addresses, CIDRs)
/// arrive as strings, so that a bad one is reported with the field it was in.

public struct EnterpriseCreate: Codable, Sendable {
    public var name: String
    public var description: String?
    public init(name: String, description: String? = nil) { self.name = name; self.description = description }
}

public struct DomainCreate: Codable, Sendable {
    public var enterprise: String
    public var name: String
    public var description: String?
    public init(enterprise: String, name: String, description: String? = nil) {
        self.enterprise = enterprise; self.name = name; self.description = description
    }
}

public struct ZoneCreate: Codable, Sendable {
    public var domain: String
    public var name: String
    public var description: String?
    public init(domain: String, name: String, description: String? = nil) {
        self.domain = domain; self.name = name; self.description = description
    }
}

public struct SubnetCreate: Codable, Sendable {
    public var zone: String
    public var name: String
    public var cidr: String
    /// Defaults to the first host address.
    public var gateway: String?
    public var dhcp: Bool?
    /// Addresses never handed out: `a.b.c.d` or `a.b.c.d-e.f.g.h`.
    public var reserved: [String]?
    public var description: String?
    public init(zone: String, name: String, cidr: String, gateway: String? = nil, dhcp: Bool? = nil,
                reserved: [String]? = nil, description: String? = nil) {
        self.zone = zone; self.name = name; self.cidr = cidr; self.gateway = gateway
        self.dhcp = dhcp; self.reserved = reserved; self.description = description
    }
}

/// What may change on a subnet after it is made (its addressing may not).
public struct SubnetUpdate: Codable, Sendable {
    public var dhcp: Bool?
    public var description: String?
    public init(dhcp: Bool? = nil, description: String? = nil) { self.dhcp = dhcp; self.description = description }
}

/// A description, the one thing that may change on enterprises, domains and zones.
public struct DescriptionUpdate: Codable, Sendable {
    public var description: String?
    public init(description: String?) { self.description = description }
}

public struct EndpointCreate: Codable, Sendable {
    public var subnet: String
    public var name: String
    public var kind: EndpointKind?
    public var owner: String?
    public var host: String?
    /// A static address; the controller allocates one when absent.
    public var ip: String?
    public var profile: String?
    public var externalIds: [String: String]?
    /// Its DNS name when it is not `name`.
    public var hostname: String?
    /// The port's own rate limits, over its profile's.
    public var egressRate: RateLimit?
    public var ingressRate: RateLimit?
    public init(subnet: String, name: String, kind: EndpointKind? = nil, owner: String? = nil, host: String? = nil,
                ip: String? = nil, profile: String? = nil, externalIds: [String: String]? = nil, hostname: String? = nil,
                egressRate: RateLimit? = nil, ingressRate: RateLimit? = nil) {
        self.subnet = subnet; self.name = name; self.kind = kind; self.owner = owner; self.host = host
        self.ip = ip; self.profile = profile; self.externalIds = externalIds; self.hostname = hostname
        self.egressRate = egressRate; self.ingressRate = ingressRate
    }
}

/// The parts of an endpoint that change as it is attached and detached. Absent keys stay as they are;
/// an empty string clears `host`, `profile`, `owner` or `interface`.
public struct EndpointUpdate: Codable, Sendable {
    public var host: String?
    public var state: EndpointState?
    public var profile: String?
    public var owner: String?
    public var interface: String?
    /// Merged into the endpoint's external ids; a key with an empty value is removed.
    public var externalIds: [String: String]?
    public var hostname: String?
    public init(host: String? = nil, state: EndpointState? = nil, profile: String? = nil, owner: String? = nil,
                interface: String? = nil, externalIds: [String: String]? = nil, hostname: String? = nil) {
        self.host = host; self.state = state; self.profile = profile; self.owner = owner
        self.interface = interface; self.externalIds = externalIds; self.hostname = hostname
    }
}

/// An agent's registration, sent with `PUT /api/v1/hosts/{name}`.
public struct HostRegistration: Codable, Sendable {
    public var underlayIP: String
    public init(underlayIP: String) { self.underlayIP = underlayIP }
}

/// An agent's heartbeat, with the revision of desired state it has applied.
public struct HostHeartbeat: Codable, Sendable {
    public var appliedRevision: Int?
    public init(appliedRevision: Int?) { self.appliedRevision = appliedRevision }
}

/// `POST /api/v1/join-tokens` (admin): how long the token lives, and optionally the one host it may join.
public struct JoinTokenCreate: Codable, Sendable {
    public var ttlSeconds: Int?
    public var host: String?
    public init(ttlSeconds: Int? = nil, host: String? = nil) { self.ttlSeconds = ttlSeconds; self.host = host }
}

/// A join token as made: the text to give the joining host, and when it stops working.
public struct JoinToken: Codable, Sendable {
    public var token: String
    public var expiresAt: Date
    public var host: String?
    public init(token: String, expiresAt: Date, host: String?) { self.token = token; self.expiresAt = expiresAt; self.host = host }
}

/// `POST /api/v1/join`: a host exchanges a join token (its secret part) for its credential.
public struct HostJoin: Codable, Sendable {
    public var host: String
    public var joinToken: String
    public init(host: String, joinToken: String) { self.host = host; self.joinToken = joinToken }
}

/// A host's credential: the bearer token its agent uses from then on.
public struct HostCredential: Codable, Sendable {
    public var host: String
    public var credential: String
    public init(host: String, credential: String) { self.host = host; self.credential = credential }
}

public struct ProfileCreate: Codable, Sendable {
    public var enterprise: String
    public var name: String
    public var rules: [ACLRule]?
    public var egressRate: RateLimit?
    public var ingressRate: RateLimit?
    public var flowStats: Bool?
    public var description: String?
    public init(enterprise: String, name: String, rules: [ACLRule]? = nil, egressRate: RateLimit? = nil,
                ingressRate: RateLimit? = nil, flowStats: Bool? = nil, description: String? = nil) {
        self.enterprise = enterprise; self.name = name; self.rules = rules; self.egressRate = egressRate
        self.ingressRate = ingressRate; self.flowStats = flowStats; self.description = description
    }
}

/// A whole new definition of a profile's policy (`PUT`): every endpoint using it follows.
public struct ProfileUpdate: Codable, Sendable {
    public var rules: [ACLRule]
    public var egressRate: RateLimit?
    public var ingressRate: RateLimit?
    public var flowStats: Bool
    public var description: String?
    public init(rules: [ACLRule], egressRate: RateLimit?, ingressRate: RateLimit?, flowStats: Bool, description: String?) {
        self.rules = rules; self.egressRate = egressRate; self.ingressRate = ingressRate
        self.flowStats = flowStats; self.description = description
    }
}

public struct PolicyCreate: Codable, Sendable {
    public var domain: String
    public var name: String
    public var rules: [PolicyRule]?
    public var description: String?
    public init(domain: String, name: String, rules: [PolicyRule]? = nil, description: String? = nil) {
        self.domain = domain; self.name = name; self.rules = rules; self.description = description
    }
}

/// A whole new rule list for a policy (`PUT`).
public struct PolicyUpdate: Codable, Sendable {
    public var rules: [PolicyRule]
    public var description: String?
    public init(rules: [PolicyRule], description: String?) { self.rules = rules; self.description = description }
}

public struct UserCreate: Codable, Sendable {
    public var name: String
    /// The enterprise the user belongs to; absent for an admin.
    public var enterprise: String?
    public var admin: Bool?
    public init(name: String, enterprise: String? = nil, admin: Bool? = nil) {
        self.name = name; self.enterprise = enterprise; self.admin = admin
    }
}

/// A new user and its API token, shown only once.
public struct UserWithToken: Codable, Sendable {
    public var user: User
    public var token: String
    public init(user: User, token: String) { self.user = user; self.token = token }
}

/// Every list answer: the items and the store revision they were read at.
public struct ListBody<Item: Codable & Sendable>: Codable, Sendable {
    public var items: [Item]
    public var revision: Int
    public init(items: [Item], revision: Int) { self.items = items; self.revision = revision }
}

/// A request to a host's agent to plug a running process's namespace (or a VM's tap) into a subnet.
public struct AttachRequest: Codable, Sendable {
    public var subnet: String
    public var name: String?
    public var ip: String?
    /// The interface name inside the namespace (default `eth0`).
    public var ifname: String?
    public var profile: String?
    /// A process whose network namespace is attached…
    public var pid: Int32?
    /// …or a network namespace path…
    public var netns: String?
    /// …or, for a VM, a tap device (named `tap`, or `trt` and a random token) on the subnet's bridge.
    public var vm: Bool?
    public var tap: String?
    /// The user the endpoint is created for: the controller refuses it unless the user may use the subnet.
    public var user: String?
    /// Who owns the port (a container id); the pid or namespace when absent.
    public var owner: String?
    public var externalIds: [String: String]?
    /// The port's own rate limits, over its profile's.
    public var egressRate: RateLimit?
    public var ingressRate: RateLimit?

    public init(subnet: String, name: String? = nil, ip: String? = nil, ifname: String? = nil, profile: String? = nil,
                pid: Int32? = nil, netns: String? = nil, vm: Bool? = nil, tap: String? = nil, user: String? = nil,
                owner: String? = nil, externalIds: [String: String]? = nil, egressRate: RateLimit? = nil, ingressRate: RateLimit? = nil) {
        self.subnet = subnet; self.name = name; self.ip = ip; self.ifname = ifname; self.profile = profile
        self.pid = pid; self.netns = netns; self.vm = vm; self.tap = tap; self.user = user; self.owner = owner
        self.externalIds = externalIds; self.egressRate = egressRate; self.ingressRate = ingressRate
    }
}

/// A request to a host's agent to unplug an endpoint and release its address.
public struct DetachRequest: Codable, Sendable {
    public var endpoint: String
    public init(endpoint: String) { self.endpoint = endpoint }
}

/// What an agent reports about itself.
public struct AgentStatus: Codable, Sendable, Equatable {
    public var host: String
    public var underlayIP: IPv4Address
    public var connected: Bool
    public var desiredRevision: Int?
    public var appliedRevision: Int?
    /// The `contentDigest` of the desired state the kernel was last brought to: equal to the digest of the
    /// controller's current desired state for the host when the host is in sync, whatever the revisions say.
    public var appliedDigest: String?
    public var lastError: String?

    public init(host: String, underlayIP: IPv4Address, connected: Bool, desiredRevision: Int?, appliedRevision: Int?,
                appliedDigest: String? = nil, lastError: String?) {
        self.host = host; self.underlayIP = underlayIP; self.connected = connected
        self.desiredRevision = desiredRevision; self.appliedRevision = appliedRevision; self.appliedDigest = appliedDigest
        self.lastError = lastError
    }
}

/// An agent's report that it refused to attach a container, for the event log.
public struct AttachRefusal: Codable, Sendable {
    /// The endpoint that was not made (SUBNET/NAME as asked), or what the container named.
    public var path: String
    public var reason: String
    public var container: String?
    public var user: String?
    public init(path: String, reason: String, container: String? = nil, user: String? = nil) {
        self.path = path; self.reason = reason; self.container = container; self.user = user
    }
}

/// Records that a host's Docker engine made network `networkID` on `subnet`.
public struct DockerNetworkCreate: Codable, Sendable {
    public var host: String
    public var networkID: String
    public var subnet: String
    public var poolID: String
    public init(host: String, networkID: String, subnet: String, poolID: String) {
        self.host = host; self.networkID = networkID; self.subnet = subnet; self.poolID = poolID
    }
}

public struct FloatingIPPoolCreate: Codable, Sendable {
    public var enterprise: String
    public var name: String
    public var cidr: String
    public var description: String?
    public init(enterprise: String, name: String, cidr: String, description: String? = nil) {
        self.enterprise = enterprise; self.name = name; self.cidr = cidr; self.description = description
    }
}

/// Binds a floating IP of a pool to an endpoint: `address` if given and free, else the next free one.
public struct FloatingIPBind: Codable, Sendable {
    public var endpoint: String
    public var address: IPv4Address?
    public init(endpoint: String, address: IPv4Address? = nil) { self.endpoint = endpoint; self.address = address }
}

/// Moves a bound floating IP to another endpoint.
public struct FloatingIPMove: Codable, Sendable {
    public var endpoint: String
    public init(endpoint: String) { self.endpoint = endpoint }
}

public struct FloatingIPList: Codable, Sendable {
    public var items: [FloatingIPBinding]
    public init(items: [FloatingIPBinding]) { self.items = items }
}

/// Which rule decides a new flow between two ends, and every stage the flow passes on the way
/// (`GET /api/v1/explain`), computed from the same compiled rules the agents load.
public struct PolicyExplanation: Codable, Sendable, Equatable {
    public var from: FlowEndDescription
    public var to: FlowEndDescription
    public var `protocol`: RuleProtocol
    public var port: Int?
    public var verdict: RuleAction
    public var steps: [PolicyStep]

    public init(from: FlowEndDescription, to: FlowEndDescription, protocol: RuleProtocol, port: Int?, verdict: RuleAction,
                steps: [PolicyStep]) {
        self.from = from; self.to = to; self.protocol = `protocol`; self.port = port; self.verdict = verdict; self.steps = steps
    }

    /// The step that decided the verdict (the last one).
    public var deciding: PolicyStep? { steps.last }
}

/// One end of an explained flow: an endpoint (by path) or an address range.
public struct FlowEndDescription: Codable, Sendable, Equatable {
    public var endpoint: String?
    public var address: String
    public var subnet: String?
    public var profile: String?
    public var floatingIP: IPv4Address?

    public init(endpoint: String? = nil, address: String, subnet: String? = nil, profile: String? = nil, floatingIP: IPv4Address? = nil) {
        self.endpoint = endpoint; self.address = address; self.subnet = subnet; self.profile = profile; self.floatingIP = floatingIP
    }

    public var label: String { endpoint.map { "\($0) (\(address))" } ?? address }
}

/// One stage of the forwarding ruleset and what it did with the flow.
public struct PolicyStep: Codable, Sendable, Equatable {
    /// The ruleset's stages, in the order a new flow meets them.
    public enum Stage: String, Codable, Sendable {
        case routing, sourceProfile = "source-profile", destinationProfile = "destination-profile", sameSubnet = "same-subnet"
        case floatingIP = "floating-ip", networkPolicy = "network-policy", isolation
    }

    /// `accept` and `drop` end the flow's way; `pass` lets it on to the next stage (a port ACL's allow).
    public enum Outcome: String, Codable, Sendable { case accept, drop, pass, noMatch = "no-match", notApplicable = "not-applicable" }

    public var stage: Stage
    public var outcome: Outcome
    /// The profile or policy whose rule this is.
    public var object: String?
    /// The rule, as the CLI writes it, and its position (from 1) in the object's rules.
    public var rule: String?
    public var ruleNumber: Int?
    public var detail: String

    public init(stage: Stage, outcome: Outcome, object: String? = nil, rule: String? = nil, ruleNumber: Int? = nil, detail: String) {
        self.stage = stage; self.outcome = outcome; self.object = object
        self.rule = rule; self.ruleNumber = ruleNumber; self.detail = detail
    }
}

/// A request to a host's agent to send one real packet from a local container endpoint's port with nftables
/// tracing on (`trellis explain --verify`).
public struct ProbeRequest: Codable, Sendable, Equatable {
    /// The source endpoint's path; it must be a container attached on this host.
    public var from: String
    public var to: IPv4Address
    public var `protocol`: RuleProtocol
    public var port: Int?
    public init(from: String, to: IPv4Address, protocol: RuleProtocol, port: Int?) {
        self.from = from; self.to = to; self.protocol = `protocol`; self.port = port
    }
}

/// What the kernel did with a probe: each nftables rule, return and policy it met (from the trace events), the
/// verdict they add up to, and whether the destination answered.
public struct ProbeResult: Codable, Sendable, Equatable {
    /// `accept` or `drop`, as Trellis's chains decided; `accept` also when none of them saw the packet.
    public var verdict: RuleAction
    public var steps: [ProbeStep]
    /// Whether an answer came back: a TCP connection or refusal, an echo reply; nil for UDP (nothing to wait for).
    public var answered: Bool?
    public init(verdict: RuleAction, steps: [ProbeStep], answered: Bool?) {
        self.verdict = verdict; self.steps = steps; self.answered = answered
    }
}

/// A probe the controller hands to the agent of the source's host (`GET /api/v1/hosts/{host}/probes`).
public struct HostProbe: Codable, Sendable, Equatable {
    public var id: String
    public var request: ProbeRequest
    public init(id: String, request: ProbeRequest) { self.id = id; self.request = request }
}

/// An agent's answer to a probe: what the kernel did, or why the probe could not be sent.
public struct ProbeReport: Codable, Sendable, Equatable {
    public var result: ProbeResult?
    public var error: String?
    public init(result: ProbeResult? = nil, error: String? = nil) { self.result = result; self.error = error }
}

/// A flow to explain and verify in the kernel (`POST /api/v1/explain/verify`), named as `GET /api/v1/explain` names it.
public struct FlowQuery: Codable, Sendable, Equatable {
    public var from: String
    public var to: String
    public var `protocol`: String?
    public var port: Int?
    public init(from: String, to: String, protocol: String? = nil, port: Int? = nil) {
        self.from = from; self.to = to; self.protocol = `protocol`; self.port = port
    }
}

/// The computed explanation of a flow beside what the kernel did with one real packet of it.
public struct VerifiedExplanation: Codable, Sendable, Equatable {
    public var explanation: PolicyExplanation
    public var kernel: ProbeResult?
    /// Whether the kernel's verdict is the computed one; nil when no packet was sent.
    public var agrees: Bool?
    public init(explanation: PolicyExplanation, kernel: ProbeResult?) {
        self.explanation = explanation; self.kernel = kernel; self.agrees = kernel.map { $0.verdict == explanation.verdict }
    }
}

/// One trace event: the chain, the rule's handle and text, and its verdict.
public struct ProbeStep: Codable, Sendable, Equatable {
    /// `inet`, `bridge`, `netdev`, …
    public var family: String
    public var table: String
    public var chain: String
    public var handle: Int?
    /// The rule as `nft -a list` writes it; nil for a policy or a return.
    public var rule: String?
    /// `rule`, `return` or `policy`.
    public var kind: String
    public var verdict: String
    public init(family: String, table: String, chain: String, handle: Int?, rule: String?, kind: String, verdict: String) {
        self.family = family; self.table = table; self.chain = chain; self.handle = handle; self.rule = rule
        self.kind = kind; self.verdict = verdict
    }
}
