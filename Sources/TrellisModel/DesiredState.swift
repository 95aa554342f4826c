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
    /// Its DNS name when it is not the last segment of its path.
    public var hostname: String?

    public init(path: String, subnet: String, ip: IPv4Address, mac: MACAddress, host: String, vtep: IPv4Address, hostname: String? = nil) {
        self.path = path; self.subnet = subnet; self.ip = ip; self.mac = mac; self.host = host; self.vtep = vtep; self.hostname = hostname
    }

    /// The name the domain's resolver answers for.
    public var dnsName: String { hostname ?? String(path.split(separator: "/").last ?? "") }
}

/// What changed in a host's desired state: objects to add or replace, and keys of objects to drop.
/// Objects are keyed by path; the host's own VTEP is replaced when `underlayIP` is set.
public struct DesiredStateDelta: Codable, Sendable, Equatable {
    public var underlayIP: IPv4Address?
    public var domains: [DesiredDomain] = []
    public var removedDomains: [String] = []
    public var endpoints: [Endpoint] = []
    public var removedEndpoints: [String] = []
    public var remoteEndpoints: [RemoteEndpoint] = []
    public var removedRemoteEndpoints: [String] = []
    public var profiles: [PortProfile] = []
    public var removedProfiles: [String] = []

    public init() {}

    public var isEmpty: Bool { self == DesiredStateDelta() }

    enum CodingKeys: String, CodingKey {
        case underlayIP, domains, removedDomains, endpoints, removedEndpoints, remoteEndpoints, removedRemoteEndpoints,
             profiles, removedProfiles
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        underlayIP = try c.decodeIfPresent(IPv4Address.self, forKey: .underlayIP)
        domains = try c.decodeIfPresent([DesiredDomain].self, forKey: .domains) ?? []
        removedDomains = try c.decodeIfPresent([String].self, forKey: .removedDomains) ?? []
        endpoints = try c.decodeIfPresent([Endpoint].self, forKey: .endpoints) ?? []
        removedEndpoints = try c.decodeIfPresent([String].self, forKey: .removedEndpoints) ?? []
        remoteEndpoints = try c.decodeIfPresent([RemoteEndpoint].self, forKey: .remoteEndpoints) ?? []
        removedRemoteEndpoints = try c.decodeIfPresent([String].self, forKey: .removedRemoteEndpoints) ?? []
        profiles = try c.decodeIfPresent([PortProfile].self, forKey: .profiles) ?? []
        removedProfiles = try c.decodeIfPresent([String].self, forKey: .removedProfiles) ?? []
    }

    /// Leaves empty lists out, so that a one-endpoint change is a one-endpoint line.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encodeIfPresent(underlayIP, forKey: .underlayIP)
        func put<T: Encodable>(_ list: [T], _ key: CodingKeys) throws { if !list.isEmpty { try c.encode(list, forKey: key) } }
        try put(domains, .domains)
        try put(removedDomains, .removedDomains)
        try put(endpoints, .endpoints)
        try put(removedEndpoints, .removedEndpoints)
        try put(remoteEndpoints, .remoteEndpoints)
        try put(removedRemoteEndpoints, .removedRemoteEndpoints)
        try put(profiles, .profiles)
        try put(removedProfiles, .removedProfiles)
    }
}

/// Objects of a desired state are identified by their path.
protocol PathKeyed { var path: String { get } }
extension DesiredDomain: PathKeyed {}
extension Endpoint: PathKeyed {}
extension RemoteEndpoint: PathKeyed {}
extension PortProfile: PathKeyed {}

/// Whether `items` are in strictly increasing path order, as canonical states and merged ones keep them.
private func inPathOrder<T: PathKeyed>(_ items: [T]) -> Bool {
    zip(items, items.dropFirst()).allSatisfy { $0.path < $1.path }
}

/// The objects of `new` that are not in `old` as they are, and the paths of `old` that `new` lacks. Lists in
/// path order (the usual case) are walked side by side, without hashing every path.
func difference<T: PathKeyed & Equatable>(_ old: [T], _ new: [T]) -> (changed: [T], removed: [String]) {
    guard inPathOrder(old), inPathOrder(new) else {
        let before = Dictionary(old.map { ($0.path, $0) }, uniquingKeysWith: { _, b in b })
        let after = Set(new.map(\.path))
        return (new.filter { before[$0.path] != $0 }, old.map(\.path).filter { !after.contains($0) })
    }
    var changed: [T] = [], removed: [String] = []
    var oldIndex = old.startIndex, newIndex = new.startIndex
    while oldIndex < old.endIndex || newIndex < new.endIndex {
        if newIndex == new.endIndex || (oldIndex < old.endIndex && old[oldIndex].path < new[newIndex].path) {
            removed.append(old[oldIndex].path)
            oldIndex += 1
        } else if oldIndex == old.endIndex || new[newIndex].path < old[oldIndex].path {
            changed.append(new[newIndex])
            newIndex += 1
        } else {
            if old[oldIndex] != new[newIndex] { changed.append(new[newIndex]) }
            oldIndex += 1
            newIndex += 1
        }
    }
    return (changed, removed)
}

