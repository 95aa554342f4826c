import ArgumentParser
import AsyncHTTPClient
import Foundation
import Logging
import TrellisClient
import TrellisController
import TrellisModel

/// Benchmarks that print numbers with a baseline measured in the same run; never a pass/fail test.
@main
struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "trellis-bench",
        subcommands: [ControllerBench.self, ClusterBench.self, DatapathBench.self, PolicyBench.self, DockerBench.self, CNIBench.self,
                      EtcdTxnBench.self, RestartBench.self, FastPathBench.self])
}

/// Latency samples and their percentiles.
struct Samples {
    var values: [Double] = []
    mutating func add(_ value: Double) { values.append(value) }
    func percentile(_ p: Double) -> Double {
        let sorted = values.sorted()
        guard !sorted.isEmpty else { return .nan }
        return sorted[min(sorted.count - 1, Int((Double(sorted.count) * p / 100).rounded(.up)) - 1)]
    }
    var summary: String { String(format: "p50 %.2f ms, p99 %.2f ms (n=%d)", percentile(50), percentile(99), values.count) }
}

func milliseconds(since start: ContinuousClock.Instant) -> Double {
    let elapsed = ContinuousClock.now - start
    return Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15
}

struct ControllerBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "controller",
                                                    abstract: "Endpoint creates/s with IPAM, and change delivery to watchers of /desired.")
    @Option(help: "Sequential creates.") var sequential = 2000
    @Option(help: "Concurrent creates.") var concurrent = 8000
    @Option(help: "Concurrent clients.") var clients = 64
    @Option(help: "Watchers of /desired.") var watchers = 100
    @Option(help: "Changes delivered to the watchers.") var changes = 50
    @Option(help: "The store: a new SQLite file by default, or etcd:URL,… (use an etcd nothing else uses).") var store: String?

    func run() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("trellis-bench-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        var configuration = try ControllerConfiguration(listen: "127.0.0.1:0", store: store ?? "sqlite:\(directory.path)/trellis.db",
                                                        adminTokenFile: "\(directory.path)/admin.token")
        // The cost of the API itself: the baseline request below crosses the same plain-HTTP transport.
        configuration.insecureHTTP = true
        let controller = try await Controller(configuration: configuration)
        var logger = Logger(label: "bench")
        logger.logLevel = .critical
        let (ports, continuation) = AsyncStream.makeStream(of: Int.self)
        var httpConfiguration = HTTPClient.Configuration()
        httpConfiguration.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = watchers + clients + 16
        let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: httpConfiguration)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { [logger] in try await controller.run(logger: logger) { continuation.yield($0) } }
            var iterator = ports.makeAsyncIterator()
            let port = await iterator.next()!
            let token = try String(contentsOfFile: configuration.adminTokenFile, encoding: .utf8)
                .trimmingCharacters(in: .whitespacesAndNewlines)
            let client = ControllerClient(baseURL: "http://127.0.0.1:\(port)", token: token, http: http)
            try await measure(client)
            group.cancelAll()
        }
        try await http.shutdown()
    }

    func makeSubnet(_ client: ControllerClient, _ name: String, cidr: String) async throws -> String {
        let _: Subnet = try await client.post("/api/v1/subnets", SubnetCreate(zone: "bench/d/z", name: name, cidr: cidr))
        return "bench/d/z/\(name)"
    }

    func measure(_ client: ControllerClient) async throws {
        let _: Enterprise = try await client.post("/api/v1/enterprises", EnterpriseCreate(name: "bench"))
        let _: Domain = try await client.post("/api/v1/domains", DomainCreate(enterprise: "bench", name: "d"))
        let _: Zone = try await client.post("/api/v1/zones", ZoneCreate(domain: "bench/d", name: "z"))

        // Baseline: the cheapest authenticated request, a GET that reads one row.
        var baseline = Samples()
        let baselineStart = ContinuousClock.now
        for _ in 0..<sequential {
            let start = ContinuousClock.now
            let _: Enterprise = try await client.get("/api/v1/enterprises/bench")
            baseline.add(milliseconds(since: start))
        }
        let baselineRate = Double(sequential) / (milliseconds(since: baselineStart) / 1000)

        let first = try await makeSubnet(client, "seq", cidr: "10.1.0.0/16")
        var latency = Samples()
        let sequentialStart = ContinuousClock.now
        for index in 0..<sequential {
            let start = ContinuousClock.now
            let _: Endpoint = try await client.post("/api/v1/endpoints", EndpointCreate(subnet: first, name: "e\(index)"))
            latency.add(milliseconds(since: start))
        }
        let sequentialRate = Double(sequential) / (milliseconds(since: sequentialStart) / 1000)

        let second = try await makeSubnet(client, "par", cidr: "10.2.0.0/16")
        let (concurrentRate, concurrentLatency) = try await parallelCreates(through: [client], subnet: second, count: concurrent,
                                                                            clients: clients)

        print("controller benchmark (debug builds are several times slower; use -c release)")
        print(String(format: "  baseline GET one object, sequential: %.0f req/s, %@", baselineRate, baseline.summary))
        print(String(format: "  endpoint create with IPAM, sequential: %.0f creates/s, %@ — %.2f × baseline rate", sequentialRate,
                     latency.summary, sequentialRate / baselineRate))
        print(String(format: "  endpoint create with IPAM, %d clients: %.0f creates/s, %@ (target ≥ 2000 creates/s)", clients,
                     concurrentRate, concurrentLatency.summary))
        let delivery = try await measureWatch(watching: client, changing: client, subnetName: "watch", watchers: watchers, changes: changes)
        print(String(format: "  create round trip while %d watch: %@", watchers, delivery.roundTrip.summary))
        print(String(format: "  change → all %d watchers of /desired: %@ (target p99 ≤ 50 ms); p99 / create p50 = %.1f",
                     watchers, delivery.delivery.summary, delivery.delivery.percentile(99) / delivery.roundTrip.percentile(50)))
    }
}

