import CTrellisLinux
import Foundation
import Glibc
import TrellisModel
import TrellisNetlink

/// Sockets opened inside a router namespace and served by a thread of its own: the thread enters
/// the namespace for good, so one agent process serves every domain (DHCP, DNS).
final class NamespaceListener: @unchecked Sendable {
    private let stopped = NSLock()
    private var isStopped = false
    /// A pipe whose read end is readable once `wake()` (or `stop()`) was called: a serving loop that
    /// polls it with its sockets notices new work or a stop at once.
    private let wakeup: (read: Int32, write: Int32)

    /// Opens the sockets with `open` on a new thread inside the namespace, then runs `serve` there
    /// until `stop()`; `serve` polls `wakeupDescriptor` with its sockets, or gives them a receive
    /// timeout, so that a stop is noticed.
    init(namespace: String, open: @escaping @Sendable () throws -> [Int32],
         serve: @escaping @Sendable ([Int32], NamespaceListener) -> Void) throws {
        var ends: [Int32] = [0, 0]
        guard pipe(&ends) == 0 else { throw NetlinkError(code: errno, operation: "pipe") }
        for end in ends { setDescriptorFlags(end) }
        wakeup = (ends[0], ends[1])
        let ready = DispatchSemaphore(value: 0)
        let path = "\(NetworkNamespace.namedDirectory)/\(namespace)"
        let outcome = StartOutcome()
        let thread = Thread { [self] in
            do {
                try NetworkNamespace(path: path).enterOnCallingThread()
                let fds = try open()
                ready.signal()
                defer { fds.forEach { close($0) } }
                serve(fds, self)
            } catch {
                outcome.failure = error
                ready.signal()
            }
        }
        thread.start()
        ready.wait()
        if let failure = outcome.failure {
            close(wakeup.read)
            close(wakeup.write)
            throw failure
        }
    }

    deinit {
        close(wakeup.read)
        close(wakeup.write)
    }

    /// Written by the listener's thread before it signals, read by the starter after waiting.
    private final class StartOutcome: @unchecked Sendable { var failure: (any Error)? }

    func stop() {
        stopped.lock()
        isStopped = true
        stopped.unlock()
        wake()
    }

    /// Makes `wakeupDescriptor` readable, so a serving loop polling it looks at its work again.
    func wake() {
        var byte: UInt8 = 1
        _ = write(wakeup.write, &byte, 1)
    }

    /// Readable after `wake()`; `drainWakeups()` makes it quiet again.
    var wakeupDescriptor: Int32 { wakeup.read }

    func drainWakeups() {
        var bytes = [UInt8](repeating: 0, count: 64)
        while read(wakeup.read, &bytes, bytes.count) > 0 {}
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

/// Makes `fd` non-blocking and closed on exec.
func setDescriptorFlags(_ fd: Int32) {
    _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
    _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
}
