import ArgumentParser
import CTrellisLinux
import Foundation
import Glibc
import TrellisModel
import TrellisNetlink
import TrellisNetlinkWire

/// A netlink socket in `namespace` that hears every change to its kernel objects: links, IPv4 addresses
/// and routes, neighbours and FDB entries, qdiscs and filters (rtnetlink), and nftables (nfnetlink).
private func kernelChangeSockets(in namespace: NetworkNamespace) throws -> (route: Int32, nftables: Int32) {
    // RTMGRP_LINK | RTMGRP_NEIGH | RTMGRP_TC | RTMGRP_IPV4_IFADDR | RTMGRP_IPV4_ROUTE.
    let route = try netlinkSubscription(in: namespace, groups: 0x1 | 0x4 | 0x8 | 0x10 | 0x40, nonBlocking: true, receiveBuffer: 4 << 20)
    do { return (route, try nftablesNotifications(in: namespace)) } catch {
        close(route)
        throw error
    }
}

/// The changes waiting on a subscribed socket that are writes of a program: neighbour entries the kernel
/// learns or ages by itself (ARP traffic) are not counted, permanent ones and FDB entries are.
private func drainWrites(_ fd: Int32, counting isWrite: (NetlinkMessage) -> Bool) -> [UInt16: Int] {
    var writes: [UInt16: Int] = [:]
    for message in pendingNotifications(fd) where isWrite(message) { writes[message.type, default: 0] += 1 }
    return writes
}

/// Whether a notification is of a program's write: neighbour entries the kernel learns or ages (ARP) are not.
private func isProgramWrite(_ message: NetlinkMessage) -> Bool {
    guard message.type == NL.RTM_NEWNEIGH || message.type == NL.RTM_DELNEIGH else { return true }
    guard let entry = try? Neighbour(message) else { return true }
    return entry.family == NL.AF_BRIDGE || entry.isPermanent
}

/// Counts of rtnetlink notifications by kind, as "12 (link 10, neighbour 2)".
private func describe(_ writes: [UInt16: Int]) -> String {
    let kinds: [(String, ClosedRange<UInt16>)] = [("link", 16...19), ("address", 20...23), ("route", 24...27), ("neighbour", 28...31),
                                                   ("traffic control", 36...47)]
    let parts = kinds.compactMap { name, types -> String? in
        let count = writes.filter { types.contains($0.key) }.values.reduce(0, +)
        return count == 0 ? nil : "\(name) \(count)"
    }
    let total = writes.values.reduce(0, +)
    return parts.isEmpty ? "\(total)" : "\(total) (\(parts.joined(separator: ", ")))"
}

