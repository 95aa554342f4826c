import CTrellisLinux
import Foundation
import Glibc
import TrellisModel
import TrellisNetlink

/// A UDP socket opened inside a router namespace and served by a thread of its own: the thread
/// enters the namespace for good, so one agent process serves every domain (DHCP, DNS).
final class NamespaceListener: @unchecked Sendable {
    private let stopped = NSLock()
    private var isStopped = false

    /// Opens the socket with `open` on a new thread inside the namespace, then runs `serve` there until
    /// `stop()`. `open` must give the socket a receive timeout so that a stop is noticed.
    init(namespace: String, open: @escaping @Sendable () throws -> Int32, serve: @escaping @Sendable (Int32, NamespaceListener) -> Void) throws {
        let ready = DispatchSemaphore(value: 0)
        let path = "\(NetworkNamespace.namedDirectory)/\(namespace)"
        let outcome = StartOutcome()
        let thread = Thread { [self] in
            do {
                let namespace = try NetworkNamespace(path: path)
                guard trellis_setns_net(namespace.fd) == 0 else { throw NetlinkError(code: errno, operation: "setns(\(path))") }
                let fd = try open()
                ready.signal()
                defer { close(fd) }
                serve(fd, self)
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

    var running: Bool {
        stopped.lock()
        defer { stopped.unlock() }
        return !isStopped
    }

    /// A UDP socket bound to `port` (on `address` and `device` when given) with a 0.5 s receive timeout.
    static func udpSocket(port: UInt16, address local: IPv4Address? = nil, device: String? = nil, broadcast: Bool = false) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw NetlinkError(code: errno, operation: "socket(UDP \(port))") }
        var on: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, socklen_t(MemoryLayout<Int32>.size))
        if broadcast { setsockopt(fd, SOL_SOCKET, SO_BROADCAST, &on, socklen_t(MemoryLayout<Int32>.size)) }
        if let device {
            let name = Array(device.utf8) + [0]
            guard setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, name, socklen_t(name.count)) == 0 else {
                close(fd)
                throw NetlinkError(code: errno, operation: "bind UDP \(port) to \(device)")
            }
        }
        var timeout = timeval(tv_sec: 0, tv_usec: 500_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = (local?.value ?? 0).bigEndian
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0 else {
            close(fd)
            throw NetlinkError(code: errno, operation: "bind UDP port \(port)\(device.map { " on \($0)" } ?? "")")
        }
        return fd
    }
}
