/// Everything one host's agent needs, compiled by the controller from the store:
/// the domains it serves with all their subnets, its own endpoints with their profiles, and the
/// endpoints of those domains on other hosts (MAC, IP, VTEP) for FDB and neighbour entries.
public struct DesiredState: Codable, Sendable, Equatable {
    public var host: String
    /// The store revision this state was read at.
    public var revision: Int
    /// The host's own VTEP, nil until it registers.
    public var underlayIP: IPv4Address?
    public var domains: [DesiredDomain]
    /// Endpoints placed on this host.
    public var endpoints: [Endpoint]
    /// Endpoints of the served domains placed on other hosts.
    public var remoteEndpoints: [RemoteEndpoint]
    /// The profiles this host's endpoints use.
    public var profiles: [PortProfile]

    public init(host: String, revision: Int, underlayIP: IPv4Address?, domains: [DesiredDomain],
                endpoints: [Endpoint], remoteEndpoints: [RemoteEndpoint], profiles: [PortProfile]) {
        self.host = host; self.revision = revision; self.underlayIP = underlayIP; self.domains = domains
        self.endpoints = endpoints; self.remoteEndpoints = remoteEndpoints; self.profiles = profiles
    }

    /// True when the two states ask for the same datapath, whatever revision they were read at.
    public func sameContent(as other: DesiredState) -> Bool {
        var a = self, b = other
        a.revision = 0
        b.revision = 0
        return a == b
    }
}

/// A routing domain as a host instantiates it: one router namespace with every subnet of the domain.
public struct DesiredDomain: Codable, Sendable, Equatable {
    public var path: String
    public var id: Int
    public var subnets: [DesiredSubnet]
    public var policies: [NetworkPolicy]

    public init(path: String, id: Int, subnets: [DesiredSubnet], policies: [NetworkPolicy]) {
        self.path = path; self.id = id; self.subnets = subnets; self.policies = policies
    }
}

/// A subnet as a host instantiates it: a bridge with the anycast gateway and a VXLAN device.
public struct DesiredSubnet: Codable, Sendable, Equatable {
    public var path: String
    public var cidr: IPv4Network
    public var gateway: IPv4Address
    public var gatewayMAC: MACAddress
    public var vni: Int
    public var dhcp: Bool
    /// VTEPs of the other hosts serving this subnet's domain: one flood entry each.
    public var remoteVTEPs: [IPv4Address]

    public init(path: String, cidr: IPv4Network, gateway: IPv4Address, gatewayMAC: MACAddress, vni: Int,
                dhcp: Bool, remoteVTEPs: [IPv4Address]) {
        self.path = path; self.cidr = cidr; self.gateway = gateway; self.gatewayMAC = gatewayMAC
        self.vni = vni; self.dhcp = dhcp; self.remoteVTEPs = remoteVTEPs
    }
}

/// An endpoint on another host, as this host needs to reach it.
public struct RemoteEndpoint: Codable, Sendable, Equatable {
    public var path: String
    public var subnet: String
    public var ip: IPv4Address
    public var mac: MACAddress
    public var host: String
    public var vtep: IPv4Address

    public init(path: String, subnet: String, ip: IPv4Address, mac: MACAddress, host: String, vtep: IPv4Address) {
        self.path = path; self.subnet = subnet; self.ip = ip; self.mac = mac; self.host = host; self.vtep = vtep
    }
}

/// One line of the desired-state watch stream (newline-delimited JSON).
/// `snapshot` carries the host's whole desired state; `bookmark` says nothing changed for this host up to `revision`.
public struct WatchMessage: Codable, Sendable, Equatable {
    public enum Kind: String, Codable, Sendable { case snapshot, bookmark }
    public var type: Kind
    public var revision: Int
    public var state: DesiredState?

    public init(type: Kind, revision: Int, state: DesiredState? = nil) {
        self.type = type; self.revision = revision; self.state = state
    }
}
