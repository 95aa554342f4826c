import CBPF
import Foundation
import TrellisModel
import TrellisNetlink

/// The BPF objects compiled from `Programs/` at build time, as base64 (see the BPFObjectEmbedder plugin).
enum BPFObjects {}

/// A port on the fast path: its host end's index in the router namespace, the container's address and MAC,
/// its subnet's VNI, and the router's MAC on that subnet (the anycast gateway's; without it nothing is routed
/// to or from the port on the fast path). A tunnel is a subnet's VXLAN device instead (no address or MAC of
/// its own): what it receives for a fast port of its subnet goes straight in, and what fast ports send to
/// endpoints of its subnet on other hosts goes straight out through it.
public struct FastPort: Equatable, Hashable, Sendable {
    public var ifindex: Int32
    public var ip: IPv4Address
    public var mac: MACAddress
    public var segment: UInt32
    public var gateway: MACAddress?
    public var tunnel: Bool

    public init(ifindex: Int32, ip: IPv4Address, mac: MACAddress, segment: UInt32, gateway: MACAddress? = nil, tunnel: Bool = false) {
        self.ifindex = ifindex
        self.ip = ip
        self.mac = mac
        self.segment = segment
        self.gateway = gateway
        self.tunnel = tunnel
    }

    /// A subnet's VXLAN device with index `ifindex`.
    public static func tunnel(ifindex: Int32, segment: UInt32, gateway: MACAddress? = nil) -> FastPort {
        FastPort(ifindex: ifindex, ip: IPv4Address(0), mac: MACAddress(0)!, segment: segment, gateway: gateway, tunnel: true)
    }
}

/// An endpoint on another host, as the fast path sends to it: through its subnet's tunnel, to its MAC.
public struct FastRemote: Equatable, Hashable, Sendable {
    public var ip: IPv4Address
    public var mac: MACAddress
    public var segment: UInt32

    public init(ip: IPv4Address, mac: MACAddress, segment: UInt32) {
        self.ip = ip
        self.mac = mac
        self.segment = segment
    }
}

/// What the fast path delivered to one port, which the port's own counters do not see.
public struct FastPathDelivery: Equatable, Sendable {
    public var packets: UInt64
    public var bytes: UInt64

    public init(packets: UInt64 = 0, bytes: UInt64 = 0) {
        self.packets = packets
        self.bytes = bytes
    }
}

/// One direction of a connection as the fast path counts it: addresses and ports as its packets carry them.
public struct FastPathFlow: Hashable, Sendable {
    public var source: IPv4Address
    public var destination: IPv4Address
    public var sourcePort: UInt16
    public var destinationPort: UInt16
    public var protocolNumber: UInt8

    public init(source: IPv4Address, destination: IPv4Address, sourcePort: UInt16, destinationPort: UInt16, protocolNumber: UInt8) {
        self.source = source
        self.destination = destination
        self.sourcePort = sourcePort
        self.destinationPort = destinationPort
        self.protocolNumber = protocolNumber
    }

    /// The other direction of the same connection.
    public var reversed: FastPathFlow {
        FastPathFlow(source: destination, destination: source, sourcePort: destinationPort, destinationPort: sourcePort,
                     protocolNumber: protocolNumber)
    }

    /// struct flow_key as the program writes it.
    var key: [UInt8] {
        var bytes: [UInt8] = []
        for field in [source.value.bigEndian, destination.value.bigEndian] { withUnsafeBytes(of: field) { bytes += $0 } }
        for port in [sourcePort.bigEndian, destinationPort.bigEndian] { withUnsafeBytes(of: port) { bytes += $0 } }
        return bytes + [protocolNumber, 0, 0, 0]
    }

    init(key bytes: [UInt8]) {
        // Network order: the first byte is the most significant.
        func word(_ at: Int) -> UInt32 { bytes[at..<at + 4].reduce(0) { $0 << 8 | UInt32($1) } }
        func half(_ at: Int) -> UInt16 { UInt16(bytes[at]) << 8 | UInt16(bytes[at + 1]) }
        source = IPv4Address(word(0))
        destination = IPv4Address(word(4))
        sourcePort = half(8)
        destinationPort = half(10)
        protocolNumber = bytes[12]
    }
}

