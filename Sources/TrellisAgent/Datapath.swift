import Foundation
import Glibc
import TrellisModel
import TrellisPolicy
import TrellisNetlink
import TrellisNetlinkWire

/// What a host's datapath is built with.
public struct DatapathConfiguration: Sendable {
    public var host: String
    public var underlayIP: IPv4Address
    /// MTU of overlay interfaces: the underlay's less the 50 bytes of VXLAN over IPv4.
    public var overlayMTU: UInt32

    public init(host: String, underlayIP: IPv4Address, overlayMTU: UInt32 = 1450) {
        self.host = host
        self.underlayIP = underlayIP
        self.overlayMTU = overlayMTU
    }
}

/// What one reconciliation changed, for logs and tests.
public struct ReconcileReport: Sendable, Equatable {
    public var created: [String] = []
    public var removed: [String] = []
    public var isEmpty: Bool { created.isEmpty && removed.isEmpty }
}

/// A reconcile that converged everything but what it names.
public struct ReconcileFailure: Error, CustomStringConvertible {
    /// What failed, each with the kernel's answer: a port or a domain.
    public var failures: [String]
    /// What the reconcile changed all the same.
    public var report: ReconcileReport
    public var description: String { failures.joined(separator: "; ") }
}

/// A domain's router namespace with a netlink handle and a packet socket inside it.
struct RouterNamespace {
    let name: String
    let namespace: NetworkNamespace
    let netlink: RouteNetlink
    let packets: PacketSocket
}

