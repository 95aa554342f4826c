import Foundation
import Synchronization
import Testing
@testable import TrellisAgent
import TrellisModel
import TrellisNetlink
import TrellisNetlinkWire

/// The datapath alone against the real kernel: two hosts on an underlay, desired states written by hand.
@Suite(.enabled(if: isRoot, "needs root for network namespaces"), .serialized)
struct DatapathTests {
    let tag = "t\(UInt32.random(in: 0..<0xfffff))"
    let domainID = Int.random(in: 100_000..<900_000)
    let vnis = (Int.random(in: 5000..<100_000), Int.random(in: 100_000..<200_000))

    func subnet(_ path: String, _ cidr: String, vni: Int, vteps: [String]) throws -> DesiredSubnet {
        let network = try IPv4Network.parse(cidr)
        return DesiredSubnet(path: path, cidr: network, gateway: network.firstHost, gatewayMAC: .gateway(vni: vni), vni: vni,
                             dhcp: false, remoteVTEPs: vteps.map { IPv4Address($0)! })
    }

    func endpoint(_ id: Int, _ subnet: String, host: String, ip: String) -> Endpoint {
        Endpoint(id: id, path: "\(subnet)/e\(id)", name: "e\(id)", subnet: subnet, domain: "acme/app1", enterprise: "acme",
                 kind: .container, host: host, ip: IPv4Address(ip)!, mac: .endpoint(sequence: UInt32(id)), state: .pending,
                 externalIds: [:], revision: 1, createdAt: Date(timeIntervalSince1970: 0))
    }

    /// A datapath whose `bound` endpoints are bound to their containers' namespaces as `eth0`, as attaches
    /// would have left them.
    func datapath(host: String, underlay: String = "10.88.1.1", in namespace: NetworkNamespace,
                  bindings: LocalBindingStore? = nil, routerMade: @escaping @Sendable (String) -> Void = { _ in },
                  bound: [(Endpoint, NetworkNamespace)] = []) throws -> Datapath {
        let datapath = try Datapath(configuration: DatapathConfiguration(host: host, underlayIP: IPv4Address(underlay)!),
                                    hostNamespace: namespace, bindings: try bindings ?? LocalBindingStore(path: nil),
                                    routerMade: routerMade)
        for (endpoint, container) in bound {
            try datapath.bindings.bind(LocalBinding(endpoint, domainID: domainID,
                                                    port: .namespace(path: container.path, interface: "eth0")))
        }
        return datapath
    }

    /// One host's desired state with only local `endpoints`, all in `domain` (no domain when there are none).
    func localState(host: String, revision: Int, domain: DesiredDomain, endpoints: [Endpoint]) -> DesiredState {
        DesiredState(host: host, revision: revision, underlayIP: IPv4Address("10.88.1.1"), domains: endpoints.isEmpty ? [] : [domain],
                     endpoints: endpoints, remoteEndpoints: [], profiles: [])
    }

    /// Deletes the router namespaces the test's datapath made for `host`.
    func deleteRouters(of host: String) {
        for router in NetworkNamespace.names() where router.hasPrefix(KernelNames.routerPrefix(host: host)) {
            try? NetworkNamespace.delete(named: router)
        }
    }

    func remote(_ endpoint: Endpoint, vtep: String) -> RemoteEndpoint {
        RemoteEndpoint(path: endpoint.path, subnet: endpoint.subnet, ip: endpoint.ip, mac: endpoint.mac, host: endpoint.host!,
                       vtep: IPv4Address(vtep)!)
    }

