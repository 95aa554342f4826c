import Foundation
import Glibc
import TrellisFastPath
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
    /// Whether ports and VXLAN devices carry the eBPF fast path (see `FastPathAdmission` for what it lets through).
    public var fastPath: Bool

    public init(host: String, underlayIP: IPv4Address, overlayMTU: UInt32 = 1450, fastPath: Bool = false) {
        self.host = host
        self.underlayIP = underlayIP
        self.overlayMTU = overlayMTU
        self.fastPath = fastPath
    }
}

/// What one reconciliation changed, for logs and tests.
public struct ReconcileReport: Sendable, Equatable {
    public var created: [String] = []
    public var removed: [String] = []
    /// Bound ports kept although the desired state should have listed their endpoint: the agent asks the
    /// controller whether they are over.
    public var bindingsInDoubt: [LocalBinding] = []
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
    /// The router's instance of the fast-path program, nil on the bridge path.
    let fastPath: FastPathSlot?
}

/// A router's fast-path program, loaded when its first port joins the fast path: a router that never has
/// one (an attach that only plugs) pays nothing for it (a load takes ~7 ms). It keeps what the firewall
/// loader last said of the ruleset in force, so a program loaded later starts from it.
final class FastPathSlot: @unchecked Sendable {
    private let lock = NSLock()
    private var program: FastPathProgram?
    private var admission = FastPathAdmission.closed
    private var lookedForPredecessor = false

    /// The program if it was loaded.
    var loaded: FastPathProgram? { lock.withLock { program } }

    func load() throws -> FastPathProgram {
        try lock.withLock {
            if let program { return program }
            let made = try FastPathProgram()
            try made.admit(admission)
            program = made
            return made
        }
    }

    /// Takes over the program a predecessor (this agent before a restart) left hooked to some of `hooks` (the
    /// router's links with a hook point), looked for once, before this process loads its own: the one most
    /// of their filters run, with its maps as they are, so a restart rewrites none of its ports' filters. A
    /// predecessor's program that is not this very one stays foreign: the planner has its hooks taken over.
    func adoptPredecessor(hooks: [Int32], netlink: RouteNetlink) {
        lock.withLock {
            guard program == nil, !lookedForPredecessor else { return }
            lookedForPredecessor = true
            var linksByProgram: [UInt32: Set<Int32>] = [:]
            for index in hooks {
                for filter in (try? netlink.ingressBPFFilters(index: index)) ?? [] where filter.name == FastPathProgram.filterName {
                    linksByProgram[filter.programID, default: []].insert(index)
                }
            }
            guard let (id, links) = linksByProgram.max(by: { $0.value.count < $1.value.count }),
                  let adopted = try? FastPathProgram(adopting: id, hookedTo: links) else { return }
            // What the predecessor admitted stays until this process's firewall loader says otherwise.
            if admission != .closed { try? adopted.admit(admission) }
            program = adopted
        }
    }

    /// Tells the program (now, or when it is loaded) what the ruleset in force admits.
    func admit(_ admission: FastPathAdmission) throws {
        try lock.withLock {
            self.admission = admission
            try program?.admit(admission)
        }
    }
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
    /// How each local endpoint's port is plugged. An attach binds before it plugs and a detach unbinds
    /// before it unplugs, so a reconcile from a desired state that does not list the endpoint yet keeps
    /// its port, and one that still lists an endpoint being detached does not plug it again.
    public nonisolated let bindings: LocalBindingStore
    /// What each domain's router holds, by domain id: read at a resync, then kept current by the executor,
    /// so that a change (a remote endpoint came) is planned and applied without reading the kernel.
    /// Dropped when applying a plan failed: the next reconcile reads the kernel again.
    private var observations: [Int: RouterObservation] = [:]
    /// The router namespaces kept when strays were last looked for: a reconcile keeping the same ones,
    /// short of a resync, does not list the namespaces again.
    private var sweptKeeping: Set<String>?
    private let routerMade: @Sendable (String) -> Void
    /// The last ruleset compiled per domain and what it was compiled from: most reconciles (a remote
    /// endpoint came or went) change none of it, and a domain with thousands of rules is not recompiled.
    private var compiled: [Int: (inputs: RulesetInputs, ruleset: FirewallRuleset)] = [:]
    /// True once the host namespace was found without any floating IP plumbing, until one is wanted.
    var hostSideClean = false
    /// Loads the nftables rulesets that reconciles plan; `sync()` it after a reconcile.
    public nonisolated let firewall = FirewallLoader()
    /// The datapath's own thread: every kernel request it makes blocks there, not on the cooperative pool.
    private nonisolated let thread = DedicatedThreadExecutor(name: "trellis-datapath")
    public nonisolated var unownedExecutor: UnownedSerialExecutor { thread.asUnownedSerialExecutor() }