/// What the router's ruleset in force asks of the fast path: frames it filters (between subnets always, within
/// one where `filtersBridgedTraffic`) take the fast path only for connections whose conntrack mark is
/// `generation`, the ruleset's own. Generation 0 admits none of them: while a ruleset loads, or before one is known.
public struct FastPathAdmission: Equatable, Sendable {
    public var generation: UInt32
    public var filtersBridgedTraffic: Bool

    public init(generation: UInt32, filtersBridgedTraffic: Bool) {
        self.generation = generation
        self.filtersBridgedTraffic = filtersBridgedTraffic
    }

    /// Nothing filtered takes the fast path, and everything is filtered.
    public static let closed = FastPathAdmission(generation: 0, filtersBridgedTraffic: true)
}

/// A failure of the BPF system call or of libbpf, with what was being done.
public struct FastPathError: Error, CustomStringConvertible {
    public var operation: String
    public var code: Int32

    public init(operation: String, code: Int32) {
        self.operation = operation
        self.code = code
    }
    public var description: String {
        "fast path: \(operation) failed: \(String(cString: strerror(code)))"
            + (code == EPERM ? " (loading BPF programs needs CAP_BPF and CAP_NET_ADMIN)" : "")
    }
}

/// One router namespace's instance of the fast-path program (`Programs/fastpath.bpf.c`) and its maps. It starts
/// closed (`FastPathAdmission.closed`): until told the ruleset in force, every frame takes the router's path.
///
/// Ports are hooked with a classic tc filter on a clsact qdisc (`RouteNetlink.hookIngress`), not a tcx link:
/// making or removing a tcx link waits for an RCU grace period (~10 ms here) holding the RTNL lock, which every
/// attach on the host then waits behind, while a filter is added in microseconds and its port's teardown costs
/// nothing more. The filters, not this object, keep the program and its maps alive: after the agent exits its
/// ports stay on the fast path with what it last said, and a restarted agent's program replaces each filter
/// atomically. A port that leaves the fast path keeps its filter, inert (the program passes on what it does not
/// know): removing and re-adding a hook would cost a grace period, or drop frames.
public final class FastPathProgram: @unchecked Sendable {
    /// libbpf's object when this process loaded the program, nil when it took over a predecessor's.
    private let object: OpaquePointer?
    /// The descriptors this process opened itself (a predecessor's program and maps), closed with it.
    private let adoptedDescriptors: [Int32]
    private let program: Int32
    private let portsByIfindex: Int32
    private let portsByAddress: Int32
    private let deliveredByIfindex: Int32
    private let gatewaysBySegment: Int32
    private let admissions: Int32
    private let deliveredByFlow: Int32
    private let tunnelsBySegment: Int32
    private let remotesByAddress: Int32
    private var remoteEndpoints: Set<FastRemote> = []
    /// The entry of each port on the fast path, by the port's index.
    private var entries: [Int32: FastPort] = [:]
    /// The links whose filter runs this program, by index: the ports on the fast path and inert ones.
    private var filtered: Set<Int32> = []
    private let lock = NSLock()

    /// Loads the program and makes its empty maps.
    public convenience init() throws {
        let object = try Self.openObject()
        let loaded = bpf_object__load(object)
        guard loaded == 0 else {
            bpf_object__close(object)
            throw FastPathError(operation: "load the fast-path program", code: -loaded)
        }
        self.init(object: object, adopted: [], program: bpf_program__fd(bpf_object__find_program_by_name(object, Self.entryPoint))) {
            bpf_map__fd(bpf_object__find_map_by_name(object, $0))
        }
        // An array map's entry starts zeroed, which would let unfiltered frames through: closed until told.
        try admit(.closed)
    }

    /// Takes over the program numbered `id` that a predecessor (this agent before a restart) left hooked to the
    /// links numbered `links`, with its maps as they are: nothing in the kernel changes, frames keep their path,
    /// and what it delivered keeps counting. It must be this very program: the same instructions (the kernel's
    /// tag of a load of ours, made with the predecessor's maps, matches its) and maps of the same shapes.
    public convenience init(adopting id: UInt32, hookedTo links: Set<Int32>) throws {
        var opened: [Int32] = []
        do {
            let (program, maps) = try Self.predecessor(id, opened: &opened)
            try Self.verifyIdentical(program: program, maps: maps)
            self.init(object: nil, adopted: opened, program: program) { maps[String($0.prefix(Self.mapNameLength))]?.descriptor ?? -1 }
        } catch {
            opened.forEach { close($0) }
            throw error
        }
        try takeOverRecord(hookedTo: links)
    }

