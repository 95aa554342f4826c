import CTrellisLinux
import Foundation
import Glibc
import TrellisModel
import TrellisNetlink
import TrellisNetlinkWire

/// Names across hosts: each domain's router namespace answers DNS for the endpoints of that domain
/// (`NAME`, `NAME.SUBNET`, `NAME.SUBNET.DOMAIN`, and their addresses back as PTR) on a link-local
/// `address`, the same in every domain and on every host, which containers are given as their
/// nameserver, over UDP and TCP. A domain's resolver knows only its own domain, so names of other
/// domains do not resolve.
final class DNSService: @unchecked Sendable {
    /// The resolver's address in every router namespace (as AWS's 169.254.169.253).
    static let address = IPv4Address(0xA9FE_A9FD)

    private let lock = NSLock()
    /// The desired state whose names are served, and the zones built from it so far, by router namespace.
    private var desired: DesiredState?
    private var zones: [String: DNSZone] = [:]
    private var listeners: [String: NamespaceListener] = [:]
    private let host: String

    init(host: String) { self.host = host }

    /// The names of one domain of `desired`: its local endpoints and those of other hosts.
    static func zone(_ domain: DesiredDomain, _ desired: DesiredState) -> DNSZone {
        var zone = DNSZone()
        let subnets = Set(domain.subnets.map(\.path))
        for endpoint in desired.endpoints where endpoint.domain == domain.path {
            zone.add(name: endpoint.dnsName, subnet: endpoint.subnet, domain: domain.path, address: endpoint.ip)
        }
        for remote in desired.remoteEndpoints where subnets.contains(remote.subnet) {
            zone.add(name: remote.dnsName, subnet: remote.subnet, domain: domain.path, address: remote.ip)
        }
        return zone
    }

    /// Takes the names of a new desired state, as soon as it arrives: names do not wait for the
    /// datapath's reconcile, so a container never asks for a peer its host has heard of but not yet
    /// served. Queries held for a zone that had not come are answered now. A zone is built when a query
    /// first needs it, not on every change: most changes (a remote endpoint came) are never asked about.
    func follow(_ desired: DesiredState) {
        lock.lock()
        self.desired = desired
        zones = [:]
        let running = Array(listeners.values)
        lock.unlock()
        running.forEach { $0.wake() }
    }

    func zone(of namespace: String) -> DNSZone? {
        lock.lock()
        defer { lock.unlock() }
        if let zone = zones[namespace] { return zone }
        guard let desired, let domain = desired.domains.first(where: {
            KernelNames.routerNamespace(host: host, domainID: $0.id) == namespace
        }) else { return nil }
        let zone = Self.zone(domain, desired)
        zones[namespace] = zone
        return zone
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
        guard !running, let listener = try? NamespaceListener(
            namespace: namespace,
            open: { [try NamespaceListener.udpSocket(port: 53, address: Self.address), try DNSServer.tcpListener(address: Self.address)] },
            serve: { fds, listener in DNSServer(udp: fds[0], tcp: fds[1], listener: listener) { self.zone(of: namespace) }.run() })
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
}

/// One domain's resolver: a UDP socket and a TCP listener served by one thread that polls them, its
/// TCP connections and its listener's wake-up pipe. It never blocks on one client: a query that
/// comes before the domain's names is held (up to `holdLimit`) while the others are answered, and
/// is answered when the names arrive, or with SERVFAIL.
final class DNSServer {
    /// How long a query waits for its domain's names before SERVFAIL (resolvers wait 5 s for an answer).
    static let holdLimit: Duration = .seconds(3)
    /// A TCP connection with nothing to do is closed after this (RFC 7766 6.2.3 suggests seconds).
    static let idleLimit: Duration = .seconds(10)
    static let maximumConnections = 64
    /// Answers queued for a client that does not read them; past this the connection is closed.
    static let maximumQueuedBytes = 256 * 1024

    private let udp: Int32
    private let tcp: Int32
    private let listener: NamespaceListener
    private let zone: () -> DNSZone?
    private let clock = ContinuousClock()

    private struct Connection {
        var framer = DNSStreamFramer()
        var output: [UInt8] = []
        var lastActive: ContinuousClock.Instant
    }
    private var connections: [Int32: Connection] = [:]
    /// Where every datagram and stream read lands; made once, not per readable event.
    private var buffer = [UInt8](repeating: 0, count: 65535)

    /// Where a held query's answer goes.
    private enum Client {
        case datagram(sockaddr_storage, socklen_t)
        case stream(Int32)
    }
    private var held: [(query: DNSQuery, client: Client, deadline: ContinuousClock.Instant)] = []

    init(udp: Int32, tcp: Int32, listener: NamespaceListener, zone: @escaping () -> DNSZone?) {
        self.udp = udp
        self.tcp = tcp
        self.listener = listener
        self.zone = zone
    }

