import ArgumentParser
import AsyncHTTPClient
import Foundation
import TrellisClient
import TrellisModel
import TrellisNetlink

/// Endpoint creates through one controller on SQLite (the baseline), then through the controllers of a lab
/// cluster on a three-member etcd: all clients on one controller, then spread over three. Then a change made
/// through one controller, delivered to watchers of another.
struct ClusterBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cluster",
        abstract: "Creates/s on SQLite against one and three controllers on etcd; cross-controller watch delivery (root; needs `trellis`).")
    @Option(help: "Creates in each case.") var creates = 3000
    @Option(help: "Concurrent clients.") var clients = 64
    @Option(help: "Watchers of /desired on one controller.") var watchers = 100
    @Option(help: "Changes made through another controller.") var changes = 50

    func run() async throws {
        print("cluster benchmark: \(creates) endpoint creates with IPAM from \(clients) clients in each case")
        let sqlite = try BenchLab(hosts: 1, tag: "trellis-bench-cluster")
        let baseline: CreateRun
        do {
            try await sqlite.subnet("10.64.0.0/16")
            baseline = try await createRun([sqlite.controller], label: "SQLite, one controller")
        } catch {
            sqlite.down()
            throw error
        }
        sqlite.down()

        let lab = try BenchLab(hosts: 1, tag: "trellis-bench-cluster", controllers: 3)
        defer { lab.down() }
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = watchers + clients + 16
        let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        do {
            try await clusterRuns(lab, http: http, baseline: baseline)
        } catch {
            try? await http.shutdown()
            throw error
        }
        try await http.shutdown()
    }

    /// The creates through one and three controllers on etcd, and the cross-controller watch.
    func clusterRuns(_ lab: BenchLab, http: HTTPClient, baseline: CreateRun) async throws {
        let controllers = ["controller", "controller2", "controller3"].map { name in
            ControllerClient(baseURL: ControllerClient.baseURL(socket: "\(lab.directory)/\(name).sock"), token: lab.controller.token,
                             http: http)
        }
        let alone = try etcdAlone(lab)
        try await lab.subnet("10.64.0.0/16")
        let one = try await createRun([controllers[0]], label: "etcd, one controller", baseline: baseline, etcd: alone)
        let _: Subnet = try await lab.controller.post("/api/v1/subnets",
                                                      SubnetCreate(zone: "bench/d/z", name: "three", cidr: "10.65.0.0/16"))
        let three = try await createRun(controllers, label: "etcd, three controllers", subnet: "bench/d/z/three", baseline: baseline,
                                        etcd: alone)
        print(String(format: "  three controllers against one on etcd: %.2f ×", three.rate / one.rate))

        let (roundTrip, delivery) = try await measureWatch(watching: controllers[1], changing: controllers[0], subnetName: "watch",
                                                           watchers: watchers, changes: changes)
        print(String(format: "  change through controller 1 → all %d watchers of controller 2: %@ (target p99 ≤ 100 ms); create %@",
                     watchers, delivery.summary, roundTrip.summary))
    }

    struct CreateRun {
        var rate: Double
        var latency: Samples
    }

    /// Transactions shaped like a create's commit straight to the lab's etcd, from inside the lab's controller
    /// namespace (where etcd listens): without watchers, and with three following every change as the lab's three
    /// controllers do — the rate a controller's creates cannot exceed on this machine.
    func etcdAlone(_ lab: BenchLab) throws -> Double {
        // The lab's members: client ports 2379, 12379, 22379 on the controller namespace's loopback.
        let members = [2379, 12379, 22379].map { "http://127.0.0.1:\($0)" }.joined(separator: ",")
        var rate = 0.0
        for watchers in [0, 3] {
            let output = try sh(["/usr/bin/nsenter", "--net=\(NetworkNamespace.namedDirectory)/trellis-lab-ctl", CommandLine.arguments[0],
                                 "etcd-txns", "--members", members, "--count", String(creates), "--clients", String(clients),
                                 "--watchers", String(watchers)])
            let fields = output.split(separator: "\n").last?.split(separator: " ", maxSplits: 1) ?? []
            guard fields.count == 2, let measured = Double(fields[0]) else {
                throw TrellisError(.unavailable, "the etcd baseline failed: \(output)")
            }
            print("  etcd alone, create-shaped transactions from \(clients) clients, \(watchers) watchers: "
                  + "\(fields[0]) txn/s, \(fields[1])")
            rate = measured
        }
        return rate
    }

    /// `creates` creates into `subnet` from `clients` workers, worker i through controller i mod the count; prints the
    /// rate, the latencies and the conflict retries the controllers counted meanwhile.
    func createRun(_ controllers: [ControllerClient], label: String, subnet: String = "bench/d/z/s",
                   baseline: CreateRun? = nil, etcd: Double? = nil) async throws -> CreateRun {
        let before = try await storeCounters(controllers)
        let (rate, latency) = try await parallelCreates(through: controllers, subnet: subnet, count: creates, clients: clients)
        let after = try await storeCounters(controllers)
        let commits = after.commits - before.commits, retries = after.retries - before.retries
        let requests = after.requests - before.requests
        let ratio = (baseline.map { String(format: " — %.2f × SQLite", rate / $0.rate) } ?? "")
            + (etcd.map { String(format: ", %.2f × etcd alone with watchers", rate / $0) } ?? "")
        print(String(format: "  %@: %.0f creates/s, %@%@; %d conflict retries in %d commits (%.1f %%), %.1f commits per store request",
                     label, rate, latency.summary, ratio, retries, commits, commits > 0 ? 100 * Double(retries) / Double(commits) : 0,
                     requests > 0 ? Double(commits) / Double(requests) : 0))
        return CreateRun(rate: rate, latency: latency)
    }

    /// The sums of the controllers' store commit, conflict-retry and commit-request counters, from their metrics.
    func storeCounters(_ controllers: [ControllerClient]) async throws -> (commits: Int, retries: Int, requests: Int) {
        var commits = 0, retries = 0, requests = 0
        for controller in controllers {
            let body = try await controller.send(.GET, "/metrics")
            for line in String(decoding: body, as: UTF8.self).split(separator: "\n") {
                let parts = line.split(separator: " ")
                guard parts.count == 2, let value = Int(parts[1]) else { continue }
                if parts[0] == "trellis_store_commits_total" { commits += value }
                if parts[0] == "trellis_store_conflict_retries_total" { retries += value }
                if parts[0] == "trellis_store_commit_requests_total" { requests += value }
            }
        }
        return (commits, retries, requests)
    }
}
