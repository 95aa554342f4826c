import CTrellisLinux
import Foundation
import Glibc
import TrellisNetlinkWire

/// A network namespace held open by a file descriptor.
///
/// `setns` changes only the calling thread, so work inside a namespace runs on a fresh thread that
/// enters it and then exits; sockets opened there stay in that namespace for good.
public final class NetworkNamespace: @unchecked Sendable {
    public let fd: Int32
    public let path: String

    /// Where named namespaces live, as `ip netns` keeps them.
    public static let namedDirectory = "/run/netns"

    public init(path: String) throws {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw NetlinkError(code: errno, operation: "open network namespace \(path)") }
        self.fd = fd
        self.path = path
    }

    deinit { close(fd) }

    public convenience init(pid: Int32) throws { try self.init(path: "/proc/\(pid)/ns/net") }
    public convenience init(named name: String) throws { try self.init(path: "\(Self.namedDirectory)/\(name)") }

    /// The namespace of this process.
    public static func current() throws -> NetworkNamespace { try NetworkNamespace(path: "/proc/self/ns/net") }

    /// Runs `body` on a new thread that has entered this namespace.
    public func run<T>(_ body: @escaping () throws -> T) throws -> T {
        try onFreshThread {
            try self.enterOnCallingThread()
            return try body()
        }
    }

    /// Moves the calling thread into this namespace for the rest of its life: only for threads made
    /// for it (`run`, or a listener's own thread), never a pooled one.
    public func enterOnCallingThread() throws {
        guard trellis_setns_net(fd) == 0 else { throw NetlinkError(code: errno, operation: "setns(\(path))") }
    }

    /// A rtnetlink socket that lives in this namespace.
    public func routeSocket() throws -> NetlinkSocket { try run { try NetlinkSocket() } }

    /// Runs `body` with the calling thread inside this namespace, then brings the thread back where it was:
    /// no thread is made (a fresh one costs about a millisecond on an attach's path). Only for threads
    /// Trellis owns (the datapath's), never a pooled one, which another task could resume on meanwhile.
    public func visitOnCallingThread<T>(_ body: () throws -> T) throws -> T {
        let home = try NetworkNamespace(path: "/proc/thread-self/ns/net")
        try enterOnCallingThread()
        defer {
            // A thread left in a container's namespace would make every later change in the wrong place.
            guard trellis_setns_net(home.fd) == 0 else { fatalError("cannot bring the thread back from \(path): errno \(errno)") }
        }
        return try body()
    }

    /// The conntrack entries of this namespace (IPv4), over ctnetlink. The namespace's count is asked
    /// first, and a namespace without entries is not dumped: a dump walks the whole host's table.
    public func conntrackEntries() throws -> [ConntrackEntry] {
        let socket = try run { try NetlinkSocket(family: Conntrack.NETLINK_NETFILTER) }
        let counted = try socket.execute(Conntrack.countRequest(), describing: "conntrack count").first.flatMap { try Conntrack.count($0) }
        if counted == 0 { return [] }
        return try socket.dump(Conntrack.dumpIPv4(), describing: "conntrack").compactMap { try? ConntrackEntry($0) }
    }

    /// Writes a sysctl as seen from this namespace (`net.*` keys are per namespace); a key the kernel
    /// lacks (a module not loaded) is skipped when `optional`.
    public func setSysctl(_ key: String, _ value: String, optional: Bool = false) throws {
        let path = "/proc/sys/" + key.replacingOccurrences(of: ".", with: "/")
        try run {
            let fd = open(path, O_WRONLY | O_CLOEXEC)
            if fd < 0 {
                if optional && errno == ENOENT { return }
                throw NetlinkError(code: errno, operation: "open \(path)")
            }
            defer { close(fd) }
            let bytes = Array(value.utf8)
            guard write(fd, bytes, bytes.count) == bytes.count else { throw NetlinkError(code: errno, operation: "write \(path)") }
        }
    }

    /// Makes a new named namespace (`ip netns add NAME`), or opens it if it exists.
    public static func create(named name: String) throws -> NetworkNamespace {
        let path = "\(namedDirectory)/\(name)"
        if FileManager.default.fileExists(atPath: path), let existing = try? NetworkNamespace(path: path) { return existing }
        try prepareNamedDirectory()
        let created = open(path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o444)
        guard created >= 0 else { throw NetlinkError(code: errno, operation: "create \(path)") }
        close(created)
        do {
            try onFreshThread {
                guard trellis_unshare_net() == 0 else { throw NetlinkError(code: errno, operation: "unshare(CLONE_NEWNET)") }
                guard trellis_bind_mount("/proc/thread-self/ns/net", path) == 0 else {
                    throw NetlinkError(code: errno, operation: "bind-mount the namespace on \(path)")
                }
            }
        } catch {
            unlink(path)
            throw error
        }
        return try NetworkNamespace(path: path)
    }

    /// Makes `/run/netns` a shared mount of itself before any namespace is mounted in it, exactly as
    /// `ip netns add` does: the directory is made, made shared, and where it is no mount point yet (a
    /// fresh machine) bind-mounted on itself first. Namespaces mounted in the bare directory would be
    /// hidden under the mount that the next `ip netns add` puts there, and could never be removed.
    static func prepareNamedDirectory() throws {
        if mkdir(namedDirectory, 0o755) != 0 && errno != EEXIST { throw NetlinkError(code: errno, operation: "create \(namedDirectory)") }
        var madeMountPoint = false
        while trellis_make_shared_mount(namedDirectory) != 0 {
            guard errno == EINVAL, !madeMountPoint else {
                throw NetlinkError(code: errno, operation: "mount --make-shared \(namedDirectory)")
            }
            guard trellis_rbind_mount_on_itself(namedDirectory) == 0 else {
                throw NetlinkError(code: errno, operation: "mount --rbind \(namedDirectory) \(namedDirectory)")
            }
            madeMountPoint = true
        }
    }

    /// Removes a named namespace (`ip netns delete NAME`); its links go with it. Absent is not an error.
    public static func delete(named name: String) throws {
        let path = "\(namedDirectory)/\(name)"
        guard FileManager.default.fileExists(atPath: path) else { return }
        if trellis_detach_mount(path) != 0 && errno != EINVAL {
            throw NetlinkError(code: errno, operation: "unmount \(path)")
        }
        guard unlink(path) == 0 || errno == ENOENT else { throw NetlinkError(code: errno, operation: "remove \(path)") }
    }

    /// Names of the namespaces in /run/netns.
    public static func names() -> [String] {
        (try? FileManager.default.contentsOfDirectory(atPath: namedDirectory))?.sorted() ?? []
    }
}