    private init(object: OpaquePointer?, adopted: [Int32], program: Int32, map descriptor: (String) -> Int32) {
        self.object = object
        adoptedDescriptors = adopted
        self.program = program
        portsByIfindex = descriptor("ports_by_ifindex")
        portsByAddress = descriptor("ports_by_address")
        deliveredByIfindex = descriptor("delivered_by_ifindex")
        gatewaysBySegment = descriptor("gateways_by_segment")
        admissions = descriptor("admissions")
        deliveredByFlow = descriptor("delivered_by_flow")
        tunnelsBySegment = descriptor("tunnels_by_segment")
        remotesByAddress = descriptor("remotes_by_address")
    }

    /// Closes this process's descriptors; the program and its maps live on while a port's filter holds them.
    deinit {
        if let object { bpf_object__close(object) }
        adoptedDescriptors.forEach { close($0) }
    }

    /// The program's function, and the name of the filters that run it.
    private static let entryPoint = "fast_port_ingress"
    public static let filterName = "trellis-fastpath"
    /// The kernel keeps 15 bytes of a map's name (BPF_OBJ_NAME_LEN, with the terminating zero).
    private static let mapNameLength = Int(BPF_OBJ_NAME_LEN) - 1

    /// libbpf's object of the embedded program, opened, not loaded.
    private static func openObject() throws -> OpaquePointer {
        libbpf_set_print(nil)
        guard var bytes = Data(base64Encoded: BPFObjects.fastpath).map(Array.init) else {
            throw FastPathError(operation: "decode the embedded object", code: EINVAL)
        }
        guard let object = bytes.withUnsafeMutableBytes({ bpf_object__open_mem($0.baseAddress, $0.count, nil) }) else {
            throw FastPathError(operation: "open the fast-path object", code: errno)
        }
        return object
    }

    /// A map as the kernel describes it.
    private struct MapShape: Equatable {
        var descriptor: Int32
        var type: UInt32
        var keySize: UInt32
        var valueSize: UInt32
        var maxEntries: UInt32

        static func == (a: MapShape, b: MapShape) -> Bool {
            (a.type, a.keySize, a.valueSize, a.maxEntries) == (b.type, b.keySize, b.valueSize, b.maxEntries)
        }
    }

