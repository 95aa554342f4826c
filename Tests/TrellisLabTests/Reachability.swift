import Foundation
import Glibc
import TrellisModel
import TrellisNetlink
import TrellisTestSupport

/// A container namespace of a lab test with the endpoint it was attached as.
struct Member: Sendable {
    let name: String
    let namespace: NetworkNamespace
    let ip: String
    let subnet: String
    var domain: String { subnet.split(separator: "/").prefix(2).joined(separator: "/") }
    var zone: String { subnet.split(separator: "/").prefix(3).joined(separator: "/") }
}

/// One kind of traffic a reachability matrix tries.
enum Probe: Hashable, Sendable, CustomStringConvertible {
    case icmp, tcp(UInt16), udp(UInt16)

    var description: String {
        switch self {
        case .icmp: "icmp"
        case .tcp(let port): "tcp/\(port)"
        case .udp(let port): "udp/\(port)"
        }
    }
}

/// A pair of members and a probe, written `red1 → blue2 tcp/5432`.
struct Path: Hashable, Sendable, CustomStringConvertible, Comparable {
    let from: String
    let to: String
    let probe: Probe
    var description: String { "\(from) → \(to) \(probe)" }
    static func < (a: Path, b: Path) -> Bool { a.description < b.description }
}

private func socketAddress(_ address: String, _ port: UInt16) -> sockaddr_in {
    var socketAddress = sockaddr_in()
    socketAddress.sin_family = sa_family_t(AF_INET)
    socketAddress.sin_port = port.bigEndian
    socketAddress.sin_addr.s_addr = (IPv4Address(address)?.value ?? 0).bigEndian
    return socketAddress
}

private func withSocketAddress<T>(_ address: String, _ port: UInt16, _ body: (UnsafePointer<sockaddr>, socklen_t) -> T) -> T {
    var target = socketAddress(address, port)
    return withUnsafePointer(to: &target) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0,
        socklen_t(MemoryLayout<sockaddr_in>.size)) } }
}

/// Tries every probe between every ordered pair of members at once — TCP connects (which need the
/// replies to pass too), UDP datagrams and pings — and returns the paths that worked.
func reachable(_ members: [Member], probes: [Probe]) throws -> Set<Path> {
    var passed: Set<Path> = []
    var descriptors: [Int32] = []
    defer { descriptors.forEach { close($0) } }
    let pairs = members.flatMap { a in members.filter { $0.name != a.name }.map { (a, $0) } }

    // Listeners and receivers in every member.
    var receivers: [(Member, Probe, Int32)] = []
    for member in members {
        for probe in probes {
            let (kind, port): (Int32, UInt16)
            switch probe {
            case .icmp: continue
            case .tcp(let value): (kind, port) = (Int32(SOCK_STREAM.rawValue), value)
            case .udp(let value): (kind, port) = (Int32(SOCK_DGRAM.rawValue), value)
            }
            let fd = try member.namespace.run { socket(AF_INET, kind | Int32(SOCK_NONBLOCK.rawValue), 0) }
            descriptors.append(fd)
            var one: Int32 = 1
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
            guard withSocketAddress(member.ip, port, { bind(fd, $0, $1) }) == 0 else {
                throw TrellisError(.unavailable, "bind \(member.ip):\(port) in \(member.name): errno \(errno)")
            }
            if case .tcp = probe { listen(fd, 64) }
            receivers.append((member, probe, fd))
        }
    }

    // Pings run as processes, all at once.
    var pings: [(Path, Process)] = []
    if probes.contains(.icmp) {
        for (a, b) in pairs {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/nsenter")
            process.arguments = ["--net=\(a.namespace.path)", "/usr/bin/ping", "-c", "2", "-i", "0.3", "-W", "1", "-q", b.ip]
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            pings.append((Path(from: a.name, to: b.name, probe: .icmp), process))
        }
    }

    // TCP connects, non-blocking, all at once.
    var connecting: [(Path, Int32)] = []
    for (a, b) in pairs {
        for case .tcp(let port) in probes {
            let fd = try a.namespace.run { socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0) }
            descriptors.append(fd)
            _ = withSocketAddress(b.ip, port) { connect(fd, $0, $1) }
            connecting.append((Path(from: a.name, to: b.name, probe: .tcp(port)), fd))
        }
    }

    // UDP datagrams naming their sender, three times over a second.
    var senders: [(Member, Member, UInt16, Int32)] = []
    for (a, b) in pairs {
        for case .udp(let port) in probes {
            let fd = try a.namespace.run { socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0) }
            descriptors.append(fd)
            senders.append((a, b, port, fd))
        }
    }
    for round in 0..<3 {
        if round > 0 { usleep(400_000) }
        for (a, b, port, fd) in senders {
            let text = Array("\(a.name)".utf8)
            _ = text.withUnsafeBytes { bytes in withSocketAddress(b.ip, port) { sendto(fd, bytes.baseAddress, bytes.count, 0, $0, $1) } }
        }
    }

    // TCP results: connected within 2.5 s (a lost SYN is retried after 1 s).
    let deadline = Date().addingTimeInterval(2.5)
    var pending = connecting
    while !pending.isEmpty, Date() < deadline {
        var polled = pending.map { pollfd(fd: $0.1, events: Int16(POLLOUT), revents: 0) }
        _ = poll(&polled, nfds_t(polled.count), 100)
        var still: [(Path, Int32)] = []
        for (index, entry) in pending.enumerated() {
            guard polled[index].revents != 0 else { still.append(entry); continue }
            var error: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(entry.1, SOL_SOCKET, SO_ERROR, &error, &length)
            if error == 0 { passed.insert(entry.0) }
        }
        pending = still
    }

    // UDP results: what each receiver got, by sender name.
    for (member, probe, fd) in receivers {
        guard case .udp = probe else { continue }
        var buffer = [UInt8](repeating: 0, count: 256)
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard count > 0 else { break }
            passed.insert(Path(from: String(decoding: buffer[0..<count], as: UTF8.self), to: member.name, probe: probe))
        }
    }

    for (path, process) in pings {
        process.waitUntilExit()
        if process.terminationStatus == 0 { passed.insert(path) }
    }
    return passed
}