/// `count` endpoint creates into `subnet` from `clients` workers, worker i through controller i mod the count:
/// their rate per second and latencies.
func parallelCreates(through controllers: [ControllerClient], subnet: String, count: Int,
                     clients: Int) async throws -> (rate: Double, latency: Samples) {
    let start = ContinuousClock.now
    let latency = try await withThrowingTaskGroup(of: Samples.self) { group in
        for worker in 0..<clients {
            let client = controllers[worker % controllers.count]
            group.addTask {
                var samples = Samples()
                for index in stride(from: worker, to: count, by: clients) {
                    let begun = ContinuousClock.now
                    let _: Endpoint = try await client.post("/api/v1/endpoints", EndpointCreate(subnet: subnet, name: "e\(index)"))
                    samples.add(milliseconds(since: begun))
                }
                return samples
            }
        }
        return try await group.reduce(into: Samples()) { $0.values += $1.values }
    }
    return (Double(count) / (milliseconds(since: start) / 1000), latency)
}

/// `watchers` hosts all serve one domain of the `bench` enterprise, watching through `watching`; each change,
/// made through `changing`, must reach every one of them. The create round trips and the delivery times.
func measureWatch(watching: ControllerClient, changing client: ControllerClient, subnetName: String, watchers: Int,
                  changes: Int) async throws -> (roundTrip: Samples, delivery: Samples) {
    let _: Subnet = try await client.post("/api/v1/subnets", SubnetCreate(zone: "bench/d/z", name: subnetName, cidr: "10.3.0.0/16"))
    let subnet = "bench/d/z/\(subnetName)"
    for index in 0..<watchers {
        let underlay = HostRegistration(underlayIP: "10.200.\(index / 250).\(index % 250 + 1)")
        let _: HostRecord = try await client.put("/api/v1/hosts/w\(index)", underlay)
        let _: Endpoint = try await client.post("/api/v1/endpoints", EndpointCreate(subnet: subnet, name: "w\(index)", host: "w\(index)"))
    }
    // The watched controller may be a moment behind the one the hosts were made through.
    let synced = ContinuousClock.now + .seconds(10)
    while (try? await watching.get("/api/v1/endpoints/\(subnet)/w\(watchers - 1)", as: Endpoint.self)) == nil {
        guard ContinuousClock.now < synced else { throw TrellisError(.unavailable, "the watched controller never saw the hosts made") }
        try await Task.sleep(for: .milliseconds(10))
    }
    let seen = SeenChanges()
    let streams = Task {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<watchers {
                group.addTask {
                    var state: DesiredState?
                    try await watching.stream("/api/v1/hosts/w\(index)/desired?watch=1", as: WatchMessage.self) { message in
                        if let snapshot = message.state { state = snapshot }
                        if let delta = message.delta { state = state?.applying(delta, revision: message.revision) }
                        guard let state else { return true }
                        await seen.record(watcher: index, names: state.remoteEndpoints.map(\.path) + state.endpoints.map(\.path))
                        return true
                    }
                }
            }
            try await group.waitForAll()
        }
    }
    defer { streams.cancel() }
    try await seen.waitForWatchers(watchers)

    var delivery = Samples(), roundTrip = Samples()
    for change in 0..<changes {
        let name = "\(subnet)/change\(change)"
        await seen.expect(name)
        let start = ContinuousClock.now
        let _: Endpoint = try await client.post("/api/v1/endpoints", EndpointCreate(subnet: subnet, name: "change\(change)", host: "w0"))
        roundTrip.add(milliseconds(since: start))
        for arrival in try await seen.arrivals(of: name, count: watchers) { delivery.add((arrival - start).milliseconds) }
    }
    return (roundTrip, delivery)
}

