import Foundation
import Logging
import ServiceLifecycleTestKit
import TrellisClient
import TrellisController
import TrellisStore
import TrellisModel

/// A real controller for a test: HTTPS on a free loopback port (its own CA in `tls/`), a unix socket,
/// and a SQLite file in its own directory (or a store on its own etcd, with TRELLIS_TEST_STORE=etcd).
public struct RunningController: Sendable {
    public let url: String
    public let adminToken: String
    public let directory: URL
    /// What clients trust: the controller's CA (nil when it serves plain HTTP).
    public let trust: ControllerTrust?
    /// The controller's CA certificate file and its fingerprint.
    public var caFile: String { directory.appendingPathComponent("tls/ca.pem").path }
    public let caFingerprint: String?
    /// The controller's unix socket (its clients are not rate-limited by address).
    public var socket: String { directory.appendingPathComponent("controller.sock").path }
    /// The etcd the controller's store is on, when TRELLIS_TEST_STORE=etcd.
    public let etcd: RunningEtcd?

    /// Everything the store has written to disk: the SQLite file and its log, or etcd's data directory.
    public func storeBytes() throws -> String {
        let files: [URL]
        if let etcd {
            let data = etcd.directory.appendingPathComponent("data")
            files = (FileManager.default.enumerator(at: data, includingPropertiesForKeys: nil)?.allObjects as? [URL] ?? [])
                .filter { !$0.hasDirectoryPath }
        } else {
            files = [directory.appendingPathComponent("trellis.db-wal"), directory.appendingPathComponent("trellis.db")]
        }
        return try files.map { try String(contentsOf: $0, encoding: .isoLatin1) }.joined()
    }

    /// A client with the admin token, or with `token`.
    public func client(token: String? = nil) -> ControllerClient {
        ControllerClient(baseURL: url, token: token ?? adminToken, trust: trust)
    }

    /// A client without a token.
    public func anonymousClient() -> ControllerClient { ControllerClient(baseURL: url, token: nil, trust: trust) }
}

/// A new empty directory under the system's temporary directory.
public func makeTemporaryDirectory() throws -> URL {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("trellis-test-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    return directory
}

/// Runs `body` against a controller whose store lives in `directory` (a new one by default), then
/// stops the controller; the directory is removed afterwards unless the caller gave it.
public func withController<T: Sendable>(directory: URL? = nil, underlayReserved: [String] = [], tls: Bool = true, store: String? = nil,
                                        opened: (any Store)? = nil,
                                        _ body: (RunningController) async throws -> T) async throws -> T {
    let ownsDirectory = directory == nil
    let directory = try directory ?? makeTemporaryDirectory()
    // TRELLIS_TEST_STORE=etcd runs the same suites against a store on a real etcd of their own.
    let etcd = testStoreIsEtcd && ownsDirectory && store == nil ? try await RunningEtcd() : nil
    defer { etcd?.stop() }
    let storeSetting = store ?? etcd.map { "etcd:\($0.clientURL)" } ?? "sqlite:\(directory.path)/trellis.db"
    var configuration = try ControllerConfiguration(listen: ["127.0.0.1:0", "unix:\(directory.path)/controller.sock"],
                                                    store: storeSetting,
                                                    adminTokenFile: "\(directory.path)/admin.token", underlayReserved: underlayReserved)
    configuration.insecureHTTP = !tls
    let controller = if let opened { try Controller(configuration: configuration, store: opened) }
                     else { try await Controller(configuration: configuration) }
    var logger = Logger(label: "trellis.test")
    logger.logLevel = .critical
    let (ports, continuation) = AsyncStream.makeStream(of: Int.self)
    defer { if ownsDirectory { try? FileManager.default.removeItem(at: directory) } }
    // The controller is stopped by a graceful shutdown, as SIGTERM stops it: cancelling its task instead can
    // drop a connection the server accepted but had not begun to serve, and NIO traps on that connection's writer.
    return try await testGracefulShutdown { shutdown in
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { [logger] in
                defer { continuation.finish() }
                try await controller.run(logger: logger) { port in continuation.yield(port) }
            }
            var iterator = ports.makeAsyncIterator()
            guard let port = await iterator.next() else {
                try await group.next()
                throw TrellisError(.unavailable, "the controller stopped before it listened")
            }
            let outcome: Result<T, any Error>
            do {
                let token = try String(contentsOfFile: configuration.adminTokenFile, encoding: .utf8)
                    .trimmingCharacters(in: .whitespacesAndNewlines)
                let trust = try controller.tls.map { try ControllerTrust(caPEM: $0.caPEM) }
                let running = RunningController(url: "\(tls ? "https" : "http")://127.0.0.1:\(port)", adminToken: token,
                                                directory: directory, trust: trust, caFingerprint: controller.tls?.caFingerprint,
                                                etcd: etcd)
                outcome = .success(try await body(running))
            } catch {
                outcome = .failure(error)
            }
            shutdown.triggerGracefulShutdown()
            // A connection a test left open could hold the shutdown; after a while the controller is cancelled.
            group.addTask { try? await Task.sleep(for: .seconds(20)) }
            _ = try? await group.next()
            group.cancelAll()
            return try outcome.get()
        }
    }
}

