import Glibc
import Testing
@testable import TrellisAgent
import TrellisFastPath
import TrellisModel
import TrellisNetlink
import TrellisNetlinkWire

/// A router's kernel in memory, changed as rtnetlink would change it, that records every call: the
/// executor's decisions and its record of the kernel are tested with it without root.
final class RecordingRouterKernel: RouterKernel {
    private(set) var state = RouterObservation(links: [Link(index: 1, name: "lo", up: true, kind: nil)])
    /// Every change asked for, in order.
    private(set) var writes: [String] = []
    /// Whole reads (four dumps each) and single link lookups.
    private(set) var dumps = 0, lookups = 0
    /// Ports whose plug the kernel refuses, as it refuses a container that already has the interface.
    var refusedPorts: Set<String> = []
    private var nextIndex: Int32 = 10

    func forgetCalls() { writes = []; dumps = 0; lookups = 0 }

    func observe() throws -> RouterObservation { dumps += 1; return state }
    func link(named name: String) throws -> Link? { lookups += 1; return state.link(named: name) }

    private func add(_ name: String, kind: String, up: Bool, mtu: UInt32? = nil, mac: MACAddress? = nil, master: Int32? = nil,
                     vni: UInt32? = nil) throws {
        guard state.link(named: name) == nil else { throw NetlinkError(code: EEXIST, operation: "create \(name)") }
        nextIndex += 1
        let made = mac ?? MACAddress(UInt64(0x02ee_0000_0000) + UInt64(nextIndex))
        state.links.append(Link(index: nextIndex, name: name, up: up, mtu: mtu, mac: made, master: master, kind: kind, vni: vni,
                                bridgeCallsIPHooks: kind == "bridge" ? false : nil))
    }

    private func change(_ index: Int32, _ body: (inout Link) -> Void) throws {
        guard let position = state.links.firstIndex(where: { $0.index == index }) else {
            throw NetlinkError(code: ENODEV, operation: "link #\(index)")
        }
        body(&state.links[position])
    }

    func createBridge(name: String, mtu: UInt32, mac: MACAddress) throws {
        writes.append("create bridge \(name)")
        try add(name, kind: "bridge", up: true, mtu: mtu, mac: mac)
    }

    func createVXLAN(name: String, vni: Int, mtu: UInt32) throws {
        writes.append("create vxlan \(name)")
        try add(name, kind: "vxlan", up: false, mtu: mtu, vni: UInt32(vni))
    }

    func createShaper(name: String) throws {
        writes.append("create ifb \(name)")
        try add(name, kind: "ifb", up: true)
    }

    func setLinkUp(index: Int32, master: Int32?, mtu: UInt32?, mac: MACAddress?) throws {
        writes.append("set #\(index) up")
        try change(index) { link in
            link.flags |= NL.IFF_UP
            if let master { link.master = master }
            if let mtu { link.mtu = mtu }
            if let mac { link.mac = mac }
        }
    }

    func suppressOnBridgePort(index: Int32) throws { writes.append("suppress on #\(index)") }

    func setBridgeHooks(index: Int32, enabled: Bool) throws {
        writes.append("bridge #\(index) hooks \(enabled)")
        try change(index) { $0.bridgeCallsIPHooks = enabled }
    }

    func addAddress(index: Int32, _ address: IPv4Address, prefixLength: Int) throws {
        writes.append("address \(address)/\(prefixLength) on #\(index)")
        guard !state.addresses.contains(where: { $0.index == index && $0.address == address }) else {
            throw NetlinkError(code: EEXIST, operation: "address")
        }
        state.addresses.append(InterfaceAddress(index: index, address: address, prefixLength: prefixLength))
    }