    @Test func overlayBetweenTwoHostsWithRoutingBetweenSubnets() async throws {
        let namespaces = Namespaces()
        let h1 = try namespaces.make("h1"), h2 = try namespaces.make("h2")
        let c1 = try namespaces.make("c1"), c2 = try namespaces.make("c2"), c3 = try namespaces.make("c3")
        let hosts = ["\(tag)h1", "\(tag)h2"]
        defer {
            for name in NetworkNamespace.names() where hosts.contains(where: { name.hasPrefix(KernelNames.routerPrefix(host: $0)) }) {
                try? NetworkNamespace.delete(named: name)
            }
        }
        let underlay = try RouteNetlink(in: h1)
        try underlay.createLink(LinkSpec(name: "u0", kind: .veth(peerName: "u0", peerMAC: nil, peerNamespace: h2.fd), up: true))
        for (namespace, address) in [(h1, "10.88.0.1"), (h2, "10.88.0.2")] {
            let netlink = try RouteNetlink(in: namespace)
            let link = try netlink.requireLink(named: "u0")
            try netlink.setLink(index: link.index, up: true)
            try netlink.addAddress(index: link.index, IPv4Address(address)!, prefixLength: 24)
        }

        let red = "acme/app1/web/red", blue = "acme/app1/db/blue"
        let e1 = endpoint(1, red, host: hosts[0], ip: "192.168.70.2")
        let e2 = endpoint(2, red, host: hosts[1], ip: "192.168.70.3")
        let e3 = endpoint(3, blue, host: hosts[1], ip: "192.168.71.2")
        // Red and blue talk only as this policy says: UDP from red to blue, and back as replies.
        let policy = NetworkPolicy(path: "acme/app1/red-blue", name: "red-blue", domain: "acme/app1",
                                   rules: [try PolicyRule.parse("allow udp from \(red) to \(blue)")], revision: 1, createdAt: Date())
        func state(_ host: Int, policies: [NetworkPolicy] = [policy]) throws -> DesiredState {
            let other = host == 0 ? "10.88.0.2" : "10.88.0.1"
            let subnets = [try subnet(red, "192.168.70.0/24", vni: vnis.0, vteps: [other]), try subnet(blue, "192.168.71.0/24", vni: vnis.1,
                vteps: [other])]
            let me: String? = hosts[host]
            let local = [e1, e2, e3].filter { $0.host == me }
            let remotes = [e1, e2, e3].filter { $0.host != me }.map { remote($0, vtep: other) }
            return DesiredState(host: hosts[host], revision: 1, underlayIP: IPv4Address(host == 0 ? "10.88.0.1" : "10.88.0.2"),
                                domains: [DesiredDomain(path: "acme/app1", id: domainID, subnets: subnets, policies: policies)],
                                endpoints: local, remoteEndpoints: remotes, profiles: [])
        }
        let datapaths = [
            try datapath(host: hosts[0], underlay: "10.88.0.1", in: h1, bound: [(e1, c1)]),
            try datapath(host: hosts[1], underlay: "10.88.0.2", in: h2, bound: [(e2, c2), (e3, c3)]),
        ]
        let first = try await datapaths[0].reconcile(try state(0, policies: []))
        #expect(first.created.contains(KernelNames.routerNamespace(host: hosts[0], domainID: domainID)))
        #expect(first.created.contains(KernelNames.port(endpointID: e1.id)))
        _ = try await datapaths[1].reconcile(try state(1, policies: []))
        for datapath in datapaths { try datapath.firewall.sync() }
        // Without a policy the subnets do not meet, while red still reaches red.
        #expect(try udpExchange(from: c1, to: c2, address: e2.ip, port: 7000, text: "red to red") == "red to red")
        #expect(try udpExchange(from: c1, to: c3, address: e3.ip, port: 7000, text: "red to blue") == nil)
        for (index, datapath) in datapaths.enumerated() {
            _ = try await datapath.reconcile(try state(index))
            try datapath.firewall.sync()
        }

        // Inside the container: its MAC, its address, a default route via the anycast gateway, MTU 1450.
        let inside = try RouteNetlink(in: c1)
        let eth0 = try inside.requireLink(named: "eth0")
        #expect(eth0.mac == e1.mac && eth0.mtu == 1450 && eth0.isUp)
        #expect(try inside.addresses().contains { $0.address == e1.ip && $0.prefixLength == 24 })
        #expect(try inside.routes().contains { $0.destination == nil && $0.gateway?.description == "192.168.70.1" })

        // Same subnet across hosts, and routed between subnets across hosts.
        #expect(try udpExchange(from: c1, to: c2, address: e2.ip, port: 7001, text: "red to red") == "red to red")
        #expect(try udpExchange(from: c1, to: c3, address: e3.ip, port: 7002, text: "red to blue") == "red to blue")
        #expect(try udpExchange(from: c3, to: c1, address: e1.ip, port: 7003, text: "blue to red") == nil, "blue may only answer red")

        // ARP for remote endpoints is answered on the host: static neighbour entries on the gateway bridge.
        let router = try RouteNetlink(in: try NetworkNamespace(named: KernelNames.routerNamespace(host: hosts[0], domainID: domainID)))
        let bridge = try router.requireLink(named: KernelNames.bridge(vni: vnis.0))
        #expect(try router.neighbours().contains { $0.index == bridge.index && $0.address == e2.ip && $0.mac == e2.mac && $0.isPermanent })

        // Level-triggered: a second pass changes nothing.
        let again = try await datapaths[0].reconcile(try state(0))
        #expect(again.isEmpty, "\(again)")

        // e2 leaves: its FDB and neighbour entries go from h1; a drifted link is repaired.
        var without = try state(0)
        without.remoteEndpoints.removeAll { $0.path == e2.path }
        _ = try await datapaths[0].reconcile(without)
        let vxlan = try router.requireLink(named: KernelNames.vxlan(vni: vnis.0))
        let fdb = try router.neighbours(family: NL.AF_BRIDGE).filter { $0.index == vxlan.index }
        #expect(!fdb.contains { $0.mac == e2.mac }, "\(fdb.filter { $0.mac == e2.mac })")
        #expect(try !router.neighbours().contains { $0.address == e2.ip })

        // Nothing desired, and e1's binding gone (the controller said so): every router namespace and port of this host goes.
        try datapaths[0].bindings.unbind([e1.id])
        let emptied = try await datapaths[0].reconcile(DesiredState(host: hosts[0], revision: 2, underlayIP: nil, domains: [],
                                                                     endpoints: [], remoteEndpoints: [], profiles: []))
        #expect(emptied.removed == [KernelNames.routerNamespace(host: hosts[0], domainID: domainID)])
        #expect(try RouteNetlink(in: c1).link(named: "eth0") == nil, "the container end went with its port")
    }