    /// A datapath for the host whose namespace is `hostNamespace` (this process's when nil).
    /// `routerMade` is told the name of each router namespace as the datapath makes it (or first finds
    /// it, after a restart), before any port in it is plugged: the services a router answers in every
    /// domain (its resolver) start there, so no container can ask before they listen.
    public init(configuration: DatapathConfiguration, hostNamespace: NetworkNamespace? = nil, bindings: LocalBindingStore,
                routerMade: @escaping @Sendable (String) -> Void = { _ in }) throws {
        self.configuration = configuration
        self.bindings = bindings
        hostNetlink = try RouteNetlink(in: hostNamespace)
        self.hostNamespace = hostNamespace
        self.routerMade = routerMade
    }

    /// What the executor has recorded of a domain's router, nil until a reconcile or attach has read it.
    func recordedObservation(domainID: Int) -> RouterObservation? { observations[domainID] }

    /// The names of the router namespaces this datapath keeps: those of the desired domains, and those
    /// of ports plugged ahead of the desired state.
    public func routerNames() -> Set<String> { Set(routers.values.map(\.name)) }

    // MARK: Reconciliation

    /// Brings the kernel to `desired`: creates what is missing, fixes what differs, removes what
    /// Trellis made that `desired` no longer names. A bound port stays although `desired` does not list
    /// its endpoint, until the binding goes (see `LocalBindingTable.unlisted(in:)`).
    ///
    /// With `resync` every router's kernel objects are read first; without, each router is planned against
    /// what the last reconcile left (read then, and kept current since), so a change costs only the
    /// operations it needs. A router whose last plan failed is read again either way.
    ///
    /// A failure stays where it happened: a port that cannot be plugged, or a domain whose kernel objects
    /// refuse a change, does not stop the other ports and domains from converging (a bad container must
    /// not leave the host without the forwarding entries of a newcomer elsewhere). The failures are
    /// thrown together at the end, so the caller does not call the revision applied and tries again.
    @discardableResult
    public func reconcile(_ desired: DesiredState, resync: Bool = true) throws -> ReconcileReport {
        var report = ReconcileReport()
        var failures: [String] = []
        let table = bindings.current
        let unlisted = table.unlisted(in: desired)
        report.bindingsInDoubt = LocalBindingTable.inDoubt(unlisted, revision: desired.revision)
        var keptNamespaces = Set(unlisted.map { KernelNames.routerNamespace(host: configuration.host, domainID: $0.domainID) })
        var uplinks: [Int: [FloatingIPTranslation]] = [:]
        let profiles = Dictionary(desired.profiles.map { ($0.path, $0) }, uniquingKeysWith: { a, _ in a })
        for domain in desired.domains {
            keptNamespaces.insert(KernelNames.routerNamespace(host: configuration.host, domainID: domain.id))
            let floating = desired.endpoints.filter { $0.domain == domain.path }
                .compactMap { endpoint in endpoint.floatingIP.map { FloatingIPTranslation(floating: $0, endpoint: endpoint.ip) } }
            // Kept on the host side even when the domain fails: its translations are what the state says.
            uplinks[domain.id] = floating.isEmpty ? nil : floating
            do {
                try reconcile(domain, desired, table, keep: Set(unlisted.map(\.portName)), profiles, floating, resync: resync,
                              &report, &failures)
            } catch {
                failures.append("domain \(domain.path): \(error)")
            }
        }
        if resync || sweptKeeping != keptNamespaces {
            try removeStrayRouters(keeping: keptNamespaces, &report)
        }
        try syncHostSide(uplinks, &report)
        guard failures.isEmpty else { throw ReconcileFailure(failures: failures, report: report) }
        return report
    }

