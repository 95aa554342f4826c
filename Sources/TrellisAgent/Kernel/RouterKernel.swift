import Foundation
import TrellisFastPath
import TrellisModel
import TrellisNetlink
import TrellisNetlinkWire

/// What the executor asks of one router namespace's kernel: reads, and one call per kernel change. Links
/// are numbered by the kernel; the executor finds the numbers in its record.
protocol RouterKernel {
    /// The router's links, addresses, FDB entries and neighbours, read whole.
    func observe() throws -> RouterObservation
    func link(named name: String) throws -> Link?
    func createBridge(name: String, mtu: UInt32, mac: MACAddress) throws
    /// A VXLAN device whose UDP socket lives in the host's namespace, placed in the router.
    func createVXLAN(name: String, vni: Int, mtu: UInt32) throws
    func createShaper(name: String) throws
    /// Sets the link up, and its master, MTU and MAC where given.
    func setLinkUp(index: Int32, master: Int32?, mtu: UInt32?, mac: MACAddress?) throws
    /// No learning, and ARP answered from the bridge's neighbour entries.
    func suppressOnBridgePort(index: Int32) throws
    func setBridgeHooks(index: Int32, enabled: Bool) throws
    func addAddress(index: Int32, _ address: IPv4Address, prefixLength: Int) throws
    func replaceTunnel(index: Int32, mac: MACAddress, vtep: IPv4Address) throws
    func deleteTunnel(index: Int32, mac: MACAddress, vtep: IPv4Address) throws
    func replaceBridgeEntry(index: Int32, mac: MACAddress) throws
    func deleteBridgeEntry(index: Int32, mac: MACAddress) throws
    func replaceNeighbour(index: Int32, _ address: IPv4Address, mac: MACAddress) throws
    func deleteNeighbour(index: Int32, _ address: IPv4Address) throws
    /// A gratuitous ARP for `ip` at `mac`, sent on the link.
    func announce(mac: MACAddress, ip: IPv4Address, onLink index: Int32) throws
    /// Makes a port on the bridge numbered `bridge`; on failure nothing it made is left behind.
    func plug(_ port: String, _ plug: PortPlug, bridge: Int32) throws
    func deleteLink(index: Int32) throws
    /// Puts a port on the router's fast path: the program attached to its host end, its entries in the maps.
    func addFastPort(_ port: FastPort) throws
    /// Takes a port off the fast path; nothing is left of it in the program's maps (its filter stays, inert).
    func removeFastPort(_ port: FastPort)
    /// Stops what another process's program does at the hook of the link numbered `index`: this router's program
    /// takes the hook over, inert (true), or on the bridge path the hook point goes (false).
    func disarmHook(index: Int32) throws -> Bool
    /// Makes the fast path send to these endpoints on other hosts through their subnets' tunnels; the ones it
    /// took (the others keep the bridge path).
    func addFastRemotes(_ remotes: [FastRemote]) throws -> [FastRemote]
    func removeFastRemotes(_ remotes: [FastRemote])
}

/// A router namespace's kernel over rtnetlink, with the host's namespace for what is made from there
/// (VXLAN devices, veths handed to a Docker engine).
struct NetlinkRouterKernel: RouterKernel {
    let router: RouterNamespace
    let host: RouteNetlink
    /// The host's namespace, nil for this process's.
    let hostNamespace: NetworkNamespace?
    let underlayIP: IPv4Address
    let mtu: UInt32

    private var netlink: RouteNetlink { router.netlink }

