import Glibc
import TrellisModel
import TrellisNetlinkWire

/// rtnetlink operations in one network namespace: links, addresses, routes, neighbours and FDB
/// entries, each one request over one socket (no `ip` process per operation).
public struct RouteNetlink: Sendable {
    public let socket: NetlinkSocket

    /// Operations in `namespace`, or in this process's namespace.
    public init(in namespace: NetworkNamespace? = nil) throws {
        socket = try namespace?.routeSocket() ?? NetlinkSocket()
    }

    /// A handle on `namespace` whose socket the calling thread opens on a visit there: for a thread
    /// Trellis owns (see `NetworkNamespace.visitOnCallingThread`).
    public init(visiting namespace: NetworkNamespace) throws {
        socket = try namespace.visitOnCallingThread { try NetlinkSocket() }
    }

    // MARK: Links

    public func links() throws -> [Link] {
        try socket.dump(RouteRequests.dumpLinks()).compactMap { $0.type == NL.RTM_NEWLINK ? try Link($0) : nil }
    }

    /// The link called `name`, or nil when there is none.
    public func link(named name: String) throws -> Link? {
        do {
            return try socket.execute(RouteRequests.getLink(name: name), describing: name).first.map(Link.init)
        } catch let error as NetlinkError where error.code == ENODEV {
            return nil
        }
    }

    /// The link called `name`, or an ENODEV error that names it.
    public func requireLink(named name: String) throws -> Link {
        guard let link = try link(named: name) else { throw NetlinkError(code: ENODEV, operation: "find link \(name)") }
        return link
    }

    /// Creates a link as `spec` describes it, in one request.
    public func createLink(_ spec: LinkSpec) throws {
        try socket.execute(RouteRequests.newLink(spec), describing: spec.name)
    }

    public func setLink(index: Int32, up: Bool? = nil, master: Int32? = nil, mtu: UInt32? = nil, mac: MACAddress? = nil) throws {
        try socket.execute(RouteRequests.setLink(index: index, up: up, master: master, mtu: mtu, mac: mac), describing: "index \(index)")
    }

    public func setBridge(index: Int32, callIPHooks: Bool) throws {
        try socket.execute(RouteRequests.setBridge(index: index, callIPHooks: callIPHooks), describing: "bridge \(index)")
    }

    public func setBridgePort(index: Int32, learning: Bool, neighbourSuppress: Bool) throws {
        try socket.execute(RouteRequests.setBridgePort(index: index, learning: learning, neighbourSuppress: neighbourSuppress),
                           describing: "bridge port \(index)")
    }

    /// Deletes a link; one that is already gone is not an error.
    public func deleteLink(index: Int32) throws {
        do {
            try socket.execute(RouteRequests.deleteLink(index: index), describing: "index \(index)")
        } catch let error as NetlinkError where error.code == ENODEV {
        }
    }

    // MARK: Addresses and routes

    public func addresses() throws -> [InterfaceAddress] {
        try socket.dump(RouteRequests.dumpAddresses()).compactMap { $0.type == NL.RTM_NEWADDR ? try InterfaceAddress($0) : nil }
    }

    public func addAddress(index: Int32, _ address: IPv4Address, prefixLength: Int) throws {
        try socket.execute(RouteRequests.addAddress(index: index, address, prefixLength: prefixLength),
                           describing: "\(address)/\(prefixLength)")
    }

    public func deleteAddress(index: Int32, _ address: IPv4Address, prefixLength: Int) throws {
        try socket.execute(RouteRequests.deleteAddress(index: index, address, prefixLength: prefixLength),
                           describing: "\(address)/\(prefixLength)")
    }

    public func routes() throws -> [Route] {
        try socket.dump(RouteRequests.dumpRoutes()).compactMap { $0.type == NL.RTM_NEWROUTE ? try Route($0) : nil }
    }

    public func replaceRoute(to destination: IPv4Network?, via gateway: IPv4Address?, index: Int32? = nil) throws {
        try socket.execute(RouteRequests.replaceRoute(destination: destination, gateway: gateway, index: index),
                           describing: "\(destination?.description ?? "default") via \(gateway?.description ?? "-")")
    }

    public func deleteRoute(to destination: IPv4Network, index: Int32? = nil) throws {
        try socket.execute(RouteRequests.deleteRoute(destination: destination, index: index), describing: "route \(destination)")
    }

    // MARK: Neighbours and FDB

    /// Neighbour entries (`AF_INET`) or bridge/VXLAN FDB entries (`AF_BRIDGE`).
    public func neighbours(family: UInt8 = NL.AF_INET) throws -> [Neighbour] {
        try socket.dump(RouteRequests.dumpNeighbours(family: family)).compactMap { $0.type == NL.RTM_NEWNEIGH ? try Neighbour($0) : nil }
    }

    public func replaceNeighbour(index: Int32, _ address: IPv4Address, mac: MACAddress) throws {
        try socket.execute(RouteRequests.replaceNeighbour(index: index, address, mac: mac), describing: "\(address) lladdr \(mac)")
    }

    public func deleteNeighbour(index: Int32, _ address: IPv4Address) throws {
        do {
            try socket.execute(RouteRequests.deleteNeighbour(index: index, address), describing: "\(address)")
        } catch let error as NetlinkError where error.code == ENOENT {
        }
    }

    /// Proxy ARP entries of the namespace.
    public func proxyNeighbours() throws -> [Neighbour] {
        try socket.dump(RouteRequests.dumpProxyNeighbours(), describing: "proxy").map(Neighbour.init)
    }

    public func replaceProxyNeighbour(index: Int32, _ address: IPv4Address) throws {
        try socket.execute(RouteRequests.replaceProxyNeighbour(index: index, address), describing: "proxy \(address)")
    }

