import TrellisFastPath
import TrellisModel
import TrellisNetlinkWire

/// What the kernel holds in one router namespace, as far as its plan looks: links, IPv4 addresses, the
/// bridge-family FDB and the IPv4 neighbours. Read whole at a resync, then kept current by the executor
/// from what it applied, so that a change is planned without reading the kernel again.
public struct RouterObservation: Equatable, Sendable {
    public var links: [Link] { didSet { linkPositions = Self.positions(of: links) } }
    /// Where each link is in `links`, by name: a plan looks ports up by name once or more each, and a
    /// linear search made a plan quadratic in the number of ports.
    private var linkPositions: [String: Int]
    public var addresses: [InterfaceAddress]
    public var fdb: [Neighbour]
    public var neighbours: [Neighbour]
    /// The ports on the fast path, by name, as this process's fast-path program holds them (its own record).
    public var fastPorts: [String: FastPort]
    /// The links with a hook point for a fast-path program (a clsact qdisc), by name, whoever hooked what there:
    /// filters outlive the agent, so a restarted one finds its predecessor's.
    public var fastHooks: Set<String>
    /// Of those, the ones whose filter runs this process's program (on the fast path, or inert).
    public var ownHooks: Set<String>
    /// The endpoints on other hosts the fast path sends to, as the program holds them.
    public var fastRemotes: Set<FastRemote>

    public init(links: [Link] = [], addresses: [InterfaceAddress] = [], fdb: [Neighbour] = [], neighbours: [Neighbour] = [],
                fastPorts: [String: FastPort] = [:], fastHooks: Set<String> = [], ownHooks: Set<String> = [],
                fastRemotes: Set<FastRemote> = []) {
        self.links = links
        linkPositions = Self.positions(of: links)
        self.addresses = addresses
        self.fdb = fdb
        self.neighbours = neighbours
        self.fastPorts = fastPorts
        self.fastHooks = fastHooks
        self.ownHooks = ownHooks
        self.fastRemotes = fastRemotes
    }

    public func link(named name: String) -> Link? { linkPositions[name].map { links[$0] } }

    /// The first position of each name, as a search from the start would find it.
    private static func positions(of links: [Link]) -> [String: Int] {
        Dictionary(links.enumerated().map { ($0.element.name, $0.offset) }, uniquingKeysWith: { first, _ in first })
    }
}

/// An address, prefix and default gateway given to a container's interface when its subnet does not serve DHCP.
public struct PortAddress: Equatable, Sendable {
    public var ip: IPv4Address
    public var prefixLength: Int
    public var gateway: IPv4Address

    public init(ip: IPv4Address, prefixLength: Int, gateway: IPv4Address) {
        self.ip = ip
        self.prefixLength = prefixLength
        self.gateway = gateway
    }
}

/// How a missing port is made.
public enum PortPlug: Equatable, Sendable {
    /// A veth whose other end, `interface`, is born in the network namespace at `namespacePath` with `mac`
    /// (and, given an `address`, that address and a default route, announced by a gratuitous ARP).
    case veth(namespacePath: String, interface: String, mac: MACAddress, address: PortAddress?)
    /// A veth whose other end, `interface`, stays in the host namespace with `mac` for a Docker engine to
    /// move into its container; `ip` is announced. Made afresh each time it is asked for.
    case handover(interface: String, mac: MACAddress, ip: IPv4Address)
    /// A persistent tap (a VM's port), opened later by the VM's monitor.
    case tap
}

/// A local port a router namespace should have, on its subnet's bridge.
public struct WantedPort: Equatable, Sendable {
    public var name: String
    public var bridge: String
    /// How to make it when it is missing; nil when a missing one is left missing (its container is gone,
    /// or only its engine can make it).
    public var plug: PortPlug?

    public init(name: String, bridge: String, plug: PortPlug?) {
        self.name = name
        self.bridge = bridge
        self.plug = plug
    }
}

