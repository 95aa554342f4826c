import Testing
@testable import TrellisAgent
import TrellisModel
import TrellisNetlinkWire

/// The router planner's decisions, without a kernel: golden plans for a new router, nothing to do when
/// the kernel matches (a restart), a handful of operations for a change, and every kind of drift mended.
struct RouterPlanTests {
    let mtu: UInt32 = 1450
    let red = DesiredSubnet(path: "acme/app/web/red", cidr: IPv4Network(network: IPv4Address("10.1.1.0")!, prefixLength: 24)!,
                            gateway: IPv4Address("10.1.1.1")!, gatewayMAC: MACAddress("02:00:00:00:10:01")!, vni: 4096, dhcp: false,
                            remoteVTEPs: [IPv4Address("10.200.0.2")!])
    let vtep = IPv4Address("10.200.0.2")!
    let zero = MACAddress(0)!
    let remoteMAC = MACAddress("02:aa:00:00:00:05")!, remoteIP = IPv4Address("10.1.1.5")!
    let localMAC = MACAddress("02:aa:00:00:00:02")!

    var remote: RemoteEndpoint {
        RemoteEndpoint(path: "acme/app/web/red/far", subnet: red.path, ip: remoteIP, mac: remoteMAC, host: "h2", vtep: vtep)
    }
    var container: PortPlug {
        .veth(namespacePath: "/run/netns/c1", interface: "eth0", mac: localMAC,
              address: PortAddress(ip: IPv4Address("10.1.1.2")!, prefixLength: 24, gateway: red.gateway))
    }

    func desire(remotes: [RemoteEndpoint]? = nil, ports: [WantedPort]? = nil, keep: Set<String> = []) -> RouterDesire {
        RouterDesire(subnets: [red], remotes: remotes ?? [remote],
                     ports: ports ?? [WantedPort(name: "trv1", bridge: "trb4096", plug: container)], keep: keep, mtu: mtu)
    }

    /// The kernel of a router that holds exactly `desire()`: bridge 2, VXLAN 3, port 4.
    var matching: RouterObservation {
        RouterObservation(
            links: [Link(index: 1, name: "lo", up: true),
                    Link(index: 2, name: "trb4096", up: true, mtu: mtu, mac: red.gatewayMAC, kind: "bridge", bridgeCallsIPHooks: false),
                    Link(index: 3, name: "trx4096", up: true, mtu: mtu, master: 2, kind: "vxlan", vni: 4096),
                    Link(index: 4, name: "trv1", up: true, mtu: mtu, mac: MACAddress("02:ff:00:00:00:01")!, master: 2, kind: "veth")],
            addresses: [InterfaceAddress(index: 2, address: red.gateway, prefixLength: 24)],
            fdb: [tunnel(to: vtep, for: zero), tunnel(to: vtep, for: remoteMAC),
                  Neighbour(family: NL.AF_BRIDGE, index: 3, state: NL.NUD_NOARP, flags: NL.NTF_MASTER, address: nil, mac: remoteMAC,
                            master: 2),
                  // The bridge's own entry for its port's MAC: the kernel's, not the plan's business.
                  Neighbour(family: NL.AF_BRIDGE, index: 4, state: NL.NUD_PERMANENT, flags: NL.NTF_MASTER, address: nil,
                            mac: MACAddress("02:ff:00:00:00:01")!, master: 2)],
            neighbours: [Neighbour(family: NL.AF_INET, index: 2, state: NL.NUD_PERMANENT, flags: 0, address: remoteIP, mac: remoteMAC)])
    }

    /// A VXLAN FDB entry on device 3, as the kernel lists one.
    func tunnel(to vtep: IPv4Address, for mac: MACAddress) -> Neighbour {
        Neighbour(family: NL.AF_BRIDGE, index: 3, state: NL.NUD_PERMANENT | NL.NUD_NOARP, flags: NL.NTF_SELF, address: vtep, mac: mac)
    }