    /// Removes the router namespaces of this host that are not in `kept`.
    private func removeStrayRouters(keeping kept: Set<String>, _ report: inout ReconcileReport) throws {
        let prefix = KernelNames.routerPrefix(host: configuration.host)
        for name in NetworkNamespace.names() where name.hasPrefix(prefix) && !kept.contains(name) {
            // Ports first: the namespace itself lives on while anything still holds it open.
            let netlink = try RouteNetlink(in: try NetworkNamespace(named: name))
            for link in try netlink.links() where KernelNames.isOwned(link) { try netlink.deleteLink(index: link.index) }
            try NetworkNamespace.delete(named: name)
            firewall.forget(namespacePath: "\(NetworkNamespace.namedDirectory)/\(name)")
            for id in routers.filter({ $0.value.name == name }).keys {
                compiled[id] = nil
                observations[id] = nil
                routers[id] = nil
            }
            report.removed.append(name)
        }
        sweptKeeping = kept
    }

    /// One domain's router namespace brought to `desired`, with `floating` its floating IP translations:
    /// observed (or taken from the last reconcile), planned, applied. A port that cannot be plugged is
    /// noted in `failures` and the rest goes on.
    private func reconcile(_ domain: DesiredDomain, _ desired: DesiredState, _ table: LocalBindingTable, keep: Set<String>,
                           _ profiles: [String: PortProfile], _ floating: [FloatingIPTranslation], resync: Bool,
                           _ report: inout ReconcileReport, _ failures: inout [String]) throws {
        let router = try ensureRouter(domain, &report)
        let kernel = self.kernel(of: router)
        var observed = try (resync ? nil : observations[domain.id]) ?? kernel.observe()
        observations[domain.id] = nil
        let local = desired.endpoints.filter { $0.domain == domain.path }
        let ruleset = compiledRuleset(domain, local, table, profiles, floating)
        let desire = RouterDesire(
            subnets: domain.subnets, remotes: desired.remoteEndpoints, ports: wantedPorts(local, domain, table, observed), keep: keep,
            shapers: ruleset.shaping.filter { $0.egress != nil }.map(\.shaper), filtersBridgedTraffic: ruleset.filtersBridgedTraffic,
            fastPorts: router.fastPath == nil ? [] : Self.fastPorts(local, domain, table, ruleset),
            fastRemotes: router.fastPath == nil ? [] : Self.fastRemotes(desired.remoteEndpoints, domain), mtu: configuration.overlayMTU)
        try RouterExecutor.apply(RouterPlanner.plan(desire, observed: observed), to: kernel, observed: &observed, &report) { port, error in
            failures.append("port \(port): \(error)")
        }
        observations[domain.id] = observed
        try syncUplink(domain, router, floating, &report)
        firewall.plan(ruleset, namespacePath: router.namespace.path, fastPath: router.fastPath)
    }