/// A local port whose traffic to the router's other fast ports, and to endpoints on other hosts, takes the
/// fast path where the ruleset allows: the container's address and MAC, the subnet's VNI and the router's
/// MAC on the subnet. Or a tunnel: the subnet's VXLAN device, named `port`.
public struct WantedFastPort: Equatable, Sendable {
    public var port: String
    public var ip: IPv4Address
    public var mac: MACAddress
    public var vni: Int
    public var gateway: MACAddress
    public var tunnel: Bool

    public init(port: String, ip: IPv4Address, mac: MACAddress, vni: Int, gateway: MACAddress, tunnel: Bool = false) {
        self.port = port
        self.ip = ip
        self.mac = mac
        self.vni = vni
        self.gateway = gateway
        self.tunnel = tunnel
    }

    /// A subnet's VXLAN device on the fast path.
    public static func tunnel(of subnet: DesiredSubnet) -> WantedFastPort {
        WantedFastPort(port: KernelNames.vxlan(vni: subnet.vni), ip: IPv4Address(0), mac: MACAddress(0)!, vni: subnet.vni,
                       gateway: subnet.gatewayMAC, tunnel: true)
    }

    /// The program's entry for this port when its host end has index `ifindex`.
    func entry(ifindex: Int32) -> FastPort {
        FastPort(ifindex: ifindex, ip: ip, mac: mac, segment: UInt32(vni), gateway: gateway, tunnel: tunnel)
    }
}

/// What one router namespace should hold.
public struct RouterDesire: Equatable, Sendable {
    public var subnets: [DesiredSubnet]
    /// Endpoints of these subnets on other hosts.
    public var remotes: [RemoteEndpoint]
    public var ports: [WantedPort]
    /// Ports left alone although no desired endpoint names them: plugged by an attach ahead of the desired state.
    public var keep: Set<String>
    /// The ifbs that shape what ports send.
    public var shapers: [String]
    /// Whether the bridges hand bridged IPv4 frames to the IP hooks (a policy filters traffic within a subnet).
    public var filtersBridgedTraffic: Bool
    /// The ports on the fast path: none whose traffic is counted or shaped (what the ruleset filters, the
    /// program lets through only for connections the ruleset accepted), and the subnets' tunnels.
    public var fastPorts: [WantedFastPort]
    /// The endpoints on other hosts the fast path sends to.
    public var fastRemotes: [FastRemote]
    public var mtu: UInt32

    public init(subnets: [DesiredSubnet], remotes: [RemoteEndpoint], ports: [WantedPort], keep: Set<String> = [], shapers: [String] = [],
                filtersBridgedTraffic: Bool = false, fastPorts: [WantedFastPort] = [], fastRemotes: [FastRemote] = [], mtu: UInt32) {
        self.subnets = subnets
        self.remotes = remotes
        self.ports = ports
        self.keep = keep
        self.shapers = shapers
        self.filtersBridgedTraffic = filtersBridgedTraffic
        self.fastPorts = fastPorts
        self.fastRemotes = fastRemotes
        self.mtu = mtu
    }
}

/// One change to a router namespace's kernel objects, which are named, never numbered: the executor
/// finds a link's index when it applies the change.
public enum RouterOperation: Equatable, Sendable {
    case createBridge(name: String, mtu: UInt32, mac: MACAddress)
    /// A VXLAN device made from the host namespace (its UDP socket is the host's) and placed in the router.
    case createVXLAN(name: String, vni: Int, mtu: UInt32)
    case createShaper(name: String)
    /// Sets the link up, and its master, MTU and MAC where given.
    case setLink(name: String, master: String? = nil, mtu: UInt32? = nil, mac: MACAddress? = nil)
    /// No learning, ARP answered from the bridge's neighbour entries: a VXLAN device's bridge-port options.
    case suppressOnBridgePort(name: String)
    case setBridgeHooks(bridge: String, enabled: Bool)
    case addAddress(link: String, address: IPv4Address, prefixLength: Int)
    /// A VXLAN FDB entry: frames for `mac` (all-zero: flooded frames) go to `vtep`.
    case addTunnel(vxlan: String, mac: MACAddress, vtep: IPv4Address)
    case deleteTunnel(vxlan: String, mac: MACAddress, vtep: IPv4Address)
    /// The bridge's own static entry: `mac` is behind the VXLAN port.
    case addBridgeEntry(vxlan: String, mac: MACAddress)
    case deleteBridgeEntry(vxlan: String, mac: MACAddress)
    /// A permanent neighbour on the bridge, announced on the segment by a gratuitous ARP.
    case setNeighbour(bridge: String, address: IPv4Address, mac: MACAddress)
    case deleteNeighbour(bridge: String, address: IPv4Address)
    case plug(port: String, bridge: String, PortPlug)
    case deleteLink(name: String)
    /// Puts a port on the fast path (its program attached, its entries in the maps), found by name when applied.
    case addFastPort(WantedFastPort)
    /// Takes a port off the fast path (out of the program's maps; its filter stays, inert), or disarms a hook
    /// another process's program runs.
    case removeFastPort(name: String)
    /// Endpoints on other hosts the fast path sends to (first the ones it no longer should, last the new ones).
    case addFastRemotes([FastRemote])
    case removeFastRemotes([FastRemote])