/// Makes `acme/app1/web/red` (and its parents) with `cidr`, returning the subnet path.
@discardableResult
public func makeSubnet(_ client: ControllerClient, enterprise: String = "acme", domain: String = "app1", zone: String = "web",
                       subnet: String = "red", cidr: String = "192.168.10.0/24", reserved: [String]? = nil) async throws -> String {
    if (try? await client.get("/api/v1/enterprises/\(enterprise)", as: Enterprise.self)) == nil {
        let _: Enterprise = try await client.post("/api/v1/enterprises", EnterpriseCreate(name: enterprise))
    }
    if (try? await client.get("/api/v1/domains/\(enterprise)/\(domain)", as: Domain.self)) == nil {
        let _: Domain = try await client.post("/api/v1/domains", DomainCreate(enterprise: enterprise, name: domain))
    }
    if (try? await client.get("/api/v1/zones/\(enterprise)/\(domain)/\(zone)", as: Zone.self)) == nil {
        let _: Zone = try await client.post("/api/v1/zones", ZoneCreate(domain: "\(enterprise)/\(domain)", name: zone))
    }
    let _: Subnet = try await client.post("/api/v1/subnets", SubnetCreate(zone: "\(enterprise)/\(domain)/\(zone)", name: subnet,
                                                                           cidr: cidr, reserved: reserved))
    return "\(enterprise)/\(domain)/\(zone)/\(subnet)"
}

/// Sends a raw request (any method, any body, any token) and returns the status and the error body.
public func rawRequest(_ client: ControllerClient, _ method: String, _ path: String, body: String?,
                       token: String? = nil) async throws -> (status: Int, error: ErrorBody?) {
    let answer = try await client.exchange(method, path, body: body.map { Data($0.utf8) }, token: token)
    return (answer.status, try? JSONCoding.decoder().decode(ErrorBody.self, from: answer.body))
}

/// What a run of the `trellis` binary printed and how it exited.
public struct CommandResult: Sendable {
    public var status: Int32
    public var stdout: String
    public var stderr: String
}

/// The `trellis` executable built beside the test bundle.
public func trellisExecutable() -> String {
    let here = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    return here.appendingPathComponent("trellis").path
}

/// Runs the real `trellis` binary with `arguments` and `environment` added to a clean one.
public func runTrellis(_ arguments: [String], environment: [String: String]) async throws -> CommandResult {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: trellisExecutable())
    process.arguments = arguments
    process.environment = ["PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"].merging(environment) { $1 }
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    process.standardInput = FileHandle.nullDevice
    try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
        process.terminationHandler = { _ in continuation.resume() }
        do { try process.run() } catch { continuation.resume(throwing: error) }
    }
    let stdout = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    return CommandResult(status: process.terminationStatus, stdout: stdout, stderr: stderr)
}

/// Runs a program (iproute2, ping, nc, …) and returns its exit status and its output, stdout and stderr together.
@discardableResult
public func runProgram(_ arguments: [String]) throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: arguments[0])
    process.arguments = Array(arguments.dropFirst())
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}

/// The bytes and packets `link` in the named network namespace has sent, as iproute2 counts them (`ip -s -o link`);
/// nil when iproute2 shows no such counters.
public func sentCounters(namespace: String, link: String) throws -> (bytes: Int, packets: Int)? {
    let shown = try runProgram(["/usr/sbin/ip", "-n", namespace, "-s", "-o", "link", "show", link]).output
    // One line: … RX: bytes packets … \    TX: bytes packets …
    let fields = shown.components(separatedBy: "TX:").last?.split(separator: "\\").dropFirst().first?
        .split(separator: " ").compactMap { Int($0) } ?? []
    return fields.count >= 2 ? (fields[0], fields[1]) : nil
}

/// The ids of the BPF programs that the link's ingress filters run, as iproute2's `tc filter show` lists them.
public func ingressProgramIDs(namespacePath: String, link: String) throws -> [UInt32] {
    let command = ["/usr/bin/nsenter", "--net=\(namespacePath)", "/usr/sbin/tc", "filter", "show", "dev", link, "ingress"]
    let shown = try runProgram(command).output
    // "filter protocol all pref 1 bpf chain 0 handle 0x1 trellis-fastpath direct-action not_in_hw id 42 name … tag … jited"
    return shown.split(separator: "\n").compactMap { line in
        let words = line.split(separator: " ")
        guard let at = words.firstIndex(of: "id"), at + 1 < words.count else { return nil }
        return UInt32(words[at + 1])
    }
}