/// `items` with `removed` taken out and `changed` put in (a path in both is kept, as changed), in path order.
/// Items already in path order (the usual case) are merged with the few changes in one pass.
func merging<T: PathKeyed>(_ items: [T], _ changed: [T], _ removed: [String]) -> [T] {
    guard inPathOrder(items) else {
        var byPath = Dictionary(items.map { ($0.path, $0) }, uniquingKeysWith: { _, b in b })
        for path in removed { byPath[path] = nil }
        for item in changed { byPath[item.path] = item }
        return byPath.values.sorted { $0.path < $1.path }
    }
    let gone = Set(removed)
    let incoming = Dictionary(changed.map { ($0.path, $0) }, uniquingKeysWith: { _, b in b }).values.sorted { $0.path < $1.path }
    var result: [T] = []
    result.reserveCapacity(items.count + incoming.count)
    var index = items.startIndex
    for item in incoming {
        while index < items.endIndex && items[index].path < item.path {
            if !gone.contains(items[index].path) { result.append(items[index]) }
            index += 1
        }
        if index < items.endIndex && items[index].path == item.path { index += 1 }
        result.append(item)
    }
    for item in items[index...] where !gone.contains(item.path) { result.append(item) }
    return result
}

extension DesiredState {
    /// What turns `old` into this state.
    public func delta(from old: DesiredState) -> DesiredStateDelta {
        var delta = DesiredStateDelta()
        if underlayIP != old.underlayIP { delta.underlayIP = underlayIP }
        (delta.domains, delta.removedDomains) = difference(old.domains, domains)
        (delta.endpoints, delta.removedEndpoints) = difference(old.endpoints, endpoints)
        (delta.remoteEndpoints, delta.removedRemoteEndpoints) = difference(old.remoteEndpoints, remoteEndpoints)
        (delta.profiles, delta.removedProfiles) = difference(old.profiles, profiles)
        return delta
    }

    /// This state with `delta` applied, at `revision`.
    public func applying(_ delta: DesiredStateDelta, revision: Int) -> DesiredState {
        var state = self
        state.revision = revision
        if let underlayIP = delta.underlayIP { state.underlayIP = underlayIP }
        state.domains = merging(domains, delta.domains, delta.removedDomains)
        state.endpoints = merging(endpoints, delta.endpoints, delta.removedEndpoints)
        state.remoteEndpoints = merging(remoteEndpoints, delta.remoteEndpoints, delta.removedRemoteEndpoints)
        state.profiles = merging(profiles, delta.profiles, delta.removedProfiles)
        return state
    }

    /// The same state with every list in path order, as the controller compiles it.
    public var canonical: DesiredState {
        var state = self
        state.domains.sort { $0.path < $1.path }
        state.endpoints.sort { $0.path < $1.path }
        state.remoteEndpoints.sort { $0.path < $1.path }
        state.profiles.sort { $0.path < $1.path }
        return state
    }

    /// A digest of what the state holds, whatever revision it was compiled at: two controllers of one
    /// cluster compile the same digest for the same content, so a watcher that moves from one to the other
    /// can show it has the state already.
    public var contentDigest: String {
        var state = canonical
        state.revision = 0
        return SHA256.hex(bytes: (try? JSONCoding.encoder().encode(state)).map(Array.init) ?? [])
    }
}

/// One line of the desired-state watch stream (newline-delimited JSON): a `snapshot` with the
/// host's whole desired state, then a `delta` for each change that concerns the host, and a
/// `bookmark` now and then (and first, when the watcher already has the current revision).
public struct WatchMessage: Codable, Sendable, Equatable {
    public enum Kind: String, Codable, Sendable { case snapshot, delta, bookmark }
    public var type: Kind
    public var revision: Int
    public var state: DesiredState?
    public var delta: DesiredStateDelta?

    public init(type: Kind, revision: Int, state: DesiredState? = nil, delta: DesiredStateDelta? = nil) {
        self.type = type; self.revision = revision; self.state = state; self.delta = delta
    }
}