    /// The port a plug makes, or a port put on the fast path: its failure is that port's, and the rest of
    /// the router goes on (a port the fast path refuses keeps the bridge path).
    public var pluggedPort: String? {
        switch self {
        case .plug(let port, _, _): return port
        case .addFastPort(let wanted): return wanted.port
        default: return nil
        }
    }
}

/// Plans a router namespace: the desired subnets, forwarding and ports against what the kernel holds.
/// Pure, so every decision is tested without a kernel; what already matches gives no operation.
public enum RouterPlanner {
    /// Every operation that brings the router to `desire`, strays (links Trellis made that nothing wants) removed last.
    public static func plan(_ desire: RouterDesire, observed: RouterObservation) -> [RouterOperation] {
        var operations: [RouterOperation] = []
        var kept = desire.keep
        var portOperations: [String: [RouterOperation]] = [:]
        for port in desire.ports { portOperations[port.name] = Self.portOperations(port, observed: observed) }
        let fast = fastPathChanges(desire, observed: observed, portOperations: portOperations)
        let remotes = Set(desire.fastRemotes)
        let gone = observed.fastRemotes.subtracting(remotes), new = remotes.subtracting(observed.fastRemotes)
        if !gone.isEmpty { operations.append(.removeFastRemotes(gone.sorted { $0.ip < $1.ip })) }
        operations += fast.removals
        for subnet in desire.subnets {
            operations += ensure(subnet, mtu: desire.mtu, observed: observed)
            kept.formUnion([KernelNames.bridge(vni: subnet.vni), KernelNames.vxlan(vni: subnet.vni)])
            operations += forwarding(subnet, remotes: desire.remotes.filter { $0.subnet == subnet.path }, observed: observed)
        }
        for port in desire.ports {
            let ports = portOperations[port.name] ?? []
            operations += ports
            if observed.link(named: port.name) != nil || !ports.isEmpty { kept.insert(port.name) }
        }
        for shaper in desire.shapers {
            kept.insert(shaper)
            if observed.link(named: shaper) == nil { operations.append(.createShaper(name: shaper)) }
        }
        for subnet in desire.subnets {
            let bridge = KernelNames.bridge(vni: subnet.vni)
            if observed.link(named: bridge)?.bridgeCallsIPHooks != desire.filtersBridgedTraffic {
                operations.append(.setBridgeHooks(bridge: bridge, enabled: desire.filtersBridgedTraffic))
            }
        }
        for link in observed.links where KernelNames.isOwned(link) && !kept.contains(link.name) {
            operations.append(.deleteLink(name: link.name))
        }
        operations += fast.additions
        if !new.isEmpty { operations.append(.addFastRemotes(new.sorted { $0.ip < $1.ip })) }
        return operations
    }