    func replaceTunnel(index: Int32, mac: MACAddress, vtep: IPv4Address) throws {
        writes.append("tunnel \(mac) → \(vtep)")
        state.fdb.removeAll { $0.index == index && $0.flags & NL.NTF_SELF != 0 && $0.mac == mac && $0.address == vtep }
        state.fdb.append(Neighbour(family: NL.AF_BRIDGE, index: index, state: NL.NUD_PERMANENT | NL.NUD_NOARP, flags: NL.NTF_SELF,
                                   address: vtep, mac: mac))
    }

    func deleteTunnel(index: Int32, mac: MACAddress, vtep: IPv4Address) throws {
        writes.append("delete tunnel \(mac) → \(vtep)")
        try remove(from: \.fdb) { $0.index == index && $0.flags & NL.NTF_SELF != 0 && $0.mac == mac && $0.address == vtep }
    }

    func replaceBridgeEntry(index: Int32, mac: MACAddress) throws {
        writes.append("bridge entry \(mac)")
        let master = state.links.first { $0.index == index }?.master
        state.fdb.removeAll { $0.master == master && $0.address == nil && $0.mac == mac }
        state.fdb.append(Neighbour(family: NL.AF_BRIDGE, index: index, state: NL.NUD_NOARP, flags: NL.NTF_MASTER, address: nil, mac: mac,
                                   master: master))
    }

    func deleteBridgeEntry(index: Int32, mac: MACAddress) throws {
        writes.append("delete bridge entry \(mac)")
        try remove(from: \.fdb) { $0.index == index && $0.master != nil && $0.address == nil && $0.mac == mac }
    }

    func replaceNeighbour(index: Int32, _ address: IPv4Address, mac: MACAddress) throws {
        writes.append("neighbour \(address) \(mac)")
        state.neighbours.removeAll { $0.index == index && $0.address == address }
        state.neighbours.append(Neighbour(family: NL.AF_INET, index: index, state: NL.NUD_PERMANENT, flags: 0, address: address, mac: mac))
    }

    func deleteNeighbour(index: Int32, _ address: IPv4Address) throws {
        writes.append("delete neighbour \(address)")
        try remove(from: \.neighbours) { $0.index == index && $0.address == address }
    }

    func announce(mac: MACAddress, ip: IPv4Address, onLink index: Int32) throws { writes.append("announce \(ip)") }

    func plug(_ port: String, _ plug: PortPlug, bridge: Int32) throws {
        writes.append("plug \(port)")
        if refusedPorts.contains(port) { throw NetlinkError(code: EEXIST, operation: "create \(port)") }
        let kind: String
        switch plug {
        case .tap: kind = "tun"
        case .veth, .handover: kind = "veth"
        }
        try add(port, kind: kind, up: true, mtu: 1450, master: bridge)
    }

    func addFastPort(_ port: FastPort) throws {
        writes.append("fast #\(port.ifindex) \(port.ip)")
        guard let name = state.links.first(where: { $0.index == port.ifindex })?.name else {
            throw NetlinkError(code: ENODEV, operation: "attach")
        }
        state.fastPorts[name] = port
        state.fastHooks.insert(name)
        state.ownHooks.insert(name)
    }

    /// An agent that exits: its program's filters stay on their links, but what it recorded goes with it.
    func endProcess() { state.fastPorts = [:]; state.ownHooks = []; state.fastRemotes = [] }
    /// Whether the router's fast path is on (false: an agent on the bridge path).
    var fastPathOn = true

    func removeFastPort(_ port: FastPort) {
        writes.append("slow #\(port.ifindex)")
        state.fastPorts = state.fastPorts.filter { $0.value != port }
    }

    func disarmHook(index: Int32) throws -> Bool {
        writes.append("disarm #\(index)")
        let name = try #require(state.links.first { $0.index == index }?.name)
        if fastPathOn { state.ownHooks.insert(name) } else { state.fastHooks.remove(name) }
        return fastPathOn
    }

    func addFastRemotes(_ remotes: [FastRemote]) throws -> [FastRemote] {
        writes.append("fast remotes \(remotes.map(\.ip))")
        state.fastRemotes.formUnion(remotes)
        return remotes
    }