    public func deleteProxyNeighbour(index: Int32, _ address: IPv4Address) throws {
        try socket.execute(RouteRequests.deleteProxyNeighbour(index: index, address), describing: "proxy \(address)")
    }

    public func replaceFDB(index: Int32, mac: MACAddress, vtep: IPv4Address) throws {
        try socket.execute(RouteRequests.replaceFDB(index: index, mac: mac, vtep: vtep), describing: "\(mac) dst \(vtep)")
    }

    public func replaceBridgeFDB(index: Int32, mac: MACAddress) throws {
        try socket.execute(RouteRequests.replaceBridgeFDB(index: index, mac: mac), describing: "\(mac) master")
    }

    public func deleteBridgeFDB(index: Int32, mac: MACAddress) throws {
        do {
            try socket.execute(RouteRequests.deleteBridgeFDB(index: index, mac: mac), describing: "\(mac) master")
        } catch let error as NetlinkError where error.code == ENOENT {
        }
    }

    public func deleteFDB(index: Int32, mac: MACAddress, vtep: IPv4Address) throws {
        do {
            try socket.execute(RouteRequests.deleteFDB(index: index, mac: mac, vtep: vtep), describing: "\(mac) dst \(vtep)")
        } catch let error as NetlinkError where error.code == ENOENT {
        }
    }

    // MARK: Traffic control

    public func qdiscs() throws -> [Qdisc] {
        try socket.dump(TrafficControlRequests.dumpQdiscs()).compactMap { $0.type == TC.RTM_NEWQDISC ? try Qdisc($0) : nil }
    }

    public func replaceRootTokenBucket(index: Int32, _ bucket: TokenBucket) throws {
        try socket.execute(TrafficControlRequests.replaceRootTokenBucket(index: index, bucket), describing: "tbf on index \(index)")
    }

    /// Puts back the link's default root qdisc; a link that has it already is not an error.
    public func deleteRootQdisc(index: Int32) throws {
        do {
            try socket.execute(TrafficControlRequests.deleteRootQdisc(index: index), describing: "root qdisc of index \(index)")
        } catch let error as NetlinkError where error.code == ENOENT {
        }
    }

    /// Redirects everything the link receives to the egress of link `target`, through an ingress qdisc
    /// and one u32 filter.
    public func redirectIngress(index: Int32, to target: Int32) throws {
        do {
            try socket.execute(TrafficControlRequests.addIngressQdisc(index: index), describing: "ingress qdisc of index \(index)")
        } catch let error as NetlinkError where error.code == EEXIST {
            // The fast path's hook point: a port with a rate limit is not on the fast path.
            try deleteIngressQdisc(index: index, kind: "clsact")
            try socket.execute(TrafficControlRequests.addIngressQdisc(index: index), describing: "ingress qdisc of index \(index)")
        }
        try socket.execute(TrafficControlRequests.addRedirectFilter(index: index, to: target),
                           describing: "redirect from index \(index) to \(target)")
    }

    /// Gives the link a clsact qdisc, the hook point of a BPF program on what it receives. Make it while the link is
    /// down: grafting an ingress-side qdisc onto a link that is up deactivates its queues for a moment, and frames
    /// sent to it then are dropped (an ARP reply lost costs its asker a second). One there already is kept.
    public func makeHookPoint(index: Int32) throws {
        let clsact = TrafficControlRequests.addIngressQdisc(index: index, kind: "clsact")
        do {
            try socket.execute(clsact, describing: "clsact of index \(index)")
        } catch let error as NetlinkError where error.code == EEXIST {
            // A clsact qdisc stays (the kernel deletes only a qdisc of the kind named); a rate limit's ingress qdisc goes.
            try deleteIngressQdisc(index: index)
            do {
                try socket.execute(clsact, describing: "clsact of index \(index)")
            } catch let error as NetlinkError where error.code == EEXIST {
            }
        }
    }

    /// Runs the BPF program `program` (a descriptor) on everything the link receives, as the direct-action filter of
    /// priority 1 on its hook point, replacing atomically a program there before (another process's, say); a link
    /// without a hook point gets one. The filter holds the program, so it stays attached until the link or the
    /// qdisc goes.
    public func hookIngress(index: Int32, program: Int32, name: String) throws {
        let filter = TrafficControlRequests.replaceBPFFilter(index: index, program: program, name: name, priority: 1)
        do {
            try socket.execute(filter, describing: "BPF filter \(name) on index \(index)")
        } catch let error as NetlinkError where error.code == ENOENT || error.code == EINVAL {
            try makeHookPoint(index: index)
            try socket.execute(filter, describing: "BPF filter \(name) on index \(index)")
        }
    }

    /// The BPF filters on the ingress side of the link's clsact qdisc (none without one).
    public func ingressBPFFilters(index: Int32) throws -> [BPFFilter] {
        do {
            return try socket.dump(TrafficControlRequests.dumpIngressFilters(index: index)).compactMap { try BPFFilter($0) }
        } catch let error as NetlinkError where error.code == ENOENT || error.code == EINVAL || error.code == ENODEV {
            return []
        }
    }

    /// Removes the link's ingress-side qdisc of `kind` (`ingress`, a rate limit's; `clsact`, the fast path's hook
    /// point) and its filters; a link without one, or with one of the other kind, is not an error (the kernel
    /// answers EINVAL when a link has no ingress queue or the kind differs, ENOENT when it has no qdisc there).
    public func deleteIngressQdisc(index: Int32, kind: String = "ingress") throws {
        do {
            try socket.execute(TrafficControlRequests.deleteIngressQdisc(index: index, kind: kind), describing: "\(kind) of index \(index)")
        } catch let error as NetlinkError where error.code == ENOENT || error.code == EINVAL || error.code == ENODEV {
        }
    }
}