extension Duration {
    var milliseconds: Double { Double(components.seconds) * 1000 + Double(components.attoseconds) / 1e15 }
}

/// When each watcher first saw each expected endpoint.
actor SeenChanges {
    private var ready: Set<Int> = []
    private var expected: String?
    private var times: [ContinuousClock.Instant] = []
    private var got: Set<Int> = []

    func record(watcher: Int, names: [String]) {
        ready.insert(watcher)
        if let expected, names.contains(expected), got.insert(watcher).inserted { times.append(.now) }
    }

    func expect(_ name: String) {
        expected = name
        times = []
        got = []
    }

    func waitForWatchers(_ count: Int) async throws {
        let deadline = ContinuousClock.now + .seconds(30)
        while ready.count < count {
            guard ContinuousClock.now < deadline else {
                throw TrellisError(.unavailable, "only \(ready.count) of \(count) watchers started")
            }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    func arrivals(of name: String, count: Int) async throws -> [ContinuousClock.Instant] {
        let deadline = ContinuousClock.now + .seconds(30)
        while got.count < count {
            guard ContinuousClock.now < deadline else {
                throw TrellisError(.unavailable, "only \(got.count) of \(count) watchers saw \(name)")
            }
            try await Task.sleep(for: .milliseconds(1))
        }
        return times
    }
}

/// A lab of `count` hosts through the `trellis` binary next to this one; removed by `down`.
struct BenchLab {
    let trellis: String
    let directory: String
    let controller: ControllerClient

    init(hosts count: Int, tag: String, docker: Bool = false, controllers: Int = 1, datapath: String = "auto") throws {
        trellis = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("trellis").path
        directory = "/tmp/\(tag)-lab"
        _ = try sh([trellis, "lab", "down", "--dir", directory])
        let up = try sh([trellis, "lab", "up", "--hosts", String(count), "--controllers", String(controllers), "--dir", directory,
                         "--datapath", datapath] + (docker ? ["--docker"] : []))
        guard up.contains("h\(count)") else { throw TrellisError(.unavailable, "lab up failed: \(up)") }
        let token = try String(contentsOfFile: "\(directory)/admin.token", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        controller = ControllerClient(baseURL: ControllerClient.baseURL(socket: "\(directory)/controller.sock"), token: token)
    }

    func agent(_ host: Int) -> ControllerClient {
        ControllerClient(baseURL: ControllerClient.baseURL(socket: "\(directory)/h\(host).sock"), token: nil)
    }

    func down() { _ = try? sh([trellis, "lab", "down", "--dir", directory]) }

    func subnet(_ cidr: String) async throws {
        let _: Enterprise = try await controller.post("/api/v1/enterprises", EnterpriseCreate(name: "bench"))
        let _: Domain = try await controller.post("/api/v1/domains", DomainCreate(enterprise: "bench", name: "d"))
        let _: Zone = try await controller.post("/api/v1/zones", ZoneCreate(domain: "bench/d", name: "z"))
        let _: Subnet = try await controller.post("/api/v1/subnets", SubnetCreate(zone: "bench/d/z", name: "s", cidr: cidr))
    }

    /// Waits until every agent of `hosts` has applied at least `revision`; the time it took.
    func applied(_ revision: Int, hosts: ClosedRange<Int>, since start: ContinuousClock.Instant,
             every interval: Duration = .milliseconds(2)) async throws -> Duration {
        var pending = Set(hosts)
        while !pending.isEmpty {
            for host in pending {
                let status: AgentStatus = try await agent(host).get("/v1/status")
                if (status.appliedRevision ?? 0) >= revision { pending.remove(host) }
            }
            guard ContinuousClock.now - start < .seconds(60) else {
                throw TrellisError(.unavailable, "hosts \(pending) did not apply \(revision)")
            }
            if !pending.isEmpty { try await Task.sleep(for: interval) }
        }
        return ContinuousClock.now - start
    }

    /// CPU time (user and system) the lab's processes `names` (`controller`, `h2`, …) have used so far, in ms.
    func cpuMilliseconds(_ names: [String]) -> Double {
        let ticksPerSecond = Double(sysconf(Int32(_SC_CLK_TCK)))
        return names.reduce(0) { total, name in
            guard let pid = (try? String(contentsOfFile: "\(directory)/\(name).pid", encoding: .utf8))
                    .flatMap({ Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }),
                  let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                  let end = stat.range(of: ") ") else { return total }
            // After the command's closing parenthesis: state is field 3, utime field 14, stime field 15.
            let fields = stat[end.upperBound...].split(separator: " ")
            guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return total }
            return total + (user + system) / ticksPerSecond * 1000
        }
    }

    func revision() async throws -> Int {
        let health: [String: String] = try await controller.get("/healthz")
        return Int(health["revision"] ?? "") ?? 0
    }
}
