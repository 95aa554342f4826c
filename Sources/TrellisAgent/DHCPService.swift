import CTrellisLinux
import Foundation
import Glibc
import TrellisModel
import TrellisNetlink
import TrellisNetlinkWire

/// DHCP served by the host, as OpenContrail's vRouter does: on every subnet with DHCP on, the agent
/// answers its own ports with the addresses the controller allocated. A request from a MAC that is
/// not a port of this host gets no answer, and answers leave straight through the client's own port,
/// so DHCP never hands out another port's address nor crosses to another host.
final class DHCPService: @unchecked Sendable {
    struct Binding: Equatable {
        var lease: DHCPLease
        var port: String
        var vni: Int
        var gatewayMAC: MACAddress
    }

    private let lock = NSLock()
    private var bindings: [MACAddress: Binding] = [:]
    private var listeners: [String: Listener] = [:]
    private let host: String
    private let mtu: UInt32

    init(host: String, mtu: UInt32) {
        self.host = host
        self.mtu = mtu
    }

    func binding(for mac: MACAddress, vni: Int) -> Binding? {
        lock.lock()
        defer { lock.unlock() }
        return bindings[mac].flatMap { $0.vni == vni ? $0 : nil }
    }

    /// Follows the desired state: leases for the local ports of DHCP subnets, a listener per such subnet.
    func update(_ desired: DesiredState) {
        var wanted: [String: (namespace: String, vni: Int)] = [:]
        var next: [MACAddress: Binding] = [:]
        for domain in desired.domains {
            let namespace = KernelNames.routerNamespace(host: host, domainID: domain.id)
            for subnet in domain.subnets where subnet.dhcp {
                wanted["\(namespace)/\(subnet.vni)"] = (namespace, subnet.vni)
                for endpoint in desired.endpoints where endpoint.subnet == subnet.path {
                    let lease = DHCPLease(address: endpoint.ip, network: subnet.cidr, gateway: subnet.gateway, dnsServer: nil,
                                          mtu: UInt16(mtu), leaseSeconds: 86400)
                    next[endpoint.mac] = Binding(lease: lease, port: KernelNames.port(endpointID: endpoint.id), vni: subnet.vni,
                                                 gatewayMAC: subnet.gatewayMAC)
                }
            }
        }
        lock.lock()
        bindings = next
        let stale = listeners.filter { wanted[$0.key] == nil }
        for key in stale.keys { listeners[key] = nil }
        let missing = wanted.filter { listeners[$0.key] == nil }
        lock.unlock()
        for listener in stale.values { listener.stop() }
        for (key, place) in missing {
            guard let listener = try? Listener(namespace: place.namespace, vni: place.vni, service: self) else { continue }
            lock.lock()
            listeners[key] = listener
            lock.unlock()
        }
    }

    /// One subnet's DHCP socket, bound to its bridge inside the router namespace, served by its own thread.
    final class Listener: @unchecked Sendable {
        private let stopped = NSLock()
        private var isStopped = false

        init(namespace: String, vni: Int, service: DHCPService) throws {
            let ready = DispatchSemaphore(value: 0)
            let path = "\(NetworkNamespace.namedDirectory)/\(namespace)"
            let outcome = StartOutcome()
            let thread = Thread { [self] in
                do {
                    let fd = try Self.open(path: path, bridge: KernelNames.bridge(vni: vni))
                    ready.signal()
                    defer { close(fd) }
                    self.serve(fd, vni: vni, service: service)
                } catch {
                    outcome.failure = error
                    ready.signal()
                }
            }
            thread.start()
            ready.wait()
            if let failure = outcome.failure { throw failure }
        }

        /// Written by the listener's thread before it signals, read by the starter after waiting.
        private final class StartOutcome: @unchecked Sendable { var failure: (any Error)? }

        func stop() {
            stopped.lock()
            isStopped = true
            stopped.unlock()
        }

        private var running: Bool {
            stopped.lock()
            defer { stopped.unlock() }
            return !isStopped
        }

        /// Enters the namespace for good (this thread is ours) and opens the UDP socket on port 67.
        private static func open(path: String, bridge: String) throws -> Int32 {
            let namespace = try NetworkNamespace(path: path)
            guard trellis_setns_net(namespace.fd) == 0 else { throw NetlinkError(code: errno, operation: "setns(\(path))") }
            let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { throw NetlinkError(code: errno, operation: "socket(DHCP)") }
            var on: Int32 = 1
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, socklen_t(MemoryLayout<Int32>.size))
            setsockopt(fd, SOL_SOCKET, SO_BROADCAST, &on, socklen_t(MemoryLayout<Int32>.size))
            let name = Array(bridge.utf8) + [0]
            guard setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, name, socklen_t(name.count)) == 0 else {
                close(fd)
                throw NetlinkError(code: errno, operation: "bind DHCP to \(bridge)")
            }
            var timeout = timeval(tv_sec: 0, tv_usec: 500_000)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = UInt16(67).bigEndian
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard bound == 0 else {
                close(fd)
                throw NetlinkError(code: errno, operation: "bind DHCP port 67 on \(bridge)")
            }
            return fd
        }

        private func serve(_ fd: Int32, vni: Int, service: DHCPService) {
            let raw = socket(AF_PACKET, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            defer { if raw >= 0 { close(raw) } }
            var buffer = [UInt8](repeating: 0, count: 1500)
            while running {
                let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                guard count > 0, let request = DHCPMessage(Array(buffer[0..<count])),
                      let binding = service.binding(for: request.clientMAC, vni: vni),
                      let (kind, lease) = DHCPServerLogic.answer(request, lease: binding.lease) else { continue }
                let payload = DHCPServerLogic.replyPayload(to: request, kind: kind, lease: lease)
                let destination = request.broadcastFlag || kind == .nak ? IPv4Address(UInt32.max) : lease.address
                let frame = UDPFrame.make(sourceMAC: binding.gatewayMAC, destinationMAC: request.clientMAC, source: lease.gateway,
                                          destination: destination, sourcePort: 67, destinationPort: 68, payload: payload)
                var link = sockaddr_ll()
                link.sll_family = UInt16(AF_PACKET)
                link.sll_ifindex = Int32(if_nametoindex(binding.port))
                link.sll_halen = 6
                _ = frame.withUnsafeBytes { bytes in
                    withUnsafePointer(to: &link) {
                        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                            sendto(raw, bytes.baseAddress, bytes.count, 0, $0, socklen_t(MemoryLayout<sockaddr_ll>.size))
                        }
                    }
                }
            }
        }
    }
}
