import Foundation
import TrellisModel
import TrellisNetlink
import TrellisNetlinkWire

extension RouterObservation {
    /// Reads a router namespace's kernel objects whole: four dumps.
    init(reading netlink: RouteNetlink) throws {
        self.init(links: try netlink.links(), addresses: try netlink.addresses(), fdb: try netlink.neighbours(family: NL.AF_BRIDGE),
                  neighbours: try netlink.neighbours())
    }

    /// Forgets a link and what the kernel removes with it: its addresses, FDB entries and neighbours.
    mutating func forgetLink(named name: String) {
        guard let index = link(named: name)?.index else { return }
        links.removeAll { $0.index == index }
        addresses.removeAll { $0.index == index }
        fdb.removeAll { $0.index == index }
        neighbours.removeAll { $0.index == index }
    }

    /// Takes the kernel's answer for one link: replaced, added, or (nil) forgotten.
    mutating func record(_ link: Link?, named name: String) {
        guard let link else { return forgetLink(named: name) }
        if let position = links.firstIndex(where: { $0.name == name }) { links[position] = link } else { links.append(link) }
    }
}

/// A link an operation names that the router does not have.
struct MissingLinkError: Error, CustomStringConvertible {
    var name: String
    var description: String { "link \(name) is not in the router namespace" }
}

extension Datapath {
    /// Applies a router's plan in order, keeping `observed` current with what each operation changed, so
    /// the next plan needs no dump. A plug that fails is undone and handed to `portFailed` (which may
    /// throw it); any other failure stops the plan and is thrown.
    func apply(_ operations: [RouterOperation], to router: RouterNamespace, observed: inout RouterObservation,
               _ report: inout ReconcileReport, portFailed: (String, any Error) throws -> Void) throws {
        for operation in operations {
            do {
                try apply(operation, to: router, observed: &observed, &report)
            } catch {
                guard let port = operation.pluggedPort else { throw error }
                try portFailed(port, error)
            }
        }
    }