/// Every path of the matrix, for comparing with what passed.
func allPaths(_ members: [Member], probes: [Probe]) -> [Path] {
    members.flatMap { a in members.filter { $0.name != a.name }.flatMap { b in probes.map { Path(from: a.name, to: b.name, probe: $0) } } }
}

/// One TCP connection between two members, kept open to see whether it survives changes.
final class TCPFlow {
    private let client: Int32
    private let server: Int32

    init(from a: Member, to b: Member, port: UInt16) throws {
        let listener = try b.namespace.run { socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0) }
        defer { close(listener) }
        var one: Int32 = 1
        setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        guard withSocketAddress(b.ip, port, { bind(listener, $0, $1) }) == 0, listen(listener, 1) == 0 else {
            throw TrellisError(.unavailable, "listen on \(b.ip):\(port): errno \(errno)")
        }
        let client = try a.namespace.run { socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0) }
        // A path that stays broken fails the connect in 10 s (errno EINPROGRESS), not after 127 s of SYN retries.
        var connectTimeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(client, SOL_SOCKET, SO_SNDTIMEO, &connectTimeout, socklen_t(MemoryLayout<timeval>.size))
        guard withSocketAddress(b.ip, port, { connect(client, $0, $1) }) == 0 else {
            let error = errno
            close(client)
            throw TrellisError(.unavailable, "connect from \(a.name) to \(b.name) at \(b.ip):\(port): errno \(error)")
        }
        self.client = client
        server = accept(listener, nil, nil)
        var timeout = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(server, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(client); close(server) }

    /// Sends `text` from the client; whether the server receives it within 2 s (TCP retransmits meanwhile).
    func carries(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        guard bytes.withUnsafeBytes({ send(client, $0.baseAddress, $0.count, 0) }) == bytes.count else { return false }
        var buffer = [UInt8](repeating: 0, count: 256)
        let count = buffer.withUnsafeMutableBytes { recv(server, $0.baseAddress, $0.count, 0) }
        return count > 0 && String(decoding: buffer[0..<count], as: UTF8.self) == text
    }
}