    /// Ports taken off the fast path (first, before anything is unplugged or replugged: no frame is sent
    /// to a host end that is going) and put on it (last, once their links exist). A port is on it when it
    /// is a veth (a tap has no peer to hand frames to) and not about to be made afresh; a tunnel always.
    static func fastPathChanges(_ desire: RouterDesire, observed: RouterObservation, portOperations: [String: [RouterOperation]])
        -> (removals: [RouterOperation], additions: [RouterOperation]) {
        var wanted: [String: WantedFastPort] = [:]
        for port in desire.fastPorts where wanted[port.port] == nil { wanted[port.port] = port }
        // A hook whose filter is not this process's program's (a predecessor's) is disarmed unless wanted.
        let foreign = observed.fastHooks.subtracting(observed.ownHooks).filter { observed.fastPorts[$0] == nil && wanted[$0] == nil }
        let leaving = Set(observed.fastPorts.keys).union(foreign).sorted().filter { name in
            guard observed.fastPorts[name] != nil else { return true }
            let current = wanted[name].flatMap { wanted in observed.link(named: name).map { wanted.entry(ifindex: $0.index) } }
            return current != observed.fastPorts[name] || portOperations[name]?.isEmpty == false
        }
        let staying = Set(observed.fastPorts.keys).subtracting(leaving)
        let joining = desire.fastPorts.filter { port in
            guard wanted.removeValue(forKey: port.port) == port, !staying.contains(port.port) else { return false }
            return port.tunnel || isVeth(port.port, portOperations[port.port] ?? [], observed: observed)
        }
        return (leaving.map { .removeFastPort(name: $0) }, joining.map { .addFastPort($0) })
    }

    /// Whether a port is a veth, or will be once its planned plug is applied: a tap has no peer to hand frames to.
    static func isVeth(_ name: String, _ operations: [RouterOperation], observed: RouterObservation) -> Bool {
        let plugs = operations.compactMap { operation -> PortPlug? in if case .plug(_, _, let plug) = operation { plug } else { nil } }
        if let plug = plugs.last { return plug != .tap }
        return observed.link(named: name)?.kind == "veth"
    }

    /// What plugging one port needs: its subnet's bridge and VXLAN device made sure of, then the port.
    /// Nothing else of the router is looked at (an attach must not wait for, or undo, the rest).
    public static func plan(port: WantedPort, subnet: DesiredSubnet, mtu: UInt32, observed: RouterObservation) -> [RouterOperation] {
        ensure(subnet, mtu: mtu, observed: observed) + portOperations(port, observed: observed)
    }

    /// A subnet's bridge (with the anycast gateway's MAC and address) and its VXLAN device as the bridge's port.
    static func ensure(_ subnet: DesiredSubnet, mtu: UInt32, observed: RouterObservation) -> [RouterOperation] {
        var operations: [RouterOperation] = []
        let bridgeName = KernelNames.bridge(vni: subnet.vni), vxlanName = KernelNames.vxlan(vni: subnet.vni)
        let bridge = observed.link(named: bridgeName)
        if let bridge {
            if bridge.mtu != mtu || bridge.mac != subnet.gatewayMAC || !bridge.isUp {
                operations.append(.setLink(name: bridgeName, mtu: mtu, mac: subnet.gatewayMAC))
            }
        } else {
            operations.append(.createBridge(name: bridgeName, mtu: mtu, mac: subnet.gatewayMAC))
        }
        let prefixLength = subnet.cidr.prefixLength
        let addressed = bridge.map { bridge in
            observed.addresses.contains { $0.index == bridge.index && $0.address == subnet.gateway && $0.prefixLength == prefixLength }
        } ?? false
        if !addressed { operations.append(.addAddress(link: bridgeName, address: subnet.gateway, prefixLength: prefixLength)) }
        let vxlan = observed.link(named: vxlanName)
        if vxlan == nil { operations.append(.createVXLAN(name: vxlanName, vni: subnet.vni, mtu: mtu)) }
        if let vxlan, let bridge, vxlan.master == bridge.index, vxlan.isUp, vxlan.mtu == mtu { return operations }
        return operations + [.setLink(name: vxlanName, master: bridgeName, mtu: mtu), .suppressOnBridgePort(name: vxlanName)]
    }

