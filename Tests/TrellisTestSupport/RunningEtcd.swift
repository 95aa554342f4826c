import Foundation
import Glibc
import TrellisEtcd

/// A real etcd (Debian's etcd-server) on loopback with its data in a temporary directory, stopped by PID.
public final class RunningEtcd: @unchecked Sendable {
    public let directory: URL
    public let clientURL: String
    private let arguments: [String]
    private var process = Process()

    public init() async throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("trellis-etcd-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let (clientPort, peerPort) = (try Self.freePort(), try Self.freePort())
        clientURL = "http://127.0.0.1:\(clientPort)"
        arguments = ["--name", "t", "--data-dir", directory.appendingPathComponent("data").path,
                     "--listen-client-urls", clientURL, "--advertise-client-urls", clientURL,
                     "--listen-peer-urls", "http://127.0.0.1:\(peerPort)",
                     "--initial-advertise-peer-urls", "http://127.0.0.1:\(peerPort)",
                     "--initial-cluster", "t=http://127.0.0.1:\(peerPort)"]
        do {
            try await start()
        } catch {
            stop()
            throw error
        }
    }

    /// Starts etcd on the same ports and data (again, after `kill()`), and waits until it answers.
    public func start() async throws {
        process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/etcd")
        process.arguments = arguments
        let log = FileHandle(forWritingAtPath: "/dev/null")
        process.standardOutput = log
        process.standardError = log
        try process.run()
        for _ in 0..<100 {
            let client = try EtcdClient(members: [clientURL], timeout: .seconds(1))
            let answered = (try? await client.range(EtcdRangeRequest(key: EtcdBytes("probe")))) != nil
            try await client.shutdown()
            if answered { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw EtcdError.unreachable(members: [clientURL], reason: "etcd did not start in 10 s")
    }

    /// Kills etcd with SIGKILL, keeping its data for `start()`.
    public func kill() {
        if process.isRunning { Glibc.kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    /// Kills etcd and removes its data.
    public func stop() {
        kill()
        try? FileManager.default.removeItem(at: directory)
    }

    /// A loopback port nobody listens on now.
    public static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard bound else { throw EtcdError.unreachable(members: [], reason: "no free port: errno \(errno)") }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}


/// Whether Debian's etcd-server is installed (tests that need it are skipped otherwise).
public let etcdInstalled = FileManager.default.fileExists(atPath: "/usr/bin/etcd")

/// Whether the suites run against etcd this time (TRELLIS_TEST_STORE=etcd) rather than SQLite.
public let testStoreIsEtcd = ProcessInfo.processInfo.environment["TRELLIS_TEST_STORE"] == "etcd"
