import CBPF
import Foundation
import TrellisModel
import TrellisNetlink

/// The BPF objects compiled from `Programs/` at build time, as base64 (see the BPFObjectEmbedder plugin).
enum BPFObjects {}

/// A port on the fast path: its host end's index in the router namespace, the container's address and MAC,
/// and its subnet's VNI (frames only take the fast path between ports of one subnet).
public struct FastPort: Equatable, Hashable, Sendable {
    public var ifindex: Int32
    public var ip: IPv4Address
    public var mac: MACAddress
    public var segment: UInt32

    public init(ifindex: Int32, ip: IPv4Address, mac: MACAddress, segment: UInt32) {
        self.ifindex = ifindex
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

/// One router namespace's instance of the fast-path program (`Programs/fastpath.bpf.c`) and its maps.
/// Ports are attached with tcx links that this object holds: closing it, or the agent's exit, detaches
/// them all and the ports' traffic takes the bridge path again, so nothing outlives its owner.
public final class FastPathProgram: @unchecked Sendable {
    private let object: OpaquePointer
    private let program: Int32
    private let portsByIfindex: Int32
    private let portsByAddress: Int32
    private let deliveredByIfindex: Int32
    /// The tcx link of each attached port and its entry, by the port's index.
    private var links: [Int32: (link: Int32, port: FastPort)] = [:]
    private let lock = NSLock()

    /// Loads the program and makes its empty maps.
    public init() throws {
        libbpf_set_print(nil)
        guard var bytes = Data(base64Encoded: BPFObjects.fastpath).map(Array.init) else {
            throw FastPathError(operation: "decode the embedded object", code: EINVAL)
        }
        guard let object = bytes.withUnsafeMutableBytes({ bpf_object__open_mem($0.baseAddress, $0.count, nil) }) else {
            throw FastPathError(operation: "open the fast-path object", code: errno)
        }
        let loaded = bpf_object__load(object)
        guard loaded == 0 else {
            bpf_object__close(object)
            throw FastPathError(operation: "load the fast-path program", code: -loaded)
        }
        func descriptor(ofMap name: String) -> Int32 { bpf_map__fd(bpf_object__find_map_by_name(object, name)) }
        self.object = object
        program = bpf_program__fd(bpf_object__find_program_by_name(object, "fast_port_ingress"))
        portsByIfindex = descriptor(ofMap: "ports_by_ifindex")
        portsByAddress = descriptor(ofMap: "ports_by_address")
        deliveredByIfindex = descriptor(ofMap: "delivered_by_ifindex")
    }

    deinit {
        for attached in links.values { close(attached.link) }
        bpf_object__close(object)
    }

    /// Whether this kernel loads the program and attaches tcx links (Linux 6.6 or later, with BPF).
    public static func isSupported() -> Bool { (try? FastPathProgram()) != nil }

    /// Makes `port` a source and a destination of the fast path, and attaches the program to its host end
    /// (found by index in `namespace`) unless it is attached already.
    public func add(_ port: FastPort, in namespace: NetworkNamespace) throws {
        var value = Self.value(port)
        var ifindex = UInt32(bitPattern: port.ifindex), address = port.ip.value.bigEndian
        try check(bpf_map_update_elem(portsByIfindex, &ifindex, &value, UInt64(BPF_ANY)), "record port \(port.ifindex)")
        try check(bpf_map_update_elem(portsByAddress, &address, &value, UInt64(BPF_ANY)), "record address \(port.ip)")
        let attached = lock.withLock { () -> Bool in
            guard links[port.ifindex] != nil else { return false }
            links[port.ifindex]?.port = port
            return true
        }
        if attached { return }
        let program = program
        let fd = try namespace.run { () -> Int32 in
            let fd = trellis_tcx_attach_ingress(program, port.ifindex)
            return fd >= 0 ? fd : -errno
        }
        guard fd >= 0 else {
            // Nothing of a port that could not be attached stays in the maps.
            bpf_map_delete_elem(portsByAddress, &address)
            bpf_map_delete_elem(portsByIfindex, &ifindex)
            throw FastPathError(operation: "attach to port \(port.ifindex)", code: -fd)
        }
        lock.withLock { links[port.ifindex] = (fd, port) }
    }

    /// The ports on the fast path, as they were last added.
    public func ports() -> [FastPort] { lock.withLock { links.values.map(\.port) } }

    /// Takes `port` off the fast path: no frame is redirected to or from it any more. What it delivered to
    /// the port is kept, so the port's counters never go back (see `forgetDeliveries(keeping:)`).
    public func remove(_ port: FastPort) {
        var ifindex = UInt32(bitPattern: port.ifindex), address = port.ip.value.bigEndian
        bpf_map_delete_elem(portsByAddress, &address)
        bpf_map_delete_elem(portsByIfindex, &ifindex)
        if let attached = lock.withLock({ links.removeValue(forKey: port.ifindex) }) { close(attached.link) }
    }

    /// What the fast path delivered to each port, by the host end's index, summed over CPUs.
    public func deliveries() -> [Int32: FastPathDelivery] {
        let cpus = Int(libbpf_num_possible_cpus())
        guard cpus > 0 else { return [:] }
        var result: [Int32: FastPathDelivery] = [:]
        var key: UInt32 = 0, next: UInt32 = 0
        var values = [UInt64](repeating: 0, count: 2 * cpus)
        var status = bpf_map_get_next_key(deliveredByIfindex, nil, &next)
        while status == 0 {
            key = next
            if bpf_map_lookup_elem(deliveredByIfindex, &key, &values) == 0 {
                var total = FastPathDelivery()
                for cpu in 0..<cpus {
                    total.packets += values[2 * cpu]
                    total.bytes += values[2 * cpu + 1]
                }
                result[Int32(bitPattern: key)] = total
            }
            status = bpf_map_get_next_key(deliveredByIfindex, &key, &next)
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

    /// struct fast_port as the program reads it.
    private static func value(_ port: FastPort) -> [UInt8] {
        var bytes: [UInt8] = []
        for field in [UInt32(bitPattern: port.ifindex), port.ip.value.bigEndian, port.segment] {
            withUnsafeBytes(of: field) { bytes += $0 }
        }
        return bytes + port.mac.bytes + [0, 0]
    }

    private func check(_ result: Int32, _ operation: String) throws {
        if result != 0 { throw FastPathError(operation: operation, code: -result) }
    }
}