    func removeFastRemotes(_ remotes: [FastRemote]) {
        writes.append("slow remotes \(remotes.map(\.ip))")
        state.fastRemotes.subtract(remotes)
    }

    func deleteLink(index: Int32) throws {
        writes.append("delete #\(index)")
        guard let name = state.links.first(where: { $0.index == index })?.name else {
            throw NetlinkError(code: ENODEV, operation: "delete")
        }
        state.forgetLink(named: name)
    }

    private func remove(from entries: WritableKeyPath<RouterObservation, [Neighbour]>, where matches: (Neighbour) -> Bool) throws {
        guard state[keyPath: entries].contains(where: matches) else { throw NetlinkError(code: ENOENT, operation: "delete entry") }
        state[keyPath: entries].removeAll(where: matches)
    }
}

/// The executor against the recording kernel: a router built from nothing, then changes that cost only
/// their own writes and no read, a record that stays what the kernel holds, and a refused port that
/// holds up nothing else.
struct RouterExecutorTests {
    let mtu: UInt32 = 1450
    let red = DesiredSubnet(path: "acme/app/web/red", cidr: IPv4Network(network: IPv4Address("10.1.1.0")!, prefixLength: 24)!,
                            gateway: IPv4Address("10.1.1.1")!, gatewayMAC: MACAddress("02:00:00:00:10:01")!, vni: 4096, dhcp: false,
                            remoteVTEPs: [IPv4Address("10.200.0.2")!])
    let blue = DesiredSubnet(path: "acme/app/db/blue", cidr: IPv4Network(network: IPv4Address("10.1.2.0")!, prefixLength: 24)!,
                             gateway: IPv4Address("10.1.2.1")!, gatewayMAC: MACAddress("02:00:00:00:10:02")!, vni: 4097, dhcp: false,
                             remoteVTEPs: [IPv4Address("10.200.0.3")!])

    func remote(_ number: Int, in subnet: DesiredSubnet, vtep: String) -> RemoteEndpoint {
        RemoteEndpoint(path: "\(subnet.path)/far\(number)", subnet: subnet.path,
                       ip: IPv4Address(subnet.cidr.network.value + UInt32(number)),
                       mac: MACAddress(UInt64(0x02aa_0000_0000) + UInt64(number))!, host: "h\(number)", vtep: IPv4Address(vtep)!)
    }

    func port(_ name: String, on subnet: DesiredSubnet) -> WantedPort {
        WantedPort(name: name, bridge: KernelNames.bridge(vni: subnet.vni),
                   plug: .veth(namespacePath: "/run/netns/\(name)", interface: "eth0", mac: MACAddress(0x02bb_0000_0001)!, address: nil))
    }

    /// Links, addresses and entries in one order, for comparing a record with the kernel.
    func sorted(_ observation: RouterObservation) -> [String] {
        (observation.links.map { "\($0)" } + observation.addresses.map { "\($0)" } + observation.fdb.map { "\($0)" }
            + observation.neighbours.map { "\($0)" }).sorted()
    }

    /// Applies the plan for `desire` against the record, as reconciles between resyncs do.
    func converge(_ desire: RouterDesire, _ kernel: RecordingRouterKernel, _ record: inout RouterObservation) throws -> ReconcileReport {
        var report = ReconcileReport()
        try RouterExecutor.apply(RouterPlanner.plan(desire, observed: record), to: kernel, observed: &record, &report) { port, error in
            throw error
        }
        return report
    }