    /// An attach runs ahead of the watch: the controller made the endpoint at revision 7, but a reconcile
    /// of revision 6 (which does not list it) may still run. It must not take the new port, nor its
    /// router namespace, for strays. Nor may one of revision 8 that does not list it (a controller can
    /// publish two changes out of order): the port goes once its binding does.
    @Test func aReconcileBehindTheWatchKeepsPortsJustPlugged() async throws {
        let namespaces = Namespaces()
        let host = try namespaces.make("h"), container = try namespaces.make("c")
        let name = "\(tag)h"
        defer { deleteRouters(of: name) }
        let red = "acme/app1/web/red"
        let desiredSubnet = try subnet(red, "192.168.72.0/24", vni: vnis.0, vteps: [])
        let domain = DesiredDomain(path: "acme/app1", id: domainID, subnets: [desiredSubnet], policies: [])
        var fresh = endpoint(9, red, host: name, ip: "192.168.72.9")
        fresh.revision = 7
        func state(_ revision: Int, endpoints: [Endpoint]) -> DesiredState {
            localState(host: name, revision: revision, domain: domain, endpoints: endpoints)
        }
        let datapath = try self.datapath(host: name, in: host)
        let port = try await datapath.attach(fresh, domain: domain, subnet: desiredSubnet,
                                             as: .namespace(path: container.path, interface: "eth0")).port
        let routerName = KernelNames.routerNamespace(host: name, domainID: domainID)

        let behind = try await datapath.reconcile(state(6, endpoints: []))
        #expect(behind.removed.isEmpty, "\(behind)")
        #expect(try RouteNetlink(in: container).link(named: "eth0") != nil, "the container keeps its interface")
        #expect(try RouteNetlink(in: try NetworkNamespace(named: routerName)).link(named: port) != nil)
        #expect(await datapath.routerNames() == [routerName], "the agent serves DNS in the routers the datapath keeps")

        let caughtUp = try await datapath.reconcile(state(7, endpoints: [fresh]))
        #expect(caughtUp.isEmpty, "\(caughtUp)")
        let unlisted = try await datapath.reconcile(state(8, endpoints: []))
        #expect(unlisted.isEmpty, "\(unlisted)")
        #expect(datapath.bindings.current.inDoubt(in: state(8, endpoints: [])).map(\.endpointID) == [fresh.id])
        // The controller says it is gone: the agent unbinds it.
        try datapath.bindings.unbind([fresh.id])
        let gone = try await datapath.reconcile(state(8, endpoints: []))
        #expect(gone.removed == [routerName], "\(gone)")
        #expect(await datapath.routerNames().isEmpty)
        #expect(try RouteNetlink(in: container).link(named: "eth0") == nil)
    }