    /// The ports of a domain's local endpoints, each with how to plug it when the router lacks it, from its
    /// binding: a VM's tap, or a veth into its container's namespace while that namespace still exists.
    /// An endpoint without a binding (one being detached, or a handed-over veth) keeps a port it has.
    private func wantedPorts(_ local: [Endpoint], _ domain: DesiredDomain, _ table: LocalBindingTable,
                             _ observed: RouterObservation) -> [WantedPort] {
        local.compactMap { endpoint in
            guard let subnet = domain.subnets.first(where: { $0.path == endpoint.subnet }) else { return nil }
            let name = table.portName(of: endpoint)
            let plug = observed.link(named: name) != nil ? nil : table.byEndpoint[endpoint.id]?.plug(
                mac: endpoint.mac, address: Self.address(of: endpoint, in: subnet),
                namespaceExists: { (try? NetworkNamespace(path: $0)) != nil })
            return WantedPort(name: name, bridge: KernelNames.bridge(vni: subnet.vni), plug: plug)
        }
    }

    /// The ports whose traffic may skip the bridge and the router: no shaped port (the bridge's path shapes it)
    /// and none with flow statistics (the ruleset counts what crosses the router); and every subnet's tunnel.
    /// Where the ruleset filters, the program lets through only connections it accepted (see `FastPathAdmission`).
    private static func fastPorts(_ local: [Endpoint], _ domain: DesiredDomain, _ table: LocalBindingTable,
                                  _ ruleset: FirewallRuleset) -> [WantedFastPort] {
        let shaped = Set(ruleset.shaping.map(\.port))
        return domain.subnets.map(WantedFastPort.tunnel(of:)) + local.compactMap { endpoint in
            guard let subnet = domain.subnets.first(where: { $0.path == endpoint.subnet }), ruleset.counters[endpoint.id] == nil else {
                return nil
            }
            let port = table.portName(of: endpoint)
            return shaped.contains(port) ? nil : WantedFastPort(port: port, ip: endpoint.ip, mac: endpoint.mac, vni: subnet.vni,
                                                                gateway: subnet.gatewayMAC)
        }
    }

    /// The endpoints of the domain's subnets on other hosts, as the fast path sends to them.
    private static func fastRemotes(_ remotes: [RemoteEndpoint], _ domain: DesiredDomain) -> [FastRemote] {
        let segments = Dictionary(domain.subnets.map { ($0.path, UInt32($0.vni)) }, uniquingKeysWith: { first, _ in first })
        return remotes.compactMap { remote in segments[remote.subnet].map { FastRemote(ip: remote.ip, mac: remote.mac, segment: $0) } }
    }

    /// The address a veth's container end is given, unless the subnet serves DHCP.
    private static func address(of endpoint: Endpoint, in subnet: DesiredSubnet) -> PortAddress? {
        subnet.dhcp ? nil : PortAddress(ip: endpoint.ip, prefixLength: subnet.cidr.prefixLength, gateway: subnet.gateway)
    }

    private struct RulesetInputs: Equatable {
        var domain: DesiredDomain
        var endpoints: [Endpoint]
        var portNames: [Int: String]
        var profiles: [PortProfile]
        var floating: [FloatingIPTranslation]
    }

    private func compiledRuleset(_ domain: DesiredDomain, _ local: [Endpoint], _ table: LocalBindingTable,
                                 _ profiles: [String: PortProfile], _ floating: [FloatingIPTranslation]) -> FirewallRuleset {
        let used = Set(local.compactMap(\.profile)).sorted().compactMap { profiles[$0] }
        let portNames = Dictionary(local.map { ($0.id, table.portName(of: $0)) }, uniquingKeysWith: { a, _ in a })
        let inputs = RulesetInputs(domain: domain, endpoints: local, portNames: portNames, profiles: used, floating: floating)
        if let last = compiled[domain.id], last.inputs == inputs { return last.ruleset }
        let ruleset = FirewallRuleset(domain: domain, endpoints: local, portNames: portNames, profiles: profiles, floatingIPs: floating)
        compiled[domain.id] = (inputs, ruleset)
        return ruleset
    }