    /// Static forwarding for one subnet: VXLAN FDB entries (remote MAC → VTEP, and an all-zero flood entry
    /// per remote VTEP), the bridge's own entries for those MACs on the VXLAN port, and permanent
    /// neighbours so that ARP is answered on this host.
    static func forwarding(_ subnet: DesiredSubnet, remotes: [RemoteEndpoint], observed: RouterObservation) -> [RouterOperation] {
        struct Tunnel: Hashable { var mac: MACAddress; var vtep: IPv4Address }
        let bridgeName = KernelNames.bridge(vni: subnet.vni), vxlanName = KernelNames.vxlan(vni: subnet.vni)
        let bridge = observed.link(named: bridgeName), vxlan = observed.link(named: vxlanName)
        let onVXLAN = observed.fdb.filter { $0.index == vxlan?.index }
        var operations: [RouterOperation] = []

        let zero = MACAddress(0)!
        var wantedTunnels: [Tunnel] = []
        for tunnel in remotes.map({ Tunnel(mac: $0.mac, vtep: $0.vtep) }) + subnet.remoteVTEPs.map({ Tunnel(mac: zero, vtep: $0) })
        where !wantedTunnels.contains(tunnel) {
            wantedTunnels.append(tunnel)
        }
        let tunnels = Set(onVXLAN.filter { $0.flags & NL.NTF_SELF != 0 }
            .compactMap { entry in entry.mac.flatMap { mac in entry.address.map { Tunnel(mac: mac, vtep: $0) } } })
        for tunnel in wantedTunnels where !tunnels.contains(tunnel) {
            operations.append(.addTunnel(vxlan: vxlanName, mac: tunnel.mac, vtep: tunnel.vtep))
        }
        for tunnel in tunnels.subtracting(wantedTunnels).sorted(by: { ($0.vtep, $0.mac) < ($1.vtep, $1.mac) }) {
            operations.append(.deleteTunnel(vxlan: vxlanName, mac: tunnel.mac, vtep: tunnel.vtep))
        }

        let entries = Set(onVXLAN.filter { $0.master != nil && $0.master == bridge?.index && $0.address == nil && !$0.isPermanent }
            .compactMap(\.mac))
        var wantedEntries: [MACAddress] = []
        for mac in remotes.map(\.mac) where !wantedEntries.contains(mac) { wantedEntries.append(mac) }
        for mac in wantedEntries where !entries.contains(mac) { operations.append(.addBridgeEntry(vxlan: vxlanName, mac: mac)) }
        for mac in entries.subtracting(wantedEntries).sorted() { operations.append(.deleteBridgeEntry(vxlan: vxlanName, mac: mac)) }

        let present = observed.neighbours.filter { $0.index == bridge?.index && $0.isPermanent }
        var wantedNeighbours: [IPv4Address: MACAddress] = [:]
        for remote in remotes where wantedNeighbours[remote.ip] == nil { wantedNeighbours[remote.ip] = remote.mac }
        for address in present.compactMap(\.address).sorted() where wantedNeighbours[address] == nil {
            operations.append(.deleteNeighbour(bridge: bridgeName, address: address))
        }
        for remote in remotes where wantedNeighbours[remote.ip] == remote.mac
        && !present.contains(where: { $0.address == remote.ip && $0.mac == remote.mac }) {
            wantedNeighbours[remote.ip] = nil
            operations.append(.setNeighbour(bridge: bridgeName, address: remote.ip, mac: remote.mac))
        }
        return operations
    }

    /// A port that exists is kept up on its bridge (a handover port is made afresh); a missing one is plugged when it can be.
    static func portOperations(_ port: WantedPort, observed: RouterObservation) -> [RouterOperation] {
        guard let link = observed.link(named: port.name) else {
            return port.plug.map { [.plug(port: port.name, bridge: port.bridge, $0)] } ?? []
        }
        if let plug = port.plug, case .handover = plug {
            return [.deleteLink(name: port.name), .plug(port: port.name, bridge: port.bridge, plug)]
        }
        let bridge = observed.link(named: port.bridge)
        if let bridge, link.master == bridge.index, link.isUp { return [] }
        return [.setLink(name: port.name, master: port.bridge)]
    }
}