    /// The predecessor's program and its maps by name, as descriptors this process opened (in `opened`).
    private static func predecessor(_ id: UInt32, opened: inout [Int32]) throws -> (Int32, [String: MapShape]) {
        let program = bpf_prog_get_fd_by_id(id)
        guard program >= 0 else { throw FastPathError(operation: "open program \(id)", code: errno) }
        opened.append(program)
        var mapIDs = [UInt32](repeating: 0, count: 16)
        var info = bpf_prog_info()
        info.nr_map_ids = UInt32(mapIDs.count)
        var length = UInt32(MemoryLayout<bpf_prog_info>.size)
        let status = mapIDs.withUnsafeMutableBufferPointer { ids in
            info.map_ids = UInt64(UInt(bitPattern: ids.baseAddress))
            return bpf_obj_get_info_by_fd(program, &info, &length)
        }
        guard status == 0 else { throw FastPathError(operation: "describe program \(id)", code: errno) }
        var maps: [String: MapShape] = [:]
        for mapID in mapIDs.prefix(Int(min(info.nr_map_ids, UInt32(mapIDs.count)))) {
            let map = bpf_map_get_fd_by_id(mapID)
            guard map >= 0 else { throw FastPathError(operation: "open map \(mapID) of program \(id)", code: errno) }
            opened.append(map)
            var mapInfo = bpf_map_info()
            var mapLength = UInt32(MemoryLayout<bpf_map_info>.size)
            guard bpf_obj_get_info_by_fd(map, &mapInfo, &mapLength) == 0 else {
                throw FastPathError(operation: "describe map \(mapID) of program \(id)", code: errno)
            }
            let name = withUnsafeBytes(of: mapInfo.name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            maps[name] = MapShape(descriptor: map, type: mapInfo.type, keySize: mapInfo.key_size, valueSize: mapInfo.value_size,
                                  maxEntries: mapInfo.max_entries)
        }
        return (program, maps)
    }

    /// Loads the embedded program over the predecessor's maps and checks that the kernel gives it the same tag as
    /// the predecessor's program; the load goes again with the object.
    private static func verifyIdentical(program: Int32, maps: [String: MapShape]) throws {
        let object = try openObject()
        defer { bpf_object__close(object) }
        var map = bpf_object__next_map(object, nil)
        while let current = map {
            let name = String(cString: bpf_map__name(current))
            let wanted = MapShape(descriptor: -1, type: bpf_map__type(current).rawValue, keySize: bpf_map__key_size(current),
                                  valueSize: bpf_map__value_size(current), maxEntries: bpf_map__max_entries(current))
            guard let found = maps[String(name.prefix(mapNameLength))], found == wanted else {
                throw FastPathError(operation: "take over a fast-path program whose map \(name) differs", code: ESTALE)
            }
            let reused = bpf_map__reuse_fd(current, found.descriptor)
            guard reused == 0 else { throw FastPathError(operation: "reuse map \(name)", code: -reused) }
            map = bpf_object__next_map(object, current)
        }
        let loaded = bpf_object__load(object)
        guard loaded == 0 else { throw FastPathError(operation: "load the fast-path program", code: -loaded) }
        guard let ours = try? tag(of: bpf_program__fd(bpf_object__find_program_by_name(object, entryPoint))),
              try tag(of: program) == ours else {
            throw FastPathError(operation: "take over a fast-path program of another version", code: ESTALE)
        }
    }

    /// The kernel's hash of a loaded program's instructions.
    private static func tag(of program: Int32) throws -> [UInt8] {
        var info = bpf_prog_info()
        var length = UInt32(MemoryLayout<bpf_prog_info>.size)
        guard bpf_obj_get_info_by_fd(program, &info, &length) == 0 else {
            throw FastPathError(operation: "describe a fast-path program", code: errno)
        }
        return withUnsafeBytes(of: info.tag) { Array($0) }
    }

    /// Rebuilds this process's record from the adopted maps: the ports on the fast path (those whose links
    /// run the program; a stale entry of another link goes), their gateways, and the endpoints of other hosts.
    private func takeOverRecord(hookedTo links: Set<Int32>) throws {
        var gateways: [UInt32: MACAddress] = [:]
        for (key, value) in Self.entries(of: gatewaysBySegment, keySize: 4, valueSize: 8) {
            gateways[key.withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) }] = Self.mac(value.prefix(6))
        }
        var ports: [Int32: FastPort] = [:], stale: [FastPort] = []
        for (_, value) in Self.entries(of: portsByIfindex, keySize: 4, valueSize: 20) {
            let fields = value.withUnsafeBytes { bytes in (0..<3).map { bytes.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self) } }
            guard let mac = Self.mac(value[12..<18]) else { continue }
            let port = FastPort(ifindex: Int32(bitPattern: fields[0]), ip: IPv4Address(UInt32(bigEndian: fields[1])), mac: mac,
                                segment: fields[2], gateway: gateways[fields[2]], tunnel: value[18] != 0)
            if links.contains(port.ifindex) { ports[port.ifindex] = port } else { stale.append(port) }
        }
        stale.forEach(forget)
        var remotes: Set<FastRemote> = []
        for (key, value) in Self.entries(of: remotesByAddress, keySize: 4, valueSize: 12) {
            guard let mac = Self.mac(value[4..<10]) else { continue }
            let address = key.withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) }
            remotes.insert(FastRemote(ip: IPv4Address(UInt32(bigEndian: address)), mac: mac,
                                      segment: value.withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) }))
        }
        lock.withLock {
            entries = ports
            filtered = links
            remoteEndpoints = remotes
        }
    }

    /// A MAC from its six bytes as the program keeps them.
    private static func mac(_ bytes: some Collection<UInt8>) -> MACAddress? { MACAddress(bytes.reduce(UInt64(0)) { $0 << 8 | UInt64($1) }) }

    /// Every entry of a map, as bytes (a per-CPU map's value holds one value per possible CPU).
    private static func entries(of map: Int32, keySize: Int, valueSize: Int) -> [([UInt8], [UInt8])] {
        var result: [([UInt8], [UInt8])] = []
        var key = [UInt8](repeating: 0, count: keySize), next = key, value = [UInt8](repeating: 0, count: valueSize)
        var status = bpf_map_get_next_key(map, nil, &next)
        while status == 0 {
            key = next
            if bpf_map_lookup_elem(map, &key, &value) == 0 { result.append((key, value)) }
            status = bpf_map_get_next_key(map, &key, &next)
        }
        return result
    }

    /// Whether this kernel loads the program (Linux 6.6 or later, with BPF and the conntrack kfuncs).
    public static func isSupported() -> Bool { (try? FastPathProgram()) != nil }

    /// Makes `port` a source and a destination of the fast path (and records its subnet's gateway), and hooks
    /// the program to its host end through `netlink`, the router namespace's (a filter already there, this
    /// program's or another's, is replaced atomically).
    public func add(_ port: FastPort, through netlink: RouteNetlink) throws {
        if let gateway = port.gateway { try setGateway(segment: port.segment, mac: gateway) }
        var value = Self.value(port)
        var ifindex = UInt32(bitPattern: port.ifindex), address = port.ip.value.bigEndian, segment = port.segment
        try check(bpf_map_update_elem(portsByIfindex, &ifindex, &value, UInt64(BPF_ANY)), "record port \(port.ifindex)")
        if port.tunnel {
            try check(bpf_map_update_elem(tunnelsBySegment, &segment, &ifindex, UInt64(BPF_ANY)), "record the tunnel of \(segment)")
        } else {
            try check(bpf_map_update_elem(portsByAddress, &address, &value, UInt64(BPF_ANY)), "record address \(port.ip)")
        }
        do {
            try hook(port.ifindex, through: netlink)
        } catch {
            // Nothing of a port that could not be hooked stays in the maps.
            forget(port)
            throw error
        }
        lock.withLock { entries[port.ifindex] = port }
    }

    /// Makes the link numbered `ifindex` run this program, inert for it until it is added: what another program
    /// (a predecessor's) would still do there stops.
    public func hook(_ ifindex: Int32, through netlink: RouteNetlink) throws {
        if lock.withLock({ filtered.contains(ifindex) }) { return }
        try netlink.hookIngress(index: ifindex, program: program, name: Self.filterName)
        lock.withLock { _ = filtered.insert(ifindex) }
    }

    /// The ports on the fast path, as they were last added.
    public func ports() -> [FastPort] { lock.withLock { Array(entries.values) } }

    /// The indexes of the links whose filter runs this program.
    public func hookedLinks() -> Set<Int32> { lock.withLock { filtered } }

    /// Takes `port` off the fast path: no frame is redirected to or from it any more (its filter stays, inert).
    /// What it delivered to the port is kept, so the port's counters never go back (see `forgetDeliveries(keeping:)`).
    public func remove(_ port: FastPort) {
        forget(port)
        lock.withLock { _ = entries.removeValue(forKey: port.ifindex) }
    }

    /// Forgets the links that are gone, with their entries.
    public func forgetLinks(keeping existing: Set<Int32>) {
        let gone = lock.withLock { entries.values.filter { !existing.contains($0.ifindex) } }
        gone.forEach(remove)
        lock.withLock { filtered.formIntersection(existing) }
    }

    /// Deletes a port's entries from the maps.
    private func forget(_ port: FastPort) {
        var ifindex = UInt32(bitPattern: port.ifindex), address = port.ip.value.bigEndian, segment = port.segment
        if port.tunnel {
            var current: UInt32 = 0
            if bpf_map_lookup_elem(tunnelsBySegment, &segment, &current) == 0, current == ifindex {
                bpf_map_delete_elem(tunnelsBySegment, &segment)
            }
        } else {
            bpf_map_delete_elem(portsByAddress, &address)
        }
        bpf_map_delete_elem(portsByIfindex, &ifindex)
    }

    /// Makes the fast path send to these endpoints of other hosts through their subnets' tunnels, as far as its
    /// map holds them (65,536): what is sent to one it cannot hold takes the bridge path. The ones it holds.
    @discardableResult
    public func addRemotes(_ remotes: [FastRemote]) -> [FastRemote] {
        remotes.filter { remote in
            var key = remote.ip.value.bigEndian, value: [UInt8] = []
            withUnsafeBytes(of: remote.segment) { value += $0 }
            value += remote.mac.bytes + [0, 0]
            guard bpf_map_update_elem(remotesByAddress, &key, &value, UInt64(BPF_ANY)) == 0 else { return false }
            lock.withLock {
                remoteEndpoints = remoteEndpoints.filter { $0.ip != remote.ip }
                remoteEndpoints.insert(remote)
            }
            return true
        }
    }

    /// Forgets endpoints of other hosts: what is sent to them takes the bridge path.
    public func removeRemotes(_ remotes: [FastRemote]) {
        for remote in remotes {
            let recorded = lock.withLock { remoteEndpoints.remove(remote) != nil }
            var key = remote.ip.value.bigEndian
            if recorded { bpf_map_delete_elem(remotesByAddress, &key) }
        }
    }

    /// The endpoints of other hosts the fast path sends to.
    public func remotes() -> Set<FastRemote> { lock.withLock { remoteEndpoints } }

    /// What the fast path delivered to each port, by the host end's index, summed over CPUs.
    public func deliveries() -> [Int32: FastPathDelivery] {
        var result: [Int32: FastPathDelivery] = [:]
        for (key, total) in Self.perCPUTotals(deliveredByIfindex, keySize: 4) {
            result[key.withUnsafeBytes { $0.loadUnaligned(as: Int32.self) }] = total
        }
        return result
    }

    /// Forgets what was delivered to ports that no longer exist: every index but `existing`.
    public func forgetDeliveries(keeping existing: Set<Int32>) {
        for ifindex in deliveries().keys where !existing.contains(ifindex) {
            var key = UInt32(bitPattern: ifindex)
            bpf_map_delete_elem(deliveredByIfindex, &key)
        }
    }

    /// What the fast path carried of each filtered connection, by direction, summed over CPUs: conntrack's
    /// own counters miss these packets. Bytes are counted as conntrack counts them, from the IP header on.
    public func flowDeliveries() -> [FastPathFlow: FastPathDelivery] {
        var result: [FastPathFlow: FastPathDelivery] = [:]
        for (key, total) in Self.perCPUTotals(deliveredByFlow, keySize: 16) { result[FastPathFlow(key: key)] = total }
        return result
    }

    /// Forgets the counts of connections conntrack no longer holds (either direction's key).
    public func forgetFlows(_ flows: some Sequence<FastPathFlow>) {
        for flow in flows {
            var key = flow.key
            bpf_map_delete_elem(deliveredByFlow, &key)
        }
    }

    /// Makes `mac` the router's MAC on the subnet with VNI `segment`: routed frames to its ports leave from it.
    public func setGateway(segment: UInt32, mac: MACAddress) throws {
        var key = segment, value = mac.bytes + [0, 0]
        try check(bpf_map_update_elem(gatewaysBySegment, &key, &value, UInt64(BPF_ANY)), "record the gateway of \(segment)")
    }

    /// Tells the program what the ruleset in force is (see `FastPathAdmission`).
    public func admit(_ admission: FastPathAdmission) throws {
        var key: UInt32 = 0, value = [admission.generation, admission.filtersBridgedTraffic ? 1 : 0]
        try check(bpf_map_update_elem(admissions, &key, &value, UInt64(BPF_ANY)), "admit generation \(admission.generation)")
    }

    /// Every entry of a per-CPU map of struct delivered, summed over CPUs, by its key's bytes.
    private static func perCPUTotals(_ map: Int32, keySize: Int) -> [([UInt8], FastPathDelivery)] {
        let cpus = Int(libbpf_num_possible_cpus())
        guard cpus > 0 else { return [] }
        return entries(of: map, keySize: keySize, valueSize: 16 * cpus).map { key, value in
            var total = FastPathDelivery()
            value.withUnsafeBytes { counters in
                for cpu in 0..<cpus {
                    total.packets += counters.loadUnaligned(fromByteOffset: 16 * cpu, as: UInt64.self)
                    total.bytes += counters.loadUnaligned(fromByteOffset: 16 * cpu + 8, as: UInt64.self)
                }
            }
            return (key, total)
        }
    }

    /// struct fast_port as the program reads it.
    private static func value(_ port: FastPort) -> [UInt8] {
        var bytes: [UInt8] = []
        for field in [UInt32(bitPattern: port.ifindex), port.ip.value.bigEndian, port.segment] {
            withUnsafeBytes(of: field) { bytes += $0 }
        }
        return bytes + port.mac.bytes + [port.tunnel ? 1 : 0, 0]
    }

    private func check(_ result: Int32, _ operation: String) throws {
        if result != 0 { throw FastPathError(operation: operation, code: -result) }
    }
}