    @Test func aNewRouterIsPlannedWhole() {
        #expect(RouterPlanner.plan(desire(), observed: RouterObservation()) == [
            .createBridge(name: "trb4096", mtu: mtu, mac: red.gatewayMAC),
            .addAddress(link: "trb4096", address: red.gateway, prefixLength: 24),
            .createVXLAN(name: "trx4096", vni: 4096, mtu: mtu),
            .setLink(name: "trx4096", master: "trb4096", mtu: mtu),
            .suppressOnBridgePort(name: "trx4096"),
            .addTunnel(vxlan: "trx4096", mac: remoteMAC, vtep: vtep),
            .addTunnel(vxlan: "trx4096", mac: zero, vtep: vtep),
            .addBridgeEntry(vxlan: "trx4096", mac: remoteMAC),
            .setNeighbour(bridge: "trb4096", address: remoteIP, mac: remoteMAC),
            .plug(port: "trv1", bridge: "trb4096", container),
            .setBridgeHooks(bridge: "trb4096", enabled: false),
        ])
    }

    /// What an agent restarting finds: everything in place, so it writes nothing.
    @Test func aRouterThatMatchesNeedsNothing() {
        #expect(RouterPlanner.plan(desire(), observed: matching) == [])
    }

    /// A remote endpoint arriving costs its three entries; one leaving, their removal; nothing else is looked at again.
    @Test func aRemoteEndpointCostsOnlyItsOwnEntries() {
        let newcomer = RemoteEndpoint(path: "acme/app/web/red/new", subnet: red.path, ip: IPv4Address("10.1.1.9")!,
                                      mac: MACAddress("02:aa:00:00:00:09")!, host: "h3", vtep: IPv4Address("10.200.0.3")!)
        #expect(RouterPlanner.plan(desire(remotes: [remote, newcomer]), observed: matching) == [
            .addTunnel(vxlan: "trx4096", mac: newcomer.mac, vtep: newcomer.vtep),
            .addBridgeEntry(vxlan: "trx4096", mac: newcomer.mac),
            .setNeighbour(bridge: "trb4096", address: newcomer.ip, mac: newcomer.mac),
        ])
        #expect(RouterPlanner.plan(desire(remotes: []), observed: matching) == [
            .deleteTunnel(vxlan: "trx4096", mac: remoteMAC, vtep: vtep),
            .deleteBridgeEntry(vxlan: "trx4096", mac: remoteMAC),
            .deleteNeighbour(bridge: "trb4096", address: remoteIP),
        ])
    }

    /// An endpoint that moved to another host: its tunnel goes to the new VTEP and the old one is removed.
    @Test func anEndpointThatMovedIsTunnelledToItsNewHost() {
        var moved = remote
        moved.vtep = IPv4Address("10.200.0.7")!
        #expect(RouterPlanner.plan(desire(remotes: [moved]), observed: matching) == [
            .addTunnel(vxlan: "trx4096", mac: remoteMAC, vtep: moved.vtep),
            .deleteTunnel(vxlan: "trx4096", mac: remoteMAC, vtep: vtep),
        ])
    }

    @Test func driftIsMendedAndStraysRemovedButForeignAndKeptLinksStay() {
        var kernel = matching
        kernel.links[1].mtu = 1500
        kernel.links[3].flags = 0
        kernel.links += [Link(index: 5, name: "trv9", up: true, master: 2, kind: "veth"), Link(index: 6, name: "eth9", up: true),
                         Link(index: 7, name: "trvahead", up: true, master: 2, kind: "veth"),
                         Link(index: 8, name: "vmtap", up: true, kind: "tun")]
        kernel.fdb.append(tunnel(to: IPv4Address("10.200.0.66")!, for: zero))
        kernel.neighbours.append(Neighbour(family: NL.AF_INET, index: 2, state: NL.NUD_PERMANENT, flags: 0,
                                           address: IPv4Address("10.1.1.66")!, mac: remoteMAC))
        // A neighbour the router learned itself is the kernel's, not a stray.
        kernel.neighbours.append(Neighbour(family: NL.AF_INET, index: 2, state: 0x02, flags: 0, address: IPv4Address("10.1.1.2")!,
                                           mac: localMAC))
        #expect(RouterPlanner.plan(desire(keep: ["trvahead"]), observed: kernel) == [
            .setLink(name: "trb4096", mtu: mtu, mac: red.gatewayMAC),
            .deleteTunnel(vxlan: "trx4096", mac: zero, vtep: IPv4Address("10.200.0.66")!),
            .deleteNeighbour(bridge: "trb4096", address: IPv4Address("10.1.1.66")!),
            .setLink(name: "trv1", master: "trb4096"),
            .deleteLink(name: "trv9"),
            .deleteLink(name: "vmtap"),
        ])
    }

    @Test func aPortWithNoWayToPlugItIsLeftMissingAndAnUnwantedOneRemoved() {
        var kernel = matching
        kernel.links.removeAll { $0.name == "trv1" }
        #expect(RouterPlanner.plan(desire(ports: [WantedPort(name: "trv1", bridge: "trb4096", plug: nil)]), observed: kernel) == [])
        #expect(RouterPlanner.plan(desire(ports: []), observed: matching) == [.deleteLink(name: "trv1")])
    }

    @Test func shapersAndBridgeHooksFollowTheRuleset() {
        var wanted = desire()
        wanted.shapers = ["tri1"]
        wanted.filtersBridgedTraffic = true
        #expect(RouterPlanner.plan(wanted, observed: matching) == [
            .createShaper(name: "tri1"), .setBridgeHooks(bridge: "trb4096", enabled: true),
        ])
        var shaped = matching
        shaped.links.append(Link(index: 9, name: "tri1", up: true, kind: "ifb"))
        #expect(RouterPlanner.plan(desire(), observed: shaped) == [.deleteLink(name: "tri1")])
    }

    /// An attach plans its subnet and its port only: the router's other ports and its forwarding are not its business.
    @Test func anAttachPlansItsPortAndNothingElse() {
        var kernel = matching
        kernel.links.append(Link(index: 5, name: "trv9", up: true, master: 2, kind: "veth"))
        let newPort = WantedPort(name: "trv2", bridge: "trb4096", plug: container)
        #expect(RouterPlanner.plan(port: newPort, subnet: red, mtu: mtu, observed: kernel)
                == [.plug(port: "trv2", bridge: "trb4096", container)])
        #expect(RouterPlanner.plan(port: WantedPort(name: "trv1", bridge: "trb4096", plug: container), subnet: red, mtu: mtu,
                                   observed: kernel) == [], "plugging again what is plugged does nothing")
        let handover = PortPlug.handover(interface: "tre1", mac: localMAC, ip: IPv4Address("10.1.1.2")!)
        let replug = WantedPort(name: "trv1", bridge: "trb4096", plug: handover)
        #expect(RouterPlanner.plan(port: replug, subnet: red, mtu: mtu, observed: kernel) == [
            .deleteLink(name: "trv1"), .plug(port: "trv1", bridge: "trb4096", handover),
        ], "a Docker engine's port is made afresh: the old one's other end may be in a container already")
        #expect(RouterPlanner.plan(port: newPort, subnet: red, mtu: mtu, observed: RouterObservation()) == [
            .createBridge(name: "trb4096", mtu: mtu, mac: red.gatewayMAC),
            .addAddress(link: "trb4096", address: red.gateway, prefixLength: 24),
            .createVXLAN(name: "trx4096", vni: 4096, mtu: mtu),
            .setLink(name: "trx4096", master: "trb4096", mtu: mtu),
            .suppressOnBridgePort(name: "trx4096"),
            .plug(port: "trv2", bridge: "trb4096", container),
        ])
    }

    /// Duplicates in the desired state (one MAC listed twice) give one operation each, not two.
    @Test func duplicatesInTheDesiredStateAreWrittenOnce() {
        #expect(RouterPlanner.plan(desire(remotes: [remote, remote]), observed: RouterObservation()).filter {
            if case .setNeighbour = $0 { return true }
            if case .addBridgeEntry = $0 { return true }
            return false
        }.count == 2)
    }
}