    /// One container that refuses its port (its namespace already has an `eth0`) fails the reconcile
    /// naming that port, but nothing else waits for it: the healthy container beside it is plugged and a
    /// remote endpoint's forwarding entries are made in the same pass.
    @Test func aPortThatCannotBePluggedHoldsUpNothingElse() async throws {
        let namespaces = Namespaces()
        let host = try namespaces.make("h"), broken = try namespaces.make("b"), healthy = try namespaces.make("c")
        let name = "\(tag)h"
        defer { deleteRouters(of: name) }
        try RouteNetlink(in: broken).createLink(LinkSpec(name: "eth0", kind: .bridge))
        let red = "acme/app1/web/red"
        let desiredSubnet = try subnet(red, "192.168.74.0/24", vni: vnis.0, vteps: ["10.88.1.2"])
        let domain = DesiredDomain(path: "acme/app1", id: domainID, subnets: [desiredSubnet], policies: [])
        let refused = endpoint(1, red, host: name, ip: "192.168.74.2")
        let fine = endpoint(2, red, host: name, ip: "192.168.74.3")
        let elsewhere = remote(endpoint(3, red, host: "other", ip: "192.168.74.4"), vtep: "10.88.1.2")
        var state = localState(host: name, revision: 1, domain: domain, endpoints: [refused, fine])
        state.remoteEndpoints = [elsewhere]
        let datapath = try self.datapath(host: name, in: host, bound: [(refused, broken), (fine, healthy)])

        do {
            try await datapath.reconcile(state)
            Issue.record("the reconcile reported success with a port it could not plug")
        } catch let failure as ReconcileFailure {
            #expect(failure.failures.count == 1 && failure.description.contains(KernelNames.port(endpointID: refused.id)), "\(failure)")
            #expect(failure.report.created.contains(KernelNames.port(endpointID: fine.id)), "\(failure.report)")
        }
        #expect(try RouteNetlink(in: healthy).link(named: "eth0") != nil, "the healthy container got its port")
        let router = try RouteNetlink(in: try NetworkNamespace(named: KernelNames.routerNamespace(host: name, domainID: domainID)))
        let bridge = try router.requireLink(named: KernelNames.bridge(vni: vnis.0))
        #expect(try router.neighbours().contains { $0.index == bridge.index && $0.address == elsewhere.ip && $0.mac == elsewhere.mac },
                "the remote endpoint is answered for")
        #expect(try router.link(named: KernelNames.port(endpointID: refused.id)) == nil, "no half-made port")
    }

    /// The agent starts each router's resolver when the datapath announces the router: that must come
    /// before the first port of the router is plugged (a container may ask for a name at once), for a
    /// router made by a reconcile and by an attach alike, and again for a router found after a restart.
    @Test func routersAreAnnouncedBeforeTheirFirstPort() async throws {
        let namespaces = Namespaces()
        let host = try namespaces.make("h"), container = try namespaces.make("c")
        let name = "\(tag)h"
        defer { deleteRouters(of: name) }
        let red = "acme/app1/web/red"
        let desiredSubnet = try subnet(red, "192.168.73.0/24", vni: vnis.0, vteps: [])
        let domain = DesiredDomain(path: "acme/app1", id: domainID, subnets: [desiredSubnet], policies: [])
        let member = endpoint(9, red, host: name, ip: "192.168.73.9")
        func state(_ revision: Int, endpoints: [Endpoint]) -> DesiredState {
            localState(host: name, revision: revision, domain: domain, endpoints: endpoints)
        }
        /// Each announcement: the router's name and how many ports it had at that moment.
        let announced = Mutex<[(router: String, ports: Int)]>([])
        let routerMade: @Sendable (String) -> Void = { router in
            let ports = (try? RouteNetlink(in: NetworkNamespace(named: router)).links().filter { $0.name.hasPrefix("trv") }.count) ?? -1
            announced.withLock { $0.append((router, ports)) }
        }
        let routerName = KernelNames.routerNamespace(host: name, domainID: domainID)

        let file = "/tmp/\(tag)-bindings.json"
        defer { try? FileManager.default.removeItem(atPath: file) }
        let datapath = try self.datapath(host: name, in: host, bindings: try LocalBindingStore(path: file), routerMade: routerMade,
                                    bound: [(member, container)])
        let made = try await datapath.reconcile(state(1, endpoints: [member]))
        #expect(made.created.contains(KernelNames.port(endpointID: member.id)), "\(made)")
        #expect(announced.withLock { $0.map(\.router) } == [routerName])
        #expect(announced.withLock { $0.map(\.ports) } == [0], "announced before the reconcile plugged its port")

        try await datapath.detach(member, domainID: domainID)
        try await datapath.reconcile(state(2, endpoints: []))
        #expect(datapath.bindings.current.byEndpoint.isEmpty && NetworkNamespace.names().contains(routerName) == false)
        _ = try await datapath.attach(member, domain: domain, subnet: desiredSubnet,
                                      as: .namespace(path: container.path, interface: "eth0"))
        #expect(announced.withLock { $0.map(\.ports) } == [0, 0], "a router made again by an attach is announced again, before its port")

        // A restart reads the bindings back from their file.
        let restarted = try self.datapath(host: name, in: host, bindings: try LocalBindingStore(path: file), routerMade: routerMade)
        #expect(restarted.bindings.current == datapath.bindings.current)
        let resynced = try await restarted.reconcile(state(3, endpoints: [member]))
        #expect(resynced.isEmpty, "\(resynced)")
        #expect(announced.withLock { $0.map(\.router) } == [routerName, routerName, routerName],
                "a restarted agent serves the router it finds")
    }

    /// Reconciles between resyncs plan against the executor's record instead of reading the kernel: after
    /// remote endpoints came and went, and a port was plugged by an attach, the record must hold what the
    /// kernel holds, or the next plan would be wrong. A resync still finds a port removed behind its back.
    @Test func theRecordKeptBetweenResyncsIsWhatTheKernelHolds() async throws {
        let namespaces = Namespaces()
        let host = try namespaces.make("h"), c1 = try namespaces.make("c1"), c2 = try namespaces.make("c2")
        let name = "\(tag)h"
        defer { deleteRouters(of: name) }
        let red = "acme/app1/web/red"
        let desiredSubnet = try subnet(red, "192.168.75.0/24", vni: vnis.0, vteps: ["10.88.1.2"])
        let domain = DesiredDomain(path: "acme/app1", id: domainID, subnets: [desiredSubnet], policies: [])
        let first = endpoint(1, red, host: name, ip: "192.168.75.2")
        var second = endpoint(2, red, host: name, ip: "192.168.75.3")
        second.revision = 4
        let far = (3...6).map { remote(endpoint($0, red, host: "other", ip: "192.168.75.\($0 + 10)"), vtep: "10.88.1.2") }
        func state(_ revision: Int, _ endpoints: [Endpoint], _ remotes: [RemoteEndpoint]) -> DesiredState {
            var state = localState(host: name, revision: revision, domain: domain, endpoints: endpoints)
            state.remoteEndpoints = remotes
            return state
        }
        let datapath = try self.datapath(host: name, in: host, bound: [(first, c1)])
        try await datapath.reconcile(state(1, [first], Array(far[0..<2])))
        try await datapath.reconcile(state(2, [first], Array(far[1..<4])), resync: false)
        _ = try await datapath.attach(second, domain: domain, subnet: desiredSubnet, as: .namespace(path: c2.path, interface: "eth0"))
        try await datapath.reconcile(state(3, [first], [far[3], far[0]]), resync: false)

        let router = try RouteNetlink(in: try NetworkNamespace(named: KernelNames.routerNamespace(host: name, domainID: domainID)))
        let recorded = try #require(await datapath.recordedObservation(domainID: domainID))
        let kernel = RouterObservation(links: try router.links(), addresses: try router.addresses(),
                                       fdb: try router.neighbours(family: NL.AF_BRIDGE), neighbours: try router.neighbours())
        /// What plans look at: links with their master and state, tunnels, the bridge's entries on the VXLAN port, permanent neighbours.
        func planned(_ observation: RouterObservation) -> [String] {
            let links = observation.links.map { "link \($0.name) #\($0.index) master \($0.master ?? 0) up \($0.isUp) mtu \($0.mtu ?? 0)" }
            let vxlan = observation.link(named: KernelNames.vxlan(vni: vnis.0))?.index
            // The VXLAN device's own MAC is a permanent entry the kernel makes, which plans leave alone.
            let fdb = observation.fdb.filter { $0.index == vxlan && !($0.isPermanent && $0.address == nil) }
                .map { "fdb \($0.mac!) \($0.address.map(\.description) ?? "master")" }
            let neighbours = observation.neighbours.filter(\.isPermanent).map { "neigh \($0.address!) \($0.mac!)" }
            return (links + fdb + neighbours).sorted()
        }
        #expect(planned(recorded) == planned(kernel))
        #expect(planned(kernel).filter { $0.hasPrefix("neigh") } == [far[0], far[3]].map { "neigh \($0.ip) \($0.mac)" }.sorted(),
                "the kernel has the remote endpoints of the last state, and only those")
        #expect(try router.link(named: KernelNames.port(endpointID: second.id)) != nil, "the port plugged ahead is kept")

        // Removed behind the datapath's back: not seen between resyncs, mended at the next one.
        try router.deleteLink(index: try router.requireLink(named: KernelNames.port(endpointID: first.id)).index)
        let unseen = try await datapath.reconcile(state(5, [first, second], [far[3], far[0]]), resync: false)
        #expect(unseen.isEmpty, "\(unseen)")
        let resynced = try await datapath.reconcile(state(5, [first, second], [far[3], far[0]]))
        #expect(resynced.created == [KernelNames.port(endpointID: first.id)], "\(resynced)")
        #expect(try RouteNetlink(in: c1).link(named: "eth0") != nil)
    }
}