    /// A non-blocking TCP socket listening on port 53 of `address`.
    static func tcpListener(address: IPv4Address) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw NetlinkError(code: errno, operation: "socket(TCP 53)") }
        setDescriptorFlags(fd)
        var on: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, socklen_t(MemoryLayout<Int32>.size))
        var local = sockaddr_in()
        local.sin_family = sa_family_t(AF_INET)
        local.sin_port = UInt16(53).bigEndian
        local.sin_addr.s_addr = address.value.bigEndian
        let bound = withUnsafePointer(to: &local) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 64) == 0 else {
            let code = errno
            close(fd)
            throw NetlinkError(code: code, operation: "listen on TCP \(address):53")
        }
        return fd
    }

    func run() {
        defer { connections.keys.forEach { close($0) } }
        while listener.running {
            var fds = [pollfd(fd: listener.wakeupDescriptor, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: udp, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: tcp, events: Int16(POLLIN), revents: 0)]
            for (fd, connection) in connections {
                fds.append(pollfd(fd: fd, events: Int16(POLLIN) | (connection.output.isEmpty ? 0 : Int16(POLLOUT)), revents: 0))
            }
            _ = poll(&fds, nfds_t(fds.count), timeoutMilliseconds())
            if fds[0].revents != 0 { listener.drainWakeups() }
            if fds[1].revents & Int16(POLLIN) != 0 { receiveDatagrams() }
            if fds[2].revents & Int16(POLLIN) != 0 { accept() }
            for entry in fds.dropFirst(3) where entry.revents != 0 {
                if entry.revents & Int16(POLLOUT) != 0 { flush(entry.fd) }
                if entry.revents & (Int16(POLLIN) | Int16(POLLHUP) | Int16(POLLERR)) != 0 { receive(on: entry.fd) }
            }
            answerHeld()
            closeIdle()
        }
    }

    /// Until the next held query's deadline or idle connection's limit, at most one second.
    private func timeoutMilliseconds() -> Int32 {
        let now = clock.now
        let deadlines = held.map(\.deadline) + connections.values.map { $0.lastActive.advanced(by: Self.idleLimit) }
        guard let next = deadlines.min() else { return 1000 }
        let wait = now.duration(to: next)
        let milliseconds = wait.components.seconds * 1000 + wait.components.attoseconds / 1_000_000_000_000_000 + 1
        return wait <= .zero ? 0 : Int32(min(1000, milliseconds))
    }

    /// Answers `query` now if the domain's names are there, else holds it.
    private func handle(_ query: DNSQuery, from client: Client) {
        if let zone = zone() {
            send(query.answer(from: zone, limit: limit(query, client)), to: client)
        } else {
            held.append((query, client, clock.now.advanced(by: Self.holdLimit)))
        }
    }

    private func limit(_ query: DNSQuery, _ client: Client) -> Int {
        if case .datagram = client { return query.udpLimit() }
        return 65535
    }

    private func answerHeld() {
        guard !held.isEmpty else { return }
        let zone = zone(), now = clock.now
        let waiting = held
        held = []
        for entry in waiting {
            if let zone {
                send(entry.query.answer(from: zone, limit: limit(entry.query, entry.client)), to: entry.client)
            } else if entry.deadline <= now {
                send(entry.query.serverFailureAnswer(), to: entry.client)
            } else {
                held.append(entry)
            }
        }
    }

    private func receiveDatagrams() {
        while true {
            var peer = sockaddr_storage()
            var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let count = buffer.withUnsafeMutableBytes { bytes in
                withUnsafeMutablePointer(to: &peer) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        recvfrom(udp, bytes.baseAddress, bytes.count, Int32(MSG_DONTWAIT), $0, &length)
                    }
                }
            }
            guard count >= 0 else { return }
            if let query = DNSQuery(Array(buffer[0..<count])) { handle(query, from: .datagram(peer, length)) }
        }
    }

    private func accept() {
        while true {
            let fd = Glibc.accept(tcp, nil, nil)
            guard fd >= 0 else { return }
            setDescriptorFlags(fd)
            // Past the limit the connection heard from least recently makes room: idle clients cannot lock others out.
            if connections.count >= Self.maximumConnections,
               let oldest = connections.min(by: { $0.value.lastActive < $1.value.lastActive })?.key {
                drop(oldest)
            }
            connections[fd] = Connection(lastActive: clock.now)
        }
    }

    private func receive(on fd: Int32) {
        let count = read(fd, &buffer, 4096)
        if count < 0 && (errno == EAGAIN || errno == EINTR) { return }
        guard count > 0, var connection = connections[fd] else { return drop(fd) }
        connection.lastActive = clock.now
        let messages = connection.framer.feed(buffer[0..<count])
        connections[fd] = connection
        for message in messages {
            // A message that is no query cannot be answered, and the stream has lost its way: close it.
            guard let query = DNSQuery(message) else { return drop(fd) }
            handle(query, from: .stream(fd))
        }
    }

    private func send(_ answer: [UInt8], to client: Client) {
        switch client {
        case .datagram(var peer, let length):
            _ = answer.withUnsafeBytes { bytes in
                withUnsafePointer(to: &peer) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        sendto(udp, bytes.baseAddress, bytes.count, Int32(MSG_DONTWAIT), $0, length)
                    }
                }
            }
        case .stream(let fd):
            guard connections[fd] != nil else { return }
            connections[fd]!.output += DNSStreamFramer.frame(answer)
            flush(fd)
        }
    }

    private func flush(_ fd: Int32) {
        guard var connection = connections[fd], !connection.output.isEmpty else { return }
        let written = connection.output.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        if written < 0 && errno != EAGAIN && errno != EINTR { return drop(fd) }
        if written > 0 {
            connection.output.removeFirst(written)
            connection.lastActive = clock.now
        }
        guard connection.output.count <= Self.maximumQueuedBytes else { return drop(fd) }
        connections[fd] = connection
    }

    private func closeIdle() {
        let now = clock.now
        for (fd, connection) in connections where connection.lastActive.advanced(by: Self.idleLimit) <= now { drop(fd) }
    }

    private func drop(_ fd: Int32) {
        guard connections.removeValue(forKey: fd) != nil else { return }
        close(fd)
        held.removeAll { if case .stream(let held) = $0.client { return held == fd } else { return false } }
    }
}