    private func apply(_ operation: RouterOperation, to router: RouterNamespace, observed: inout RouterObservation,
                       _ report: inout ReconcileReport) throws {
        let netlink = router.netlink
        func index(_ name: String) throws -> Int32 {
            guard let link = observed.link(named: name) else { throw MissingLinkError(name: name) }
            return link.index
        }
        func reread(_ name: String) throws { observed.record(try netlink.link(named: name), named: name) }
        switch operation {
        case .createBridge(let name, let mtu, let mac):
            try netlink.createLink(LinkSpec(name: name, kind: .bridge, mtu: mtu, mac: mac, up: true))
            try reread(name)
            report.created.append(name)
        case .createVXLAN(let name, let vni, let mtu):
            try hostNetlink.createLink(LinkSpec(
                name: name, kind: .vxlan(vni: UInt32(vni), port: 4789, local: configuration.underlayIP, underlayIndex: nil),
                mtu: mtu, namespace: router.namespace.fd))
            try reread(name)
            report.created.append(name)
        case .createShaper(let name):
            try netlink.createLink(LinkSpec(name: name, kind: .ifb, up: true))
            try reread(name)
            report.created.append(name)
        case .setLink(let name, let master, let mtu, let mac):
            try netlink.setLink(index: try index(name), up: true, master: try master.map(index), mtu: mtu, mac: mac)
            try reread(name)
        case .suppressOnBridgePort(let name):
            try netlink.setBridgePort(index: try index(name), learning: false, neighbourSuppress: true)
        case .setBridgeHooks(let bridge, let enabled):
            try netlink.setBridge(index: try index(bridge), callIPHooks: enabled)
            try reread(bridge)
        case .addAddress(let link, let address, let prefixLength):
            let linkIndex = try index(link)
            try netlink.addAddress(index: linkIndex, address, prefixLength: prefixLength)
            observed.addresses.append(InterfaceAddress(index: linkIndex, address: address, prefixLength: prefixLength))
        case .addTunnel(let vxlan, let mac, let vtep):
            let vxlanIndex = try index(vxlan)
            try netlink.replaceFDB(index: vxlanIndex, mac: mac, vtep: vtep)
            observed.fdb.append(Neighbour(family: NL.AF_BRIDGE, index: vxlanIndex, state: NL.NUD_PERMANENT | NL.NUD_NOARP,
                                          flags: NL.NTF_SELF, address: vtep, mac: mac))
        case .deleteTunnel(let vxlan, let mac, let vtep):
            let vxlanIndex = try index(vxlan)
            try netlink.deleteFDB(index: vxlanIndex, mac: mac, vtep: vtep)
            observed.fdb.removeAll { $0.index == vxlanIndex && $0.flags & NL.NTF_SELF != 0 && $0.mac == mac && $0.address == vtep }
        case .addBridgeEntry(let vxlan, let mac):
            let vxlanIndex = try index(vxlan)
            try netlink.replaceBridgeFDB(index: vxlanIndex, mac: mac)
            let bridge = observed.link(named: vxlan)?.master
            observed.fdb.removeAll { $0.master != nil && $0.master == bridge && $0.address == nil && $0.mac == mac }
            observed.fdb.append(Neighbour(family: NL.AF_BRIDGE, index: vxlanIndex, state: NL.NUD_NOARP, flags: NL.NTF_MASTER,
                                          address: nil, mac: mac, master: bridge))
        case .deleteBridgeEntry(let vxlan, let mac):
            let vxlanIndex = try index(vxlan)
            try netlink.deleteBridgeFDB(index: vxlanIndex, mac: mac)
            observed.fdb.removeAll { $0.index == vxlanIndex && $0.master != nil && $0.address == nil && $0.mac == mac }
        case .setNeighbour(let bridge, let address, let mac):
            let bridgeIndex = try index(bridge)
            try netlink.replaceNeighbour(index: bridgeIndex, address, mac: mac)
            observed.neighbours.removeAll { $0.index == bridgeIndex && $0.address == address }
            observed.neighbours.append(Neighbour(family: NL.AF_INET, index: bridgeIndex, state: NL.NUD_PERMANENT, flags: 0,
                                                 address: address, mac: mac))
            // Announce the newcomer on this host's segment: a local container already asking for it (its
            // ARP retried only every second) learns it now. Suppression keeps the frame off the VXLAN.
            try router.packets.send(ARPFrame.gratuitous(mac: mac, ip: address), linkIndex: bridgeIndex)
        case .deleteNeighbour(let bridge, let address):
            let bridgeIndex = try index(bridge)
            try netlink.deleteNeighbour(index: bridgeIndex, address)
            observed.neighbours.removeAll { $0.index == bridgeIndex && $0.address == address }
        case .plug(let port, let bridge, let plug):
            try self.plug(port, plug, bridge: try index(bridge), router: router)
            try reread(port)
            report.created.append(port)
        case .deleteLink(let name):
            try netlink.deleteLink(index: try index(name))
            observed.forgetLink(named: name)
            report.removed.append(name)
        }
    }

    /// Makes a port on the bridge numbered `bridge`; on failure nothing it made is left behind.
    private func plug(_ port: String, _ plug: PortPlug, bridge: Int32, router: RouterNamespace) throws {
        let netlink = router.netlink, mtu = configuration.overlayMTU
        switch plug {
        case .veth(let path, let interface, let mac, let address):
            let namespace = try NetworkNamespace(path: path)
            try netlink.createLink(LinkSpec(name: port, kind: .veth(peerName: interface, peerMAC: mac, peerNamespace: namespace.fd),
                                            mtu: mtu, master: bridge, up: true))
            do {
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
                    try router.packets.send(ARPFrame.gratuitous(mac: mac, ip: address.ip), linkIndex: bridge)
                }
            } catch {
                if let link = try? netlink.link(named: port) { try? netlink.deleteLink(index: link.index) }
                throw error
            }
        case .handover(let interface, let mac, let ip):
            if let stale = try hostNetlink.link(named: interface) { try hostNetlink.deleteLink(index: stale.index) }
            let host = try hostNamespace ?? NetworkNamespace.current()
            try netlink.createLink(LinkSpec(name: port, kind: .veth(peerName: interface, peerMAC: mac, peerNamespace: host.fd),
                                            mtu: mtu, master: bridge, up: true))
            // Neighbours that asked for the address before learn where it is now, not at their next ARP retry.
            try router.packets.send(ARPFrame.gratuitous(mac: mac, ip: ip), linkIndex: bridge)
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