struct RestartBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restart",
        abstract: "An agent restarted with N local endpoints under traffic: resync time, packets lost, kernel writes (root).")
    @Option(help: "Local endpoints (each in its own network namespace) on the restarted host.") var endpoints = 1_000
    @Option(help: "Restarts timed.") var restarts = 3

    func run() async throws {
        let tag = "tr\(UInt16.random(in: 0...UInt16.max))"
        defer { for name in NetworkNamespace.names() where name.hasPrefix(tag) { try? NetworkNamespace.delete(named: name) } }
        let lab = try BenchLab(hosts: 2, tag: tag)
        defer { lab.down() }
        try await lab.subnet("10.70.0.0/16")
        let made = ContinuousClock.now
        var target: Endpoint?
        try await withThrowingTaskGroup(of: Endpoint.self) { group in
            for index in 0..<endpoints {
                group.addTask {
                    let container = try namespace("\(tag)-e\(index)")
                    let request = AttachRequest(subnet: "bench/d/z/s", name: "e\(index)", netns: container.path)
                    return try await lab.agent(1).post("/v1/attach", request)
                }
                if index >= 8, let attached = try await group.next(), attached.name == "e0" { target = attached }
            }
            for try await attached in group where attached.name == "e0" { target = attached }
        }
        let peer = try namespace("\(tag)-peer")
        let before = try await lab.revision()
        let _: Endpoint = try await lab.agent(2).post("/v1/attach", AttachRequest(subnet: "bench/d/z/s", name: "peer", netns: peer.path))
        // The peer's creation is the next revision; its later state change concerns only h2.
        _ = try await lab.applied(before + 1, hosts: 1...2, since: .now, every: .milliseconds(50))
        let attached = ContinuousClock.now
        print(String(format: "agent restart with %d local endpoints (attached in %.1f s), a peer on h2 pinging one of them every 10 ms",
                     endpoints, milliseconds(since: made) / 1000))
        let router = try NetworkNamespace(named: "trellis-h1-d1")
        let address = try require(target, "the endpoint e0").ip

        let quiet = try kernelChangeSockets(in: router)
        // The kernel trails a burst of new ports with link notices of its own: operstate, at ~50/s for seconds
        // after 1,000 attaches, and one per bridge port a forward delay (15 s) after it joined, STP or not.
        // Wait for both, then for 2 s without any (at most a minute) before the windows are counted.
        let settling = ContinuousClock.now
        var lastHeard = settling
        while (ContinuousClock.now - lastHeard < .seconds(2) || ContinuousClock.now - attached < .seconds(16))
                && ContinuousClock.now - settling < .seconds(60) {
            if !drainWrites(quiet.route, counting: { _ in true }).isEmpty { lastHeard = .now }
            try await Task.sleep(for: .milliseconds(100))
        }
        print(String(format: "  the router was quiet after %.1f s", milliseconds(since: settling) / 1000))
        try await Task.sleep(for: .seconds(4))
        let baseline = drainWrites(quiet.route, counting: isProgramWrite)
        close(quiet.route)
        close(quiet.nftables)
        print("  baseline, 4 s with no restart: \(describe(baseline)) rtnetlink notifications in the router")
        for restart in 1...restarts {
            let status: AgentStatus = try await lab.agent(1).get("/v1/status")
            let revision = try require(status.appliedRevision, "h1's applied revision")
            let sockets = try kernelChangeSockets(in: router)
            defer { close(sockets.route); close(sockets.nftables) }
            let ping = Process()
            ping.executableURL = URL(fileURLWithPath: "/usr/bin/nsenter")
            ping.arguments = ["--net=\(peer.path)", "/usr/bin/ping", "-q", "-i", "0.01", "\(address)"]
            let output = Pipe()
            ping.standardOutput = output
            ping.standardError = output
            try ping.run()
            try await Task.sleep(for: .milliseconds(500))
            try sh([lab.trellis, "lab", "stop", "h1", "--dir", lab.directory])
            let started = ContinuousClock.now
            try sh([lab.trellis, "lab", "start", "h1", "--dir", lab.directory])
            while true {
                let status: AgentStatus? = try? await lab.agent(1).get("/v1/status")
                if status?.connected == true, (status?.appliedRevision ?? -1) >= revision { break }
                guard ContinuousClock.now - started < .seconds(120) else { throw TrellisError(.unavailable, "h1 did not resync in 120 s") }
                try await Task.sleep(for: .milliseconds(20))
            }
            let resync = milliseconds(since: started)
            try await Task.sleep(for: .seconds(1))
            kill(ping.processIdentifier, SIGINT)
            let summary = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            ping.waitUntilExit()
            let routeWrites = drainWrites(sockets.route, counting: isProgramWrite)
            let nftablesWrites = drainWrites(sockets.nftables) { _ in true }.values.reduce(0, +)
            let counts = summary.split(separator: "\n").first { $0.contains("packets transmitted") } ?? "no ping summary"
            print(String(format: "  restart %d: resynced in %.0f ms; ping: %@; kernel writes in the router: %@ rtnetlink, %d nftables"
                         + " (target: the baseline)", restart, resync, String(counts), describe(routeWrites), nftablesWrites))
        }
    }
}

/// The value, or an error naming what was missing.
func require<T>(_ value: T?, _ what: String = "a value") throws -> T {
    guard let value else { throw TrellisError(.unavailable, "\(what) is missing") }
    return value
}