    func observe() throws -> RouterObservation {
        let links = try netlink.links()
        let names = Dictionary(links.map { ($0.index, $0.name) }, uniquingKeysWith: { first, _ in first })
        let hooks = try netlink.qdiscs().filter { $0.isIngress && $0.kind == "clsact" }.map(\.index)
        router.fastPath?.adoptPredecessor(hooks: hooks, netlink: netlink)
        let program = router.fastPath?.loaded
        // A port whose link or hook went is forgotten, and put back on the fast path if still wanted.
        program?.forgetLinks(keeping: Set(hooks).intersection(names.keys))
        var fastPorts: [String: FastPort] = [:]
        for port in program?.ports() ?? [] { if let name = names[port.ifindex] { fastPorts[name] = port } }
        program?.forgetDeliveries(keeping: Set(names.keys))
        let own = Set((program?.hookedLinks() ?? []).compactMap { names[$0] })
        return RouterObservation(links: links, addresses: try netlink.addresses(), fdb: try netlink.neighbours(family: NL.AF_BRIDGE),
                                 neighbours: try netlink.neighbours(), fastPorts: fastPorts, fastHooks: Set(hooks.compactMap { names[$0] }),
                                 ownHooks: own, fastRemotes: program?.remotes() ?? [])
    }

    func link(named name: String) throws -> Link? { try netlink.link(named: name) }

    func createBridge(name: String, mtu: UInt32, mac: MACAddress) throws {
        try netlink.createLink(LinkSpec(name: name, kind: .bridge, mtu: mtu, mac: mac, up: true))
    }

    func createVXLAN(name: String, vni: Int, mtu: UInt32) throws {
        try host.createLink(LinkSpec(name: name, kind: .vxlan(vni: UInt32(vni), port: 4789, local: underlayIP, underlayIndex: nil),
                                     mtu: mtu, namespace: router.namespace.fd))
        try makeHookPoint(name)
    }

    func createShaper(name: String) throws { try netlink.createLink(LinkSpec(name: name, kind: .ifb, up: true)) }

    func setLinkUp(index: Int32, master: Int32?, mtu: UInt32?, mac: MACAddress?) throws {
        try netlink.setLink(index: index, up: true, master: master, mtu: mtu, mac: mac)
    }

    func suppressOnBridgePort(index: Int32) throws { try netlink.setBridgePort(index: index, learning: false, neighbourSuppress: true) }
    func setBridgeHooks(index: Int32, enabled: Bool) throws { try netlink.setBridge(index: index, callIPHooks: enabled) }

    func addAddress(index: Int32, _ address: IPv4Address, prefixLength: Int) throws {
        try netlink.addAddress(index: index, address, prefixLength: prefixLength)
    }

    func replaceTunnel(index: Int32, mac: MACAddress, vtep: IPv4Address) throws {
        try netlink.replaceFDB(index: index, mac: mac, vtep: vtep)
    }

    func deleteTunnel(index: Int32, mac: MACAddress, vtep: IPv4Address) throws { try netlink.deleteFDB(index: index, mac: mac, vtep: vtep) }
    func replaceBridgeEntry(index: Int32, mac: MACAddress) throws { try netlink.replaceBridgeFDB(index: index, mac: mac) }
    func deleteBridgeEntry(index: Int32, mac: MACAddress) throws { try netlink.deleteBridgeFDB(index: index, mac: mac) }

    func replaceNeighbour(index: Int32, _ address: IPv4Address, mac: MACAddress) throws {
        try netlink.replaceNeighbour(index: index, address, mac: mac)
    }

    func deleteNeighbour(index: Int32, _ address: IPv4Address) throws { try netlink.deleteNeighbour(index: index, address) }

    func announce(mac: MACAddress, ip: IPv4Address, onLink index: Int32) throws {
        try router.packets.send(ARPFrame.gratuitous(mac: mac, ip: ip), linkIndex: index)
    }

    func deleteLink(index: Int32) throws { try netlink.deleteLink(index: index) }

    func addFastPort(_ port: FastPort) throws {
        guard let fastPath = router.fastPath else { throw FastPathError(operation: "add port \(port.ifindex)", code: ENOTSUP) }
        try fastPath.load().add(port, through: netlink)
    }

    func removeFastPort(_ port: FastPort) { router.fastPath?.loaded?.remove(port) }