    @Test func aRouterBuiltFromNothingLeavesNothingToDoAndChangesCostOnlyTheirWrites() throws {
        let kernel = RecordingRouterKernel()
        var record = try kernel.observe()
        let remotes = [remote(5, in: red, vtep: "10.200.0.2"), remote(6, in: blue, vtep: "10.200.0.3")]
        var desire = RouterDesire(subnets: [red, blue], remotes: remotes, ports: [port("trv1", on: red), port("trv2", on: blue)], mtu: mtu)
        let built = try converge(desire, kernel, &record)
        #expect(built.created == ["trb4096", "trx4096", "trb4097", "trx4097", "trv1", "trv2"], "\(built)")
        #expect(sorted(record) == sorted(kernel.state), "the record is what the kernel holds")
        // A restart reads the kernel and finds nothing to do.
        #expect(RouterPlanner.plan(desire, observed: try kernel.observe()).isEmpty)
        #expect(RouterPlanner.plan(desire, observed: record).isEmpty)

        // A remote endpoint arrives: a tunnel, the bridge's entry, a neighbour and its announcement; nothing is read.
        kernel.forgetCalls()
        let newcomer = remote(7, in: red, vtep: "10.200.0.9")
        desire.remotes.append(newcomer)
        _ = try converge(desire, kernel, &record)
        #expect(kernel.writes == ["tunnel \(newcomer.mac) → 10.200.0.9", "bridge entry \(newcomer.mac)",
                                  "neighbour \(newcomer.ip) \(newcomer.mac)", "announce \(newcomer.ip)"], "\(kernel.writes)")
        #expect(kernel.dumps == 0 && kernel.lookups == 0)

        // It leaves, and a local port goes: the reverse, and the port's removal.
        kernel.forgetCalls()
        desire.remotes.removeLast()
        desire.ports.removeLast()
        let left = try converge(desire, kernel, &record)
        #expect(kernel.writes.count == 4 && kernel.writes.allSatisfy { $0.hasPrefix("delete") }, "\(kernel.writes)")
        #expect(left.removed == ["trv2"] && kernel.dumps == 0)
        #expect(sorted(record) == sorted(kernel.state))
    }

    @Test func aRefusedPortIsUndoneAndReportedWhileTheRestIsApplied() throws {
        let kernel = RecordingRouterKernel()
        kernel.refusedPorts = ["trv1"]
        var record = try kernel.observe()
        let desire = RouterDesire(subnets: [red], remotes: [remote(5, in: red, vtep: "10.200.0.2")],
                                  ports: [port("trv1", on: red), port("trv2", on: red)], mtu: mtu)
        var report = ReconcileReport()
        var refused: [String] = []
        try RouterExecutor.apply(RouterPlanner.plan(desire, observed: record), to: kernel, observed: &record, &report) { port, _ in
            refused.append(port)
        }
        #expect(refused == ["trv1"])
        #expect(record.link(named: "trv1") == nil && record.link(named: "trv2") != nil)
        #expect(kernel.state.neighbours.count == 1, "the remote endpoint's forwarding is made all the same")
        #expect(sorted(record) == sorted(kernel.state))
    }

    func fast(_ name: String, _ number: UInt32, on subnet: DesiredSubnet) -> WantedFastPort {
        WantedFastPort(port: name, ip: IPv4Address(subnet.cidr.network.value + number), mac: MACAddress(0x02bb_0000_0000 + UInt64(number))!,
                       vni: subnet.vni, gateway: subnet.gatewayMAC)
    }

    /// Ports join the fast path once plugged (a tap never does), leave it before anything unplugs them, and
    /// join again with their new index when made afresh; the record stays what the program holds.
    @Test func portsJoinTheFastPathAfterTheyArePluggedAndLeaveItFirst() throws {
        let kernel = RecordingRouterKernel()
        var record = try kernel.observe()
        let tap = WantedPort(name: "trt3", bridge: "trb4096", plug: .tap)
        var desire = RouterDesire(subnets: [red], remotes: [], ports: [port("trv1", on: red), port("trv2", on: red), tap],
                                  fastPorts: [fast("trv1", 11, on: red), fast("trv2", 12, on: red), fast("trt3", 13, on: red)], mtu: mtu)
        let plan = RouterPlanner.plan(desire, observed: record)
        #expect(Array(plan.suffix(2)) == [.addFastPort(fast("trv1", 11, on: red)), .addFastPort(fast("trv2", 12, on: red))])
        _ = try converge(desire, kernel, &record)
        let first = try #require(record.link(named: "trv1")).index, second = try #require(record.link(named: "trv2")).index
        #expect(kernel.state.fastPorts == ["trv1": fast("trv1", 11, on: red).entry(ifindex: first),
                                           "trv2": fast("trv2", 12, on: red).entry(ifindex: second)])
        #expect(record.fastPorts == kernel.state.fastPorts)
        #expect(RouterPlanner.plan(desire, observed: record).isEmpty, "nothing to do once they are on it")

        // A port that gets a rate limit leaves the fast path, and nothing else changes.
        kernel.forgetCalls()
        desire.fastPorts.removeAll { $0.port == "trv2" }
        _ = try converge(desire, kernel, &record)
        #expect(kernel.writes == ["slow #\(second)"])

        // A port whose container was given another address is updated in place.
        kernel.forgetCalls()
        desire.fastPorts[0].ip = IPv4Address("10.1.1.99")!
        _ = try converge(desire, kernel, &record)
        #expect(kernel.writes == ["slow #\(first)", "fast #\(first) 10.1.1.99"])

        // A handed-over port is made afresh: off the fast path first, on again with its new index after.
        kernel.forgetCalls()
        desire.ports[0].plug = .handover(interface: "tmp1", mac: MACAddress(0x02bb_0000_0001)!, ip: IPv4Address("10.1.1.99")!)
        _ = try converge(desire, kernel, &record)
        let renewed = try #require(record.link(named: "trv1")).index
        #expect(renewed != first)
        #expect(kernel.writes == ["slow #\(first)", "delete #\(first)", "plug trv1", "fast #\(renewed) 10.1.1.99"], "\(kernel.writes)")

        // A port that goes leaves the fast path before it is deleted.
        kernel.forgetCalls()
        desire.ports.removeFirst()
        desire.fastPorts.removeFirst()
        _ = try converge(desire, kernel, &record)
        #expect(kernel.writes == ["slow #\(renewed)", "delete #\(renewed)"], "\(kernel.writes)")
        #expect(record.fastPorts.isEmpty && kernel.state.fastPorts.isEmpty)
    }

    /// A subnet's tunnel joins the fast path once its VXLAN device exists and leaves it before the device goes;
    /// endpoints on other hosts are added last and removed first; a resync that matches changes nothing.
    @Test func tunnelsAndRemoteEndpointsFollowTheirSubnets() throws {
        let kernel = RecordingRouterKernel()
        var record = try kernel.observe()
        let far = remote(21, in: red, vtep: "10.88.0.2"), farther = remote(22, in: red, vtep: "10.88.0.3")
        func fastRemote(_ endpoint: RemoteEndpoint) -> FastRemote {
            FastRemote(ip: endpoint.ip, mac: endpoint.mac, segment: UInt32(red.vni))
        }
        var desire = RouterDesire(subnets: [red], remotes: [far], ports: [port("trv1", on: red)],
                                  fastPorts: [.tunnel(of: red), fast("trv1", 11, on: red)], fastRemotes: [fastRemote(far)], mtu: mtu)
        let plan = RouterPlanner.plan(desire, observed: record)
        #expect(Array(plan.suffix(3)) == [.addFastPort(.tunnel(of: red)), .addFastPort(fast("trv1", 11, on: red)),
                                          .addFastRemotes([fastRemote(far)])])
        _ = try converge(desire, kernel, &record)
        let vxlan = try #require(record.link(named: KernelNames.vxlan(vni: red.vni))).index
        #expect(kernel.state.fastPorts[KernelNames.vxlan(vni: red.vni)] == .tunnel(ifindex: vxlan, segment: UInt32(red.vni),
                                                                                      gateway: red.gatewayMAC))
        #expect(kernel.state.fastRemotes == [fastRemote(far)] && record.fastRemotes == kernel.state.fastRemotes)
        #expect(RouterPlanner.plan(desire, observed: try kernel.observe()).isEmpty, "a resync finds nothing to do")

        // One remote endpoint goes and another comes: the one that went first, the new one last.
        kernel.forgetCalls()
        desire.remotes = [farther]
        desire.fastRemotes = [fastRemote(farther)]
        let moved = RouterPlanner.plan(desire, observed: record)
        #expect(moved.first == .removeFastRemotes([fastRemote(far)]) && moved.last == .addFastRemotes([fastRemote(farther)]))
        _ = try converge(desire, kernel, &record)
        #expect(kernel.state.fastRemotes == [fastRemote(farther)])

        // The subnet goes: its tunnel leaves the fast path before its VXLAN device is deleted.
        kernel.forgetCalls()
        desire = RouterDesire(subnets: [], remotes: [], ports: [], mtu: mtu)
        _ = try converge(desire, kernel, &record)
        let tunnelLeft = try #require(kernel.writes.firstIndex(of: "slow #\(vxlan)"), "\(kernel.writes)")
        let deleted = try #require(kernel.writes.firstIndex(of: "delete #\(vxlan)"), "\(kernel.writes)")
        #expect(tunnelLeft < deleted && kernel.state.fastPorts.isEmpty && kernel.state.fastRemotes.isEmpty)
    }

    /// A restarted agent finds its predecessor's hooks: it takes over those still wanted (a filter replaced in
    /// place, never removed first) and disarms the others (its own program, inert, takes them); a bridge-path
    /// agent removes them. A port that leaves the fast path keeps its own program's filter, inert.
    @Test func aRestartTakesOverThePredecessorsHooksAndDisarmsTheOnesNoLongerWanted() throws {
        let kernel = RecordingRouterKernel()
        var record = try kernel.observe()
        var desire = RouterDesire(subnets: [red], remotes: [], ports: [port("trv1", on: red), port("trv2", on: red)],
                                  fastPorts: [fast("trv1", 11, on: red), fast("trv2", 12, on: red)], mtu: mtu)
        _ = try converge(desire, kernel, &record)
        let first = try #require(record.link(named: "trv1")).index, second = try #require(record.link(named: "trv2")).index
        kernel.endProcess()
        kernel.forgetCalls()

        // While it was away trv2 got a rate limit.
        desire.fastPorts.removeLast()
        record = try kernel.observe()
        #expect(record.fastHooks == ["trv1", "trv2"] && record.ownHooks.isEmpty && record.fastPorts.isEmpty)
        #expect(RouterPlanner.plan(desire, observed: record) == [.removeFastPort(name: "trv2"), .addFastPort(fast("trv1", 11, on: red))])
        _ = try converge(desire, kernel, &record)
        #expect(kernel.writes == ["disarm #\(second)", "fast #\(first) 10.1.1.11"], "\(kernel.writes)")
        let observed = try kernel.observe()
        #expect(record.ownHooks == ["trv1", "trv2"] && record == observed)
        #expect(RouterPlanner.plan(desire, observed: record).isEmpty, "a disarmed hook stays as it is")

        // trv1 leaves the fast path too: out of the maps, its filter inert.
        kernel.forgetCalls()
        desire.fastPorts = []
        _ = try converge(desire, kernel, &record)
        #expect(kernel.writes == ["slow #\(first)"] && kernel.state.fastHooks == ["trv1", "trv2"])

        // An agent on the bridge path wants no fast port: no hook stays.
        kernel.endProcess()
        kernel.fastPathOn = false
        kernel.forgetCalls()
        record = try kernel.observe()
        _ = try converge(desire, kernel, &record)
        #expect(kernel.writes == ["disarm #\(first)", "disarm #\(second)"] && kernel.state.fastHooks.isEmpty)
    }
}
