import Foundation
import Glibc
import TrellisModel
import TrellisNetlink
import TrellisNetlinkWire

/// Names across hosts: each domain's router namespace answers DNS for the endpoints of that domain
/// (`NAME`, `NAME.SUBNET`, `NAME.SUBNET.DOMAIN`) on a link-local `address`, the same in every domain
/// and on every host, which containers are given as their nameserver. A domain's
/// resolver knows only its own domain, so names of other domains do not resolve.
final class DNSService: @unchecked Sendable {
    /// The resolver's address in every router namespace (as AWS's 169.254.169.253).
    static let address = IPv4Address(0xA9FE_A9FD)

    private let lock = NSLock()
    private var zones: [String: DNSZone] = [:]
    private var listeners: [String: NamespaceListener] = [:]
    private let host: String

    init(host: String) { self.host = host }

    /// The names of every domain of `desired`: its local endpoints and those of other hosts.
    static func zones(_ desired: DesiredState) -> [Int: DNSZone] {
        var zones: [Int: DNSZone] = [:]
        for domain in desired.domains {
            var zone = DNSZone()
            let subnets = Set(domain.subnets.map(\.path))
            for endpoint in desired.endpoints where endpoint.domain == domain.path {
                zone.add(name: endpoint.dnsName, subnet: endpoint.subnet, domain: domain.path, address: endpoint.ip)
            }
            for remote in desired.remoteEndpoints where subnets.contains(remote.subnet) {
                zone.add(name: remote.dnsName, subnet: remote.subnet, domain: domain.path, address: remote.ip)
            }
            zones[domain.id] = zone
        }
        return zones
    }

    /// Takes the names of a new desired state, as soon as it arrives: names do not wait for the
    /// datapath's reconcile, so a container never asks for a peer its host has heard of but not yet served.
    func follow(_ desired: DesiredState) {
        let byNamespace = Dictionary(uniqueKeysWithValues: Self.zones(desired).map {
            (KernelNames.routerNamespace(host: host, domainID: $0.key), $0.value)
        })
        lock.lock()
        zones = byNamespace
        lock.unlock()
    }

    /// Keeps a listener in each of `namespaces` (the router namespaces the datapath keeps, read after
    /// a reconcile) and stops the others. Taken from the datapath rather than from the reconciled
    /// desired state: a router made by an attach ahead of the watch keeps its resolver as it keeps its port.
    func serve(namespaces: Set<String>) {
        lock.lock()
        let stale = listeners.filter { !namespaces.contains($0.key) }
        for key in stale.keys { listeners[key] = nil }
        let missing = namespaces.filter { listeners[$0] == nil }
        lock.unlock()
        for listener in stale.values { listener.stop() }
        for namespace in missing { ensureListener(namespace: namespace) }
    }

    /// Starts the resolver of a router namespace the datapath has just made (or first found since the
    /// agent started), before any port in it is plugged; a listener left from an earlier namespace of
    /// that name (removed and made again between two reconciles) is replaced, not kept.
    func serveNew(namespace: String) {
        lock.lock()
        let earlier = listeners.removeValue(forKey: namespace)
        lock.unlock()
        earlier?.stop()
        ensureListener(namespace: namespace)
    }

    /// Starts the resolver of a router namespace unless one is running.
    private func ensureListener(namespace: String) {
        lock.lock()
        let running = listeners[namespace] != nil
        lock.unlock()
        guard !running, let listener = try? NamespaceListener(namespace: namespace, open: { try NamespaceListener.udpSocket(port: 53, address: Self.address) },
                                                              serve: { fd, listener in self.serve(fd, namespace: namespace, listener: listener) })
        else { return }
        lock.lock()
        if listeners[namespace] == nil {
            listeners[namespace] = listener
            lock.unlock()
        } else {
            lock.unlock()
            listener.stop()
        }
    }

    /// The addresses of `name` in the namespace's domain, nil when it has none. A query that comes
    /// before the domain's zone waits for it (up to three seconds, within a resolver's usual five) rather than being told that no name exists.
    private func lookup(_ name: String, namespace: String) -> [IPv4Address]? {
        for _ in 0..<600 {
            lock.lock()
            let zone = zones[namespace]
            lock.unlock()
            if let zone { return zone.lookup(name) }
            usleep(5_000)
        }
        return nil
    }

    private func serve(_ fd: Int32, namespace: String, listener: NamespaceListener) {
        var buffer = [UInt8](repeating: 0, count: 1500)
        while listener.running {
            var peer = sockaddr_storage()
            var peerLength = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let count = buffer.withUnsafeMutableBytes { bytes in
                withUnsafeMutablePointer(to: &peer) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(fd, bytes.baseAddress, bytes.count, 0, $0, &peerLength) }
                }
            }
            guard count > 0, let query = DNSQuery(Array(buffer[0..<count])) else { continue }
            let answer = query.answer(addresses: lookup(query.name, namespace: namespace))
            _ = answer.withUnsafeBytes { bytes in
                withUnsafePointer(to: &peer) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(fd, bytes.baseAddress, bytes.count, 0, $0, peerLength) }
                }
            }
        }
    }
}
