import Foundation
import TrellisFastPath
import TrellisModel
import TrellisNetlink
import TrellisNetlinkWire

extension RouterObservation {
    /// Forgets a link and what the kernel removes with it: its addresses, FDB entries and neighbours.
    mutating func forgetLink(named name: String) {
        guard let index = link(named: name)?.index else { return }
        links.removeAll { $0.index == index }
        addresses.removeAll { $0.index == index }
        fdb.removeAll { $0.index == index }
        neighbours.removeAll { $0.index == index }
        fastHooks.remove(name)
        ownHooks.remove(name)
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

/// Applies router plans to a router's kernel, the only writer of what plans name, keeping a record of
/// what each operation changed so that the next plan needs no dump. Generic over the kernel: rtnetlink
/// for real (`NetlinkRouterKernel`), or a recording fake in tests.
enum RouterExecutor {
    /// Applies a router's plan in order, keeping `observed` current with what each operation changed. A
    /// plug that fails is undone and handed to `portFailed` (which may throw it); any other failure stops
    /// the plan and is thrown.
    static func apply(_ operations: [RouterOperation], to kernel: some RouterKernel, observed: inout RouterObservation,
                      _ report: inout ReconcileReport, portFailed: (String, any Error) throws -> Void) throws {
        for operation in operations {
            do {
                try apply(operation, to: kernel, observed: &observed, &report)
            } catch {
                guard let port = operation.pluggedPort else { throw error }
                try portFailed(port, error)
            }
        }
    }

    private static func apply(_ operation: RouterOperation, to kernel: some RouterKernel, observed: inout RouterObservation,
                              _ report: inout ReconcileReport) throws {
        func index(_ name: String) throws -> Int32 {
            guard let link = observed.link(named: name) else { throw MissingLinkError(name: name) }
            return link.index
        }
        func reread(_ name: String) throws { observed.record(try kernel.link(named: name), named: name) }
        switch operation {
        case .createBridge(let name, let mtu, let mac):
            try kernel.createBridge(name: name, mtu: mtu, mac: mac)
            try reread(name)
            report.created.append(name)
        case .createVXLAN(let name, let vni, let mtu):
            try kernel.createVXLAN(name: name, vni: vni, mtu: mtu)
            try reread(name)
            report.created.append(name)
        case .createShaper(let name):
            try kernel.createShaper(name: name)
            try reread(name)
            report.created.append(name)
        case .setLink(let name, let master, let mtu, let mac):
            try kernel.setLinkUp(index: try index(name), master: try master.map(index), mtu: mtu, mac: mac)
            try reread(name)
        case .suppressOnBridgePort(let name):
            try kernel.suppressOnBridgePort(index: try index(name))
        case .setBridgeHooks(let bridge, let enabled):
            try kernel.setBridgeHooks(index: try index(bridge), enabled: enabled)
            try reread(bridge)
        case .addAddress(let link, let address, let prefixLength):
            let linkIndex = try index(link)
            try kernel.addAddress(index: linkIndex, address, prefixLength: prefixLength)
            observed.addresses.append(InterfaceAddress(index: linkIndex, address: address, prefixLength: prefixLength))
        case .addTunnel(let vxlan, let mac, let vtep):
            let vxlanIndex = try index(vxlan)
            try kernel.replaceTunnel(index: vxlanIndex, mac: mac, vtep: vtep)
            observed.fdb.append(Neighbour(family: NL.AF_BRIDGE, index: vxlanIndex, state: NL.NUD_PERMANENT | NL.NUD_NOARP,
                                          flags: NL.NTF_SELF, address: vtep, mac: mac))
        case .deleteTunnel(let vxlan, let mac, let vtep):
            let vxlanIndex = try index(vxlan)
            try kernel.deleteTunnel(index: vxlanIndex, mac: mac, vtep: vtep)
            observed.fdb.removeAll { $0.index == vxlanIndex && $0.flags & NL.NTF_SELF != 0 && $0.mac == mac && $0.address == vtep }
        case .addBridgeEntry(let vxlan, let mac):
            let vxlanIndex = try index(vxlan)
            try kernel.replaceBridgeEntry(index: vxlanIndex, mac: mac)
            let bridge = observed.link(named: vxlan)?.master
            observed.fdb.removeAll { $0.master != nil && $0.master == bridge && $0.address == nil && $0.mac == mac }
            observed.fdb.append(Neighbour(family: NL.AF_BRIDGE, index: vxlanIndex, state: NL.NUD_NOARP, flags: NL.NTF_MASTER,
                                          address: nil, mac: mac, master: bridge))
        case .deleteBridgeEntry(let vxlan, let mac):
            let vxlanIndex = try index(vxlan)
            try kernel.deleteBridgeEntry(index: vxlanIndex, mac: mac)
            observed.fdb.removeAll { $0.index == vxlanIndex && $0.master != nil && $0.address == nil && $0.mac == mac }
        case .setNeighbour(let bridge, let address, let mac):
            let bridgeIndex = try index(bridge)
            try kernel.replaceNeighbour(index: bridgeIndex, address, mac: mac)
            observed.neighbours.removeAll { $0.index == bridgeIndex && $0.address == address }
            observed.neighbours.append(Neighbour(family: NL.AF_INET, index: bridgeIndex, state: NL.NUD_PERMANENT, flags: 0,
                                                 address: address, mac: mac))
            // Announce the newcomer on this host's segment: a local container already asking for it (its
            // ARP retried only every second) learns it now. Suppression keeps the frame off the VXLAN.
            try kernel.announce(mac: mac, ip: address, onLink: bridgeIndex)
        case .deleteNeighbour(let bridge, let address):
            let bridgeIndex = try index(bridge)
            try kernel.deleteNeighbour(index: bridgeIndex, address)
            observed.neighbours.removeAll { $0.index == bridgeIndex && $0.address == address }
        case .plug(let port, let bridge, let plug):
            try kernel.plug(port, plug, bridge: try index(bridge))
            try reread(port)
            report.created.append(port)
        case .deleteLink(let name):
            try kernel.deleteLink(index: try index(name))
            observed.forgetLink(named: name)
            report.removed.append(name)
        case .addFastPort(let wanted):
            let entry = wanted.entry(ifindex: try index(wanted.port))
            try kernel.addFastPort(entry)
            observed.fastPorts[wanted.port] = entry
            observed.fastHooks.insert(wanted.port)
            observed.ownHooks.insert(wanted.port)
        case .removeFastPort(let name):
            if let entry = observed.fastPorts.removeValue(forKey: name) {
                kernel.removeFastPort(entry)
            } else if observed.fastHooks.contains(name), !observed.ownHooks.contains(name) {
                if try kernel.disarmHook(index: try index(name)) { observed.ownHooks.insert(name) } else { observed.fastHooks.remove(name) }
            }
        case .addFastRemotes(let remotes):
            observed.fastRemotes.formUnion(try kernel.addFastRemotes(remotes))
        case .removeFastRemotes(let remotes):
            kernel.removeFastRemotes(remotes)
            observed.fastRemotes.subtract(remotes)
        }
    }
}