/// The host's datapath: makes the kernel match a desired state, level-triggered and idempotent.
///
/// Per domain a router namespace; in it per subnet a bridge carrying the anycast gateway and a VXLAN
/// device (created from the host namespace, so its UDP socket lives there) with static FDB and
/// neighbour entries; per local endpoint a veth whose container end is born inside its namespace.
/// What matches is left alone, so a restart changes nothing that works.
public actor Datapath {
    let configuration: DatapathConfiguration
    let hostNetlink: RouteNetlink
    let hostNamespace: NetworkNamespace?
    var routers: [Int: RouterNamespace] = [:]
    /// Endpoints being detached: not re-attached by a reconcile that still lists them.
    private var detaching: Set<String> = []
    /// Ports plugged by an attach, by name: the revision that made their endpoint, and their router.
    /// A reconcile from an older desired state (the watch had not yet brought the endpoint) leaves
    /// them and their router namespace alone instead of removing them as strays.
    private var plugged: [String: (revision: Int, router: String)] = [:]
    private let routerMade: @Sendable (String) -> Void
    /// The last ruleset compiled per domain and what it was compiled from: most reconciles (a remote
    /// endpoint came or went) change none of it, and a domain with thousands of rules is not recompiled.
    private var compiled: [Int: (inputs: RulesetInputs, ruleset: FirewallRuleset)] = [:]
    /// True once the host namespace was found without any floating IP plumbing, until one is wanted.
    var hostSideClean = false
    /// Loads the nftables rulesets that reconciles plan; `sync()` it after a reconcile.
    public nonisolated let firewall = FirewallLoader()

    /// A datapath for the host whose namespace is `hostNamespace` (this process's when nil).
    /// `routerMade` is told the name of each router namespace as the datapath makes it (or first finds
    /// it, after a restart), before any port in it is plugged: the services a router answers in every
    /// domain (its resolver) start there, so no container can ask before they listen.
    public init(configuration: DatapathConfiguration, hostNamespace: NetworkNamespace? = nil,
                routerMade: @escaping @Sendable (String) -> Void = { _ in }) throws {
        self.configuration = configuration
        hostNetlink = try RouteNetlink(in: hostNamespace)
        self.hostNamespace = hostNamespace
        self.routerMade = routerMade
    }

    /// The names of the router namespaces this datapath keeps: those of the desired domains, and those
    /// of ports plugged ahead of the desired state.
    public func routerNames() -> Set<String> { Set(routers.values.map(\.name)) }


    // MARK: Reconciliation

    /// Brings the kernel to `desired`: creates what is missing, fixes what differs, removes what
    /// Trellis made that `desired` no longer names.
    ///
    /// A failure stays where it happened: a port that cannot be plugged, or a domain whose kernel objects
    /// refuse a change, does not stop the other ports and domains from converging (a bad container must
    /// not leave the host without the forwarding entries of a newcomer elsewhere). The failures are
    /// thrown together at the end, so the caller does not call the revision applied and tries again.
    @discardableResult
    public func reconcile(_ desired: DesiredState) throws -> ReconcileReport {
        var report = ReconcileReport()
        var failures: [String] = []
        plugged = plugged.filter { $0.value.revision > desired.revision }
        var keptNamespaces = Set(plugged.values.map(\.router))
        var uplinks: [Int: [FloatingIPTranslation]] = [:]
        let profiles = Dictionary(desired.profiles.map { ($0.path, $0) }, uniquingKeysWith: { a, _ in a })
        for domain in desired.domains {
            keptNamespaces.insert(KernelNames.routerNamespace(host: configuration.host, domainID: domain.id))
            let floating = desired.endpoints.filter { $0.domain == domain.path }
                .compactMap { endpoint in endpoint.floatingIP.map { FloatingIPTranslation(floating: $0, endpoint: endpoint.ip) } }
            // Kept on the host side even when the domain fails: its translations are what the state says.
            uplinks[domain.id] = floating.isEmpty ? nil : floating
            do {
                try reconcile(domain, desired, profiles, floating, &report, &failures)
            } catch {
                failures.append("domain \(domain.path): \(error)")
            }
        }
        let prefix = KernelNames.routerPrefix(host: configuration.host)
        for name in NetworkNamespace.names() where name.hasPrefix(prefix) && !keptNamespaces.contains(name) {
            // Ports first: the namespace itself lives on while anything still holds it open.
            let netlink = try RouteNetlink(in: try NetworkNamespace(named: name))
            for link in try netlink.links() where KernelNames.isOwned(link) { try netlink.deleteLink(index: link.index) }
            try NetworkNamespace.delete(named: name)
            firewall.forget(namespacePath: "\(NetworkNamespace.namedDirectory)/\(name)")
            let gone = routers.filter { $0.value.name == name }.keys
            gone.forEach { compiled[$0] = nil }
            routers = routers.filter { $0.value.name != name }
            report.removed.append(name)
        }
        try syncHostSide(uplinks, &report)
        detaching.formIntersection(desired.endpoints.map(\.path))
        guard failures.isEmpty else { throw ReconcileFailure(failures: failures, report: report) }
        return report
    }

    /// One domain's router namespace brought to `desired`, with `floating` its floating IP translations.
    /// A port that cannot be plugged is noted in `failures` and the rest goes on.
    private func reconcile(_ domain: DesiredDomain, _ desired: DesiredState, _ profiles: [String: PortProfile],
                           _ floating: [FloatingIPTranslation], _ report: inout ReconcileReport, _ failures: inout [String]) throws {
        let router = try ensureRouter(domain, &report)
        var links = Dictionary(try router.netlink.links().map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        let addresses = try router.netlink.addresses()
        let fdb = try router.netlink.neighbours(family: NL.AF_BRIDGE)
        let neighbours = try router.netlink.neighbours()
        var kept: Set<String> = []
        var bridges: [String: Link] = [:]
        for subnet in domain.subnets {
            let (bridge, vxlan) = try ensureSubnet(subnet, router, &links, addresses, &report)
            bridges[subnet.path] = bridge
            kept.formUnion([bridge.name, vxlan.name])
            let remotes = desired.remoteEndpoints.filter { $0.subnet == subnet.path }
            try syncForwarding(subnet, remotes, router, bridge: bridge, vxlan: vxlan, fdb: fdb, neighbours: neighbours)
        }
        for endpoint in desired.endpoints where endpoint.domain == domain.path {
            let name = KernelNames.port(of: endpoint)
            guard let bridge = bridges[endpoint.subnet], !detaching.contains(endpoint.path) else { continue }
            do {
                if try keepPort(endpoint, named: name, links[name], domain, router, bridge, &report) { kept.insert(name) }
            } catch {
                failures.append("port \(name) of \(endpoint.path): \(error)")
            }
        }
        let local = desired.endpoints.filter { $0.domain == domain.path }
        try syncUplink(domain, router, floating, &report)
        let ruleset = compiledRuleset(domain, local, profiles, floating)
        firewall.plan(ruleset, namespacePath: router.namespace.path)
        for shaping in ruleset.shaping where shaping.egress != nil {
            kept.insert(shaping.shaper)
            if links[shaping.shaper] == nil {
                try router.netlink.createLink(LinkSpec(name: shaping.shaper, kind: .ifb, up: true))
                report.created.append(shaping.shaper)
            }
        }
        for bridge in bridges.values where bridge.bridgeCallsIPHooks != ruleset.filtersBridgedTraffic {
            try router.netlink.setBridge(index: bridge.index, callIPHooks: ruleset.filtersBridgedTraffic)
        }
        for link in links.values where KernelNames.isOwned(link) && !kept.contains(link.name) && plugged[link.name] == nil {
            try router.netlink.deleteLink(index: link.index)
            report.removed.append(link.name)
        }
    }

    /// Makes sure a local endpoint's port is on its bridge and up, plugging it when its namespace is known;
    /// whether the port exists (and is to be kept).
    private func keepPort(_ endpoint: Endpoint, named name: String, _ link: Link?, _ domain: DesiredDomain, _ router: RouterNamespace,
                          _ bridge: Link, _ report: inout ReconcileReport) throws -> Bool {
        if let link {
            if link.master != bridge.index || !link.isUp {
                try router.netlink.setLink(index: link.index, up: true, master: bridge.index)
            }
            return true
        }
        if endpoint.kind == .vm {
            guard endpoint.externalIds["tap"] != nil else { return false }
            try plugTap(name, router: router, bridge: bridge)
        } else {
            guard let path = endpoint.externalIds["netns"], let namespace = try? NetworkNamespace(path: path),
                  let subnet = domain.subnets.first(where: { $0.path == endpoint.subnet }) else { return false }
            try plug(endpoint, subnet: subnet, router: router, bridge: bridge, into: namespace,
                     interface: endpoint.externalIds["ifname"] ?? "eth0")
        }
        report.created.append(name)
        return true
    }

    private struct RulesetInputs: Equatable {
        var domain: DesiredDomain
        var endpoints: [Endpoint]
        var profiles: [PortProfile]
        var floating: [FloatingIPTranslation]
    }

    private func compiledRuleset(_ domain: DesiredDomain, _ local: [Endpoint], _ profiles: [String: PortProfile],
                                 _ floating: [FloatingIPTranslation]) -> FirewallRuleset {
        let used = Set(local.compactMap(\.profile)).sorted().compactMap { profiles[$0] }
        let inputs = RulesetInputs(domain: domain, endpoints: local, profiles: used, floating: floating)
        if let last = compiled[domain.id], last.inputs == inputs { return last.ruleset }
        let ruleset = FirewallRuleset(domain: domain, endpoints: local, profiles: profiles, floatingIPs: floating)
        compiled[domain.id] = (inputs, ruleset)
        return ruleset
    }

    private func ensureRouter(_ domain: DesiredDomain, _ report: inout ReconcileReport) throws -> RouterNamespace {
        if let router = routers[domain.id], FileManager.default.fileExists(atPath: router.namespace.path) { return router }
        let name = KernelNames.routerNamespace(host: configuration.host, domainID: domain.id)
        let existed = NetworkNamespace.names().contains(name)
        let namespace = try NetworkNamespace.create(named: name)
        let netlink = try RouteNetlink(in: namespace)
        let loopback = try netlink.requireLink(named: "lo")
        if !loopback.isUp { try netlink.setLink(index: loopback.index, up: true) }
        try namespace.setSysctl("net.ipv4.ip_forward", "1")
        // Per-flow byte counts for the flows API.
        try namespace.setSysctl("net.netfilter.nf_conntrack_acct", "1", optional: true)
        // Once Docker has loaded br_netfilter, bridged traffic would pay for iptables; filtering here uses nftables.
        for key in ["bridge-nf-call-iptables", "bridge-nf-call-ip6tables", "bridge-nf-call-arptables"] {
            try namespace.setSysctl("net.bridge.\(key)", "0", optional: true)
        }
        // The domain's resolver answers on this address too, the same in every domain and on every host.
        if try !netlink.addresses().contains(where: { $0.index == loopback.index && $0.address == DNSService.address }) {
            try netlink.addAddress(index: loopback.index, DNSService.address, prefixLength: 32)
        }
        if !existed { report.created.append(name) }
        let router = RouterNamespace(name: name, namespace: namespace, netlink: netlink, packets: try PacketSocket(in: namespace))
        routers[domain.id] = router
        routerMade(name)
        return router
    }

    private func ensureSubnet(_ subnet: DesiredSubnet, _ router: RouterNamespace, _ links: inout [String: Link],
                              _ addresses: [InterfaceAddress], _ report: inout ReconcileReport) throws -> (Link, Link) {
        let mtu = configuration.overlayMTU
        let bridgeName = KernelNames.bridge(vni: subnet.vni), vxlanName = KernelNames.vxlan(vni: subnet.vni)
        if links[bridgeName] == nil {
            try router.netlink.createLink(LinkSpec(name: bridgeName, kind: .bridge, mtu: mtu, mac: subnet.gatewayMAC, up: true))
            links[bridgeName] = try router.netlink.requireLink(named: bridgeName)
            report.created.append(bridgeName)
        }
        let bridge = links[bridgeName]!
        if bridge.mtu != mtu || bridge.mac != subnet.gatewayMAC || !bridge.isUp {
            try router.netlink.setLink(index: bridge.index, up: true, mtu: mtu, mac: subnet.gatewayMAC)
        }
        let prefix = subnet.cidr.prefixLength
        if !addresses.contains(where: { $0.index == bridge.index && $0.address == subnet.gateway && $0.prefixLength == prefix }) {
            try router.netlink.addAddress(index: bridge.index, subnet.gateway, prefixLength: prefix)
        }
        if links[vxlanName] == nil {
            // Made from the host namespace so that its UDP socket is the host's, then placed in the router at birth.
            try hostNetlink.createLink(LinkSpec(
                name: vxlanName, kind: .vxlan(vni: UInt32(subnet.vni), port: 4789, local: configuration.underlayIP, underlayIndex: nil),
                mtu: mtu, namespace: router.namespace.fd))
            links[vxlanName] = try router.netlink.requireLink(named: vxlanName)
            report.created.append(vxlanName)
        }
        let vxlan = links[vxlanName]!
        if vxlan.master != bridge.index || !vxlan.isUp || vxlan.mtu != mtu {
            try router.netlink.setLink(index: vxlan.index, up: true, master: bridge.index, mtu: mtu)
            try router.netlink.setBridgePort(index: vxlan.index, learning: false, neighbourSuppress: true)
        }
        return (bridge, vxlan)
    }

    /// Static forwarding for one subnet: VXLAN FDB entries (remote MAC → VTEP, and an all-zero flood
    /// entry per remote VTEP), the bridge's own entries for those MACs on the VXLAN port, and
    /// permanent neighbour entries so that ARP is answered on this host.
    private func syncForwarding(_ subnet: DesiredSubnet, _ remotes: [RemoteEndpoint], _ router: RouterNamespace, bridge: Link, vxlan: Link,
                                fdb: [Neighbour], neighbours: [Neighbour]) throws {
        struct Tunnel: Hashable { var mac: MACAddress; var vtep: IPv4Address }
        let zero = MACAddress(0)!
        let wantedTunnels = Set(remotes.map { Tunnel(mac: $0.mac, vtep: $0.vtep) } + subnet.remoteVTEPs.map { Tunnel(mac: zero, vtep: $0) })
        let tunnels = fdb.filter { $0.index == vxlan.index && $0.flags & NL.NTF_SELF != 0 }
            .compactMap { entry in entry.mac.flatMap { mac in entry.address.map { Tunnel(mac: mac, vtep: $0) } } }
        for tunnel in wantedTunnels.subtracting(tunnels) { try router.netlink.replaceFDB(index: vxlan.index, mac: tunnel.mac, vtep: tunnel.vtep) }
        for tunnel in Set(tunnels).subtracting(wantedTunnels) { try router.netlink.deleteFDB(index: vxlan.index, mac: tunnel.mac, vtep: tunnel.vtep) }

        let wantedPorts = Set(remotes.map(\.mac))
        let ports = Set(fdb.filter { $0.index == vxlan.index && $0.master == bridge.index && $0.address == nil && !$0.isPermanent }
            .compactMap(\.mac))
        for mac in wantedPorts.subtracting(ports) { try router.netlink.replaceBridgeFDB(index: vxlan.index, mac: mac) }
        for mac in ports.subtracting(wantedPorts) { try router.netlink.deleteBridgeFDB(index: vxlan.index, mac: mac) }

        let wantedNeighbours = Dictionary(remotes.map { ($0.ip, $0.mac) }, uniquingKeysWith: { a, _ in a })
        let present = neighbours.filter { $0.index == bridge.index && $0.isPermanent }
        for neighbour in present {
            guard let address = neighbour.address else { continue }
            if wantedNeighbours[address] == nil { try router.netlink.deleteNeighbour(index: bridge.index, address) }
        }
        for (address, mac) in wantedNeighbours where !present.contains(where: { $0.address == address && $0.mac == mac }) {
            try router.netlink.replaceNeighbour(index: bridge.index, address, mac: mac)
            // Announce the newcomer on this host's segment: a local container already asking for it (its
            // ARP retried only every second) learns it now. Suppression keeps the frame off the VXLAN.
            try router.packets.send(ARPFrame.gratuitous(mac: mac, ip: address), linkIndex: bridge.index)
        }
    }

    // MARK: Attach and detach

    /// What every way of plugging an endpoint starts from: its domain's router and its subnet's bridge
    /// made sure of, the router's links by name, and the endpoint no longer marked as detaching.
    private func prepare(_ endpoint: Endpoint, domain: DesiredDomain, subnet: DesiredSubnet) throws
        -> (router: RouterNamespace, bridge: Link, links: [String: Link]) {
        var report = ReconcileReport()
        let router = try ensureRouter(domain, &report)
        var links = Dictionary(try router.netlink.links().map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        let (bridge, _) = try ensureSubnet(subnet, router, &links, try router.netlink.addresses(), &report)
        detaching.remove(endpoint.path)
        plugged[KernelNames.port(of: endpoint)] = (endpoint.revision, router.name)
        return (router, bridge, links)
    }

    /// Plugs an endpoint into `namespace` as `interface`: a veth whose container end is created inside
    /// the namespace with the endpoint's MAC (and, unless the subnet serves DHCP, its address and a
    /// default route via the anycast gateway), and whose host end joins the subnet's bridge.
    /// Idempotent; on failure nothing it made is left behind.
    public func attach(_ endpoint: Endpoint, domain: DesiredDomain, subnet: DesiredSubnet, namespace: NetworkNamespace,
                       interface: String) throws -> String {
        let (router, bridge, links) = try prepare(endpoint, domain: domain, subnet: subnet)
        let name = KernelNames.port(of: endpoint)
        if links[name] == nil {
            try plug(endpoint, subnet: subnet, router: router, bridge: bridge, into: namespace, interface: interface)
        }
        return name
    }

    private func plug(_ endpoint: Endpoint, subnet: DesiredSubnet, router: RouterNamespace, bridge: Link, into namespace: NetworkNamespace,
                      interface: String) throws {
        let name = KernelNames.port(of: endpoint)
        try router.netlink.createLink(LinkSpec(name: name, kind: .veth(peerName: interface, peerMAC: endpoint.mac, peerNamespace: namespace.fd),
                                               mtu: configuration.overlayMTU, master: bridge.index, up: true))
        do {
            let inside = try RouteNetlink(in: namespace)
            let loopback = try inside.requireLink(named: "lo")
            if !loopback.isUp { try inside.setLink(index: loopback.index, up: true) }
            let link = try inside.requireLink(named: interface)
            try inside.setLink(index: link.index, up: true)
            if !subnet.dhcp {
                try inside.addAddress(index: link.index, endpoint.ip, prefixLength: subnet.cidr.prefixLength)
                try inside.replaceRoute(to: nil, via: subnet.gateway, index: link.index)
                // Neighbours on this host that were already asking for this address learn it now, not at their
                // next ARP retry. Sent on the bridge through the router's long-lived packet socket: a packet
                // socket opened in the container would cost an RCU grace period (~10 ms) when it closes.
                try router.packets.send(ARPFrame.gratuitous(mac: endpoint.mac, ip: endpoint.ip), linkIndex: bridge.index)
            }
        } catch {
            if let link = try? router.netlink.link(named: name) { try? router.netlink.deleteLink(index: link.index) }
            throw error
        }
    }

    /// Plugs an endpoint for a Docker engine (the remote driver's Join): a veth whose host end joins the
    /// subnet's bridge and whose other end, `handover`, is left in this host's namespace with the
    /// endpoint's MAC and the overlay MTU, for the engine to move into the container and address.
    public func attachForHandover(_ endpoint: Endpoint, domain: DesiredDomain, subnet: DesiredSubnet, handover: String) throws -> String {
        let (router, bridge, links) = try prepare(endpoint, domain: domain, subnet: subnet)
        let name = KernelNames.port(of: endpoint)
        if let stale = links[name] { try router.netlink.deleteLink(index: stale.index) }
        if let stale = try hostNetlink.link(named: handover) { try hostNetlink.deleteLink(index: stale.index) }
        let host = try hostNamespace ?? NetworkNamespace.current()
        try router.netlink.createLink(LinkSpec(name: name, kind: .veth(peerName: handover, peerMAC: endpoint.mac, peerNamespace: host.fd),
                                               mtu: configuration.overlayMTU, master: bridge.index, up: true))
        // Neighbours that asked for the address before learn where it is now, not at their next ARP retry.
        try router.packets.send(ARPFrame.gratuitous(mac: endpoint.mac, ip: endpoint.ip), linkIndex: bridge.index)
        return name
    }

    /// Gives a VM endpoint a persistent tap on its subnet's bridge, in the router namespace, where the
    /// VM's monitor opens it (`qemu -netdev tap,ifname=NAME,script=no` run in that namespace); the tap is
    /// named by the endpoint's `tap` external id, as the reconcile that keeps it reads it.
    public func attachTap(_ endpoint: Endpoint, domain: DesiredDomain, subnet: DesiredSubnet) throws -> String {
        guard endpoint.externalIds["tap"] != nil else {
            throw TrellisError.invalid("a VM endpoint needs its tap's name in the external id tap", field: "externalIds.tap")
        }
        let name = KernelNames.port(of: endpoint)
        let (router, bridge, links) = try prepare(endpoint, domain: domain, subnet: subnet)
        if links[name] == nil { try plugTap(name, router: router, bridge: bridge) }
        return router.name
    }

    private func plugTap(_ name: String, router: RouterNamespace, bridge: Link) throws {
        try router.namespace.createTap(named: name)
        do {
            let tap = try router.netlink.requireLink(named: name)
            try router.netlink.setLink(index: tap.index, up: true, master: bridge.index, mtu: configuration.overlayMTU)
        } catch {
            if let tap = try? router.netlink.link(named: name) { try? router.netlink.deleteLink(index: tap.index) }
            throw error
        }
    }

    /// Removes an endpoint's port (its container end goes with it); the caller releases the address after.
    public func detach(_ endpoint: Endpoint, domainID: Int) throws {
        detaching.insert(endpoint.path)
        plugged[KernelNames.port(of: endpoint)] = nil
        let name = KernelNames.routerNamespace(host: configuration.host, domainID: domainID)
        guard NetworkNamespace.names().contains(name) else { return }
        let namespace = try NetworkNamespace(named: name)
        let netlink = try routers[domainID]?.netlink ?? RouteNetlink(in: namespace)
        if let link = try netlink.link(named: KernelNames.port(of: endpoint)) {
            try netlink.deleteLink(index: link.index)
        }
    }
}
