import Foundation
import Glibc
import TrellisEtcd

/// A real etcd (Debian's etcd-server) on loopback with its data in a temporary directory, stopped by PID.
public final class RunningEtcd: @unchecked Sendable {
    public let directory: URL
    public private(set) var clientURL: String
    private var arguments: [String] = []
    private var process = Process()

    /// Starts etcd on two free loopback ports; if it exits at once (a port taken between choosing and binding), on two others.
    public init() async throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("trellis-etcd-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        clientURL = ""
        for attempt in 1...3 {
            let (clientPort, peerPort) = (try Self.freePort(), try Self.freePort())
            guard clientPort != peerPort else { continue }
            clientURL = "http://127.0.0.1:\(clientPort)"
            arguments = ["--name", "t", "--data-dir", directory.appendingPathComponent("data").path,
                         "--listen-client-urls", clientURL, "--advertise-client-urls", clientURL,
                         "--listen-peer-urls", "http://127.0.0.1:\(peerPort)",
                         "--initial-advertise-peer-urls", "http://127.0.0.1:\(peerPort)",
                         "--initial-cluster", "t=http://127.0.0.1:\(peerPort)"]
            do {
                try await start()
                return
            } catch RunningEtcdFailure.exited where attempt < 3 {
                try? FileManager.default.removeItem(at: directory.appendingPathComponent("data"))
            } catch {
                stop()
                throw error
            }
        }
        stop()
        throw EtcdError.unreachable(members: [clientURL], reason: "no two free loopback ports for etcd")
    }

    /// Starts etcd on the same ports and data (again, after `kill()`), and waits until it answers; a slow start under load
    /// is waited for up to 60 s, an etcd that exits fails at once with the end of its log.
    public func start() async throws {
        process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/etcd")
        process.arguments = arguments
        let logURL = directory.appendingPathComponent("etcd.log")
        _ = FileManager.default.createFile(atPath: logURL.path, contents: nil)
        let log = try FileHandle(forWritingTo: logURL)
        defer { try? log.close() }
        try log.seekToEnd()
        process.standardOutput = log
        process.standardError = log
        try process.run()
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline {
            let client = try EtcdClient(members: [clientURL], timeout: .seconds(1))
            let answered = (try? await client.range(EtcdRangeRequest(key: EtcdBytes("probe")))) != nil
            try await client.shutdown()
            if answered { return }
            guard process.isRunning else {
                let tail = (try? String(contentsOf: logURL, encoding: .utf8))?.split(separator: "\n").suffix(3).joined(separator: "\n")
                throw RunningEtcdFailure.exited(status: process.terminationStatus, log: tail ?? "")
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw EtcdError.unreachable(members: [clientURL], reason: "etcd did not answer in 60 s")
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


/// Why a test's etcd did not come up.
enum RunningEtcdFailure: Error, CustomStringConvertible {
    case exited(status: Int32, log: String)

    var description: String {
        switch self {
        case .exited(let status, let log): "etcd exited with status \(status) before answering: \(log)"
        }
    }
}

/// Whether Debian's etcd-server is installed (tests that need it are skipped otherwise).
public let etcdInstalled = FileManager.default.fileExists(atPath: "/usr/bin/etcd")

/// The lab agents' datapath this time (TRELLIS_TEST_DATAPATH=bridge runs the lab suites on the bridge path alone;
/// the default, auto, is the eBPF fast path where the kernel runs it).
public let testDatapath = ProcessInfo.processInfo.environment["TRELLIS_TEST_DATAPATH"] ?? "auto"

/// Whether the suites run against etcd this time (TRELLIS_TEST_STORE=etcd) rather than SQLite.
public let testStoreIsEtcd = ProcessInfo.processInfo.environment["TRELLIS_TEST_STORE"] == "etcd"