/// Runs `body` on a new OS thread and waits for it; the thread, with whatever namespace it entered, ends after.
func onFreshThread<T>(_ body: @escaping () throws -> T) throws -> T {
    // The caller waits for the thread, so handing it `body` is safe although the closure is not Sendable.
    let box = ResultBox(work: body)
    let done = DispatchSemaphore(value: 0)
    let thread = Thread {
        box.result = Result { try box.work() }
        done.signal()
    }
    thread.start()
    done.wait()
    return try box.result!.get()
}

/// Carries a result from the thread that made it to the one waiting for it.
private final class ResultBox<T>: @unchecked Sendable {
    let work: () throws -> T
    var result: Result<T, any Error>?
    init(work: @escaping () throws -> T) { self.work = work }
}

extension NetworkNamespace {
    /// Creates a persistent tap device in this namespace (for `qemu -netdev tap,ifname=NAME,script=no`).
    public func createTap(named name: String) throws {
        try run {
            let fd = trellis_open_tap(name, 1)
            guard fd >= 0 else { throw NetlinkError(code: errno, operation: "create tap \(name)") }
            close(fd)
        }
    }

    /// Opens an existing tap device of this namespace, as a VM monitor would; the caller closes the fd.
    public func openTap(named name: String) throws -> Int32 {
        try run {
            let fd = trellis_open_tap(name, 0)
            guard fd >= 0 else { throw NetlinkError(code: errno, operation: "open tap \(name)") }
            return fd
        }
    }
}
