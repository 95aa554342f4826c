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
    private var listeners: [String: NamespaceListener] = [:]
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
    func update(_ desired: DesiredState, ports: LocalBindingTable) {
        var wanted: [String: (namespace: String, vni: Int)] = [:]
        var next: [MACAddress: Binding] = [:]
        for domain in desired.domains {
            let namespace = KernelNames.routerNamespace(host: host, domainID: domain.id)
            for subnet in domain.subnets where subnet.dhcp {
                wanted["\(namespace)/\(subnet.vni)"] = (namespace, subnet.vni)
                for endpoint in desired.endpoints where endpoint.subnet == subnet.path {
                    let lease = DHCPLease(address: endpoint.ip, network: subnet.cidr, gateway: subnet.gateway,
                                          dnsServer: DNSService.address,
                                          mtu: UInt16(mtu), leaseSeconds: 86400)
                    next[endpoint.mac] = Binding(lease: lease, port: ports.portName(of: endpoint), vni: subnet.vni,
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
            guard let listener = try? Listener.start(namespace: place.namespace, vni: place.vni, service: self) else { continue }
            lock.lock()
            listeners[key] = listener
            lock.unlock()
        }
    }

    /// Stops every listener (the agent is shutting down).
    func stopAll() {
        lock.lock()
        let running = listeners.values
        listeners = [:]
        lock.unlock()
        running.forEach { $0.stop() }
    }

    /// One subnet's DHCP socket, bound to its bridge inside the router namespace.
    enum Listener {
        static func start(namespace: String, vni: Int, service: DHCPService) throws -> NamespaceListener {
            try NamespaceListener(namespace: namespace,
                                  open: {
                                      [try NamespaceListener.udpSocket(port: 67, device: KernelNames.bridge(vni: vni), broadcast: true)]
                                  },
                                  serve: { fds, listener in serve(fds[0], vni: vni, service: service, listener: listener) })
        }

        private static func serve(_ fd: Int32, vni: Int, service: DHCPService, listener: NamespaceListener) {
            let raw = socket(AF_PACKET, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            defer { if raw >= 0 { close(raw) } }
            var buffer = [UInt8](repeating: 0, count: 1500)
            while listener.running {
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
