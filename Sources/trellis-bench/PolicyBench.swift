import ArgumentParser
import Foundation
import Glibc
import TrellisAgent
import TrellisClient
import TrellisModel
import TrellisNetlink
import TrellisNetlinkWire

/// Policy costs on a lab: overlay throughput with 10,000 ACL rules in force against none, and the time
/// one profile change takes to be enforced for 1,000 endpoints on 10 hosts.
struct PolicyBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "policy", abstract: "Throughput under 10,000 ACL rules, and profile-change propagation on a lab (root).")
    @Option(help: "Seconds per iperf3 run.") var seconds = 5
    @Option(help: "Rounds of the three throughput cases.") var rounds = 3
    @Option(help: "ACL rules in the large profile.") var rules = 10_000
    @Option(help: "Lab hosts for the propagation run.") var hosts = 10
    @Option(help: "Endpoints using the profile in the propagation run.") var endpoints = 1_000
    @Option(help: "Profile changes timed.") var changes = 10
    @Option(help: "The lab agents' datapath: auto, fast or bridge.") var datapath = "auto"
    @Flag(help: "Skip the propagation run (throughput only).") var skipPropagation = false

    func run() async throws {
        let tag = "tp\(UInt16.random(in: 0...UInt16.max))"
        defer { for name in NetworkNamespace.names() where name.hasPrefix(tag) { try? NetworkNamespace.delete(named: name) } }
        try await throughput(tag)
        if !skipPropagation { try await propagation(tag) }
    }

    func throughput(_ tag: String) async throws {
        let lab = try BenchLab(hosts: 2, tag: tag, datapath: datapath)
        defer { lab.down() }
        try await lab.subnet("10.60.0.0/16")
        let client = try namespace("\(tag)-a"), server = try namespace("\(tag)-b")
        let _: Endpoint = try await lab.agent(1).post("/v1/attach", AttachRequest(subnet: "bench/d/z/s", name: "a", ip: "10.60.0.10",
                                                                                  netns: client.path))
        let _: Endpoint = try await lab.agent(2).post("/v1/attach", AttachRequest(subnet: "bench/d/z/s", name: "b", ip: "10.60.0.20",
                                                                                  netns: server.path))
        func measure(profile: String?) async throws -> Double {
            let start = ContinuousClock.now
            let _: Endpoint = try await lab.controller.patch("/api/v1/endpoints/bench/d/z/s/b", EndpointUpdate(profile: profile ?? ""))
            // Only b's host has anything to change.
            _ = try await lab.applied(try await lab.revision(), hosts: 2...2, since: start)
            return try iperf(server: "\(tag)-b", client: "\(tag)-a", address: "10.60.0.20", seconds: seconds)
        }
        // Rules that traffic from a does not match, so every one of them is in force and none decides.
        let many = (0..<rules).map { ACLRule(action: .deny, direction: .ingress, protocol: .tcp,
                                             remote: "172.16.\($0 / 250).\($0 % 250)/32",
                                             ports: [try! PortRange(1 + $0 % 60_000)]) }
        let _: PortProfile = try await lab.controller.post("/api/v1/profiles", ProfileCreate(enterprise: "bench", name: "one",
                                                                                            rules: [try ACLRule.parse("deny tcp port 22")]))
        let _: PortProfile = try await lab.controller.post("/api/v1/profiles", ProfileCreate(enterprise: "bench", name: "many",
                                                                                             rules: many))
        // The three cases take turns, `rounds` times, and medians are compared: single runs here vary by ±10 %.
        var runs: [[Double]] = [[], [], []]
        var inForce = 0
        for _ in 0..<rounds {
            runs[0].append(try await measure(profile: nil))
            runs[1].append(try await measure(profile: "bench/one"))
            runs[2].append(try await measure(profile: "bench/many"))
            let listing = try sh(["/usr/bin/nsenter", "--net=/run/netns/trellis-h2-d1", "/usr/sbin/nft", "list", "table", "inet",
                                  "trellis"])
            inForce = listing.components(separatedBy: "172.16.").count - 1
        }
        let (none, one, all) = (median(runs[0]), median(runs[1]), median(runs[2]))
        print("policy benchmark (iperf3 TCP, one stream, \(seconds) s each, medians of \(rounds) interleaved rounds, same run,"
              + " two lab hosts, datapath \(datapath))")
        print(String(format: "  no ACL rule (plain overlay):             %6.2f Gbit/s", none))
        print(String(format: "  a profile with 1 ACL rule:               %6.2f Gbit/s = %.2f × none", one, one / none))
        print(String(format: "  a profile with %d ACL rules:         %6.2f Gbit/s = %.2f × none (target ≥ 0.9), %.2f × one rule"
                     + " (%d rule elements in b's host's ruleset)", rules, all, all / none, all / one, inForce))
    }

    func propagation(_ tag: String) async throws {
        let lab = try BenchLab(hosts: hosts, tag: tag)
        defer { lab.down() }
        try await lab.subnet("10.61.0.0/16")
        let shared = ProfileCreate(enterprise: "bench", name: "shared", rules: [try ACLRule.parse("deny tcp port 22")])
        let _: PortProfile = try await lab.controller.post("/api/v1/profiles", shared)
        // The endpoints use the profile from many hosts; they need no running container to be enforced for.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<endpoints {
                group.addTask {
                    let _: Endpoint = try await lab.controller.post("/api/v1/endpoints", EndpointCreate(
                        subnet: "bench/d/z/s", name: "e\(index)", host: "h\(index % hosts + 1)", profile: "bench/shared"))
                }
                if index >= 16 { try await group.next() }
            }
            try await group.waitForAll()
        }
        _ = try await lab.applied(try await lab.revision(), hosts: 1...hosts, since: .now)
        // Enforced: the kernel of every host has committed a new nftables generation in the domain's router, seen
        // through nftables notifications (no polling load on the agents while it is timed).
        var watchers: [Int32] = []
        defer { watchers.forEach { close($0) } }
        for host in 1...hosts {
            watchers.append(try nftablesNotifications(in: try NetworkNamespace(named: "trellis-h\(host)-d1")))
        }
        var kernel = Samples(), reported = Samples()
        for change in 0..<(2 * changes) {
            watchers.forEach { _ = pendingNotifications($0) }
            let start = ContinuousClock.now
            let changed: PortProfile = try await lab.controller.put("/api/v1/profiles/bench/shared", ProfileUpdate(
                rules: [try ACLRule.parse("deny tcp port 22"), try ACLRule.parse("deny tcp port \(1000 + change)")], egressRate: nil,
                    ingressRate: nil,
                flowStats: false, description: nil))
            if change < changes {
                var pending = Set(watchers.indices)
                while !pending.isEmpty {
                    guard ContinuousClock.now - start < .seconds(10) else { throw TrellisError(.unavailable, "not enforced in 10 s") }
                    var descriptors = pending.map { pollfd(fd: watchers[$0], events: Int16(POLLIN), revents: 0) }
                    guard poll(&descriptors, nfds_t(descriptors.count), 100) > 0 else { continue }
                    for descriptor in descriptors where descriptor.revents & Int16(POLLIN) != 0 {
                        if pendingNotifications(descriptor.fd).contains(where: { $0.type == nftablesNewGeneration }),
                           let slot = watchers.firstIndex(of: descriptor.fd) {
                            pending.remove(slot)
                        }
                    }
                }
                kernel.add((ContinuousClock.now - start).milliseconds)
                // Settled before the next change: every agent has marked it applied.
                _ = try await lab.applied(changed.revision, hosts: 1...hosts, since: start, every: .milliseconds(20))
            } else {
                reported.add((try await lab.applied(changed.revision, hosts: 1...hosts, since: start)).milliseconds)
            }
        }
        let router = try NetworkNamespace(named: "trellis-h\(hosts)-d1")
        let table = try NFTables.table("inet", "trellis", namespacePath: router.path)
        print("profile change → enforced on all \(endpoints) endpoints of \(hosts) hosts (every router's kernel has committed"
              + " the new ruleset): \(kernel.summary) (target p99 ≤ 100 ms); last ruleset on h\(hosts): \(table?.comment ?? "none")")
        print("  reported applied by every agent (its status polled every 2 ms, which loads the agents): \(reported.summary)")
    }
}