    func disarmHook(index: Int32) throws -> Bool {
        guard let fastPath = router.fastPath else {
            try netlink.deleteIngressQdisc(index: index, kind: "clsact")
            return false
        }
        try fastPath.load().hook(index, through: netlink)
        return true
    }

    /// On the fast path a new link's hook point is made while the link is down (see `RouteNetlink.makeHookPoint`);
    /// the link's index then, nil on the bridge path.
    @discardableResult
    private func makeHookPoint(_ name: String) throws -> Int32? {
        guard router.fastPath != nil else { return nil }
        let index = try netlink.requireLink(named: name).index
        try netlink.makeHookPoint(index: index)
        return index
    }

    /// A port made down on the fast path: its hook point, then up.
    private func upWithHookPoint(_ port: String) throws {
        if let index = try makeHookPoint(port) { try netlink.setLink(index: index, up: true) }
    }

    func addFastRemotes(_ remotes: [FastRemote]) throws -> [FastRemote] {
        guard let fastPath = router.fastPath else { throw FastPathError(operation: "add remote endpoints", code: ENOTSUP) }
        return try fastPath.load().addRemotes(remotes)
    }

    func removeFastRemotes(_ remotes: [FastRemote]) { router.fastPath?.loaded?.removeRemotes(remotes) }

    func plug(_ port: String, _ plug: PortPlug, bridge: Int32) throws {
        switch plug {
        case .veth(let path, let interface, let mac, let address):
            let namespace = try NetworkNamespace(path: path)
            try netlink.createLink(LinkSpec(name: port, kind: .veth(peerName: interface, peerMAC: mac, peerNamespace: namespace.fd),
                                            mtu: mtu, master: bridge, up: router.fastPath == nil))
            do {
                try upWithHookPoint(port)
                // Opened on this thread (the datapath's own), visiting the container's namespace.
                let inside = try RouteNetlink(visiting: namespace)
                let loopback = try inside.requireLink(named: "lo")
                if !loopback.isUp { try inside.setLink(index: loopback.index, up: true) }
                let link = try inside.requireLink(named: interface)
                try inside.setLink(index: link.index, up: true)
                if let address {
                    try inside.addAddress(index: link.index, address.ip, prefixLength: address.prefixLength)
                    try inside.replaceRoute(to: nil, via: address.gateway, index: link.index)
                    // Neighbours on this host that were already asking for this address learn it now, not at their
                    // next ARP retry. Sent on the bridge through the router's long-lived packet socket: a packet
                    // socket opened in the container would cost an RCU grace period (~10 ms) when it closes.
                    try announce(mac: mac, ip: address.ip, onLink: bridge)
                }
            } catch {
                if let link = try? netlink.link(named: port) { try? netlink.deleteLink(index: link.index) }
                throw error
            }
        case .handover(let interface, let mac, let ip):
            if let stale = try host.link(named: interface) { try host.deleteLink(index: stale.index) }
            let hostNamespace = try hostNamespace ?? NetworkNamespace.current()
            try netlink.createLink(LinkSpec(name: port, kind: .veth(peerName: interface, peerMAC: mac, peerNamespace: hostNamespace.fd),
                                            mtu: mtu, master: bridge, up: router.fastPath == nil))
            do {
                try upWithHookPoint(port)
            } catch {
                if let link = try? netlink.link(named: port) { try? netlink.deleteLink(index: link.index) }
                throw error
            }
            // Neighbours that asked for the address before learn where it is now, not at their next ARP retry.
            try announce(mac: mac, ip: ip, onLink: bridge)
        case .tap:
            try router.namespace.createTap(named: port)
            do {
                let tap = try netlink.requireLink(named: port)
                try netlink.setLink(index: tap.index, up: true, master: bridge, mtu: mtu)
            } catch {
                if let tap = try? netlink.link(named: port) { try? netlink.deleteLink(index: tap.index) }
                throw error
            }
        }
    }
}