    /// The kernel of a router namespace, as the executor changes it.
    private func kernel(of router: RouterNamespace) -> NetlinkRouterKernel {
        NetlinkRouterKernel(router: router, host: hostNetlink, hostNamespace: hostNamespace, underlayIP: configuration.underlayIP,
                            mtu: configuration.overlayMTU)
    }

    private func ensureRouter(_ domain: DesiredDomain, _ report: inout ReconcileReport) throws -> RouterNamespace {
        if let router = routers[domain.id], FileManager.default.fileExists(atPath: router.namespace.path) { return router }
        // A router made or found afresh: what was recorded of another namespace of that name is no guide.
        observations[domain.id] = nil
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
        let router = RouterNamespace(name: name, namespace: namespace, netlink: netlink, packets: try PacketSocket(in: namespace),
                                     fastPath: configuration.fastPath ? FastPathSlot() : nil)
        routers[domain.id] = router
        routerMade(name)
        return router
    }

    // MARK: Attach and detach

    /// Attaches one endpoint ahead of the desired state: binds it as `port`, then makes sure of its domain's
    /// router and its subnet's bridge and plugs the port, planned against what the router holds (the port
    /// itself read afresh: a container that died took its veth along). Nothing else of the router is
    /// changed. Returns the port's name and the router's. On failure the caller detaches it.
    ///
    /// A veth's other end is born in the namespace it is bound to with the endpoint's MAC (and, unless
    /// the subnet serves DHCP, its address and a default route via the anycast gateway); a handed-over
    /// one stays in this host's namespace with the MAC and overlay MTU, for a Docker engine to move into
    /// its container; a VM's tap is persistent, opened later by the VM's monitor
    /// (`qemu -netdev tap,ifname=NAME,script=no` run in the router namespace).
    public func attach(_ endpoint: Endpoint, domain: DesiredDomain, subnet: DesiredSubnet,
                       as port: PortBinding) throws -> (port: String, router: String) {
        let binding = LocalBinding(endpoint, domainID: domain.id, port: port)
        let plug: PortPlug
        switch port {
        case .namespace(let path, let interface):
            plug = .veth(namespacePath: path, interface: interface, mac: endpoint.mac, address: Self.address(of: endpoint, in: subnet))
        case .handover(let interface): plug = .handover(interface: interface, mac: endpoint.mac, ip: endpoint.ip)
        case .tap: plug = .tap
        }
        try bindings.bind(binding)
        var report = ReconcileReport()
        let router = try ensureRouter(domain, &report)
        let kernel = self.kernel(of: router)
        let name = binding.portName
        var observed: RouterObservation
        if let cached = observations[domain.id] {
            observed = cached
            observed.record(try kernel.link(named: name), named: name)
        } else {
            observed = try kernel.observe()
        }
        observations[domain.id] = nil
        let wanted = WantedPort(name: name, bridge: KernelNames.bridge(vni: subnet.vni), plug: plug)
        let operations = RouterPlanner.plan(port: wanted, subnet: subnet, mtu: configuration.overlayMTU, observed: observed)
        try RouterExecutor.apply(operations, to: kernel, observed: &observed, &report) { _, error in throw error }
        observations[domain.id] = observed
        return (name, router.name)
    }

    /// Removes an endpoint's port (its container end goes with it) and its binding; the caller releases
    /// the address after.
    public func detach(_ endpoint: Endpoint, domainID: Int) throws {
        let port = bindings.binding(of: endpoint.id)?.portName ?? KernelNames.port(endpointID: endpoint.id)
        try bindings.unbind([endpoint.id])
        let name = KernelNames.routerNamespace(host: configuration.host, domainID: domainID)
        guard NetworkNamespace.names().contains(name) else { return }
        let namespace = try NetworkNamespace(named: name)
        let netlink = try routers[domainID]?.netlink ?? RouteNetlink(in: namespace)
        if let link = try netlink.link(named: port) {
            try netlink.deleteLink(index: link.index)
        }
        observations[domainID]?.forgetLink(named: port)
    }
}
