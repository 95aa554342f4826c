import ArgumentParser
import CTrellisLinux
import Foundation
import Glibc
import TrellisAgent
import TrellisClient
import TrellisModel
import TrellisNetlink
import TrellisNetlinkWire

/// Runs a program and returns its output (for iperf3, ping and iproute2).
@discardableResult
func sh(_ arguments: [String]) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: arguments[0])
    process.arguments = Array(arguments.dropFirst())
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return String(decoding: data, as: UTF8.self)
}

/// iperf3 TCP throughput in Gbit/s from namespace `client` to `address` served in namespace `server`; the
/// server runs on the last CPU and the client on the first, so runs do not differ by where the scheduler put them.
func iperf(server: String, client: String, address: String, seconds: Int) throws -> Double {
    let daemon = Process()
    daemon.executableURL = URL(fileURLWithPath: "/usr/bin/nsenter")
    let lastCPU = max(0, ProcessInfo.processInfo.activeProcessorCount - 1)
    daemon.arguments = ["--net=/run/netns/\(server)", "/usr/bin/iperf3", "-s", "-1", "-A", String(lastCPU)]
    daemon.standardOutput = FileHandle.nullDevice
    daemon.standardError = FileHandle.nullDevice
    try daemon.run()
    defer { kill(daemon.processIdentifier, SIGKILL); daemon.waitUntilExit() }
    usleep(300_000)
    let output = try sh(["/usr/bin/nsenter", "--net=/run/netns/\(client)", "/usr/bin/iperf3", "-c", address, "-t", String(seconds), "-J",
                          "-A", "0"])
    guard let data = output.data(using: .utf8), let json = try JSONSerialization.jsonObject(with: data) as? [String: Any],
          let end = json["end"] as? [String: Any], let received = end["sum_received"] as? [String: Any],
          let bits = received["bits_per_second"] as? Double else {
        throw TrellisError(.unavailable, "iperf3 gave no result: \(output.prefix(300))")
    }
    return bits / 1e9
}

/// A new named network namespace with its loopback up, as a container or host of a benchmark.
func namespace(_ name: String) throws -> NetworkNamespace {
    let namespace = try NetworkNamespace.create(named: name)
    let netlink = try RouteNetlink(in: namespace)
    try netlink.setLink(index: try netlink.requireLink(named: "lo").index, up: true)
    return namespace
}

func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    return sorted.isEmpty ? .nan : sorted[sorted.count / 2]
}

/// A netlink socket of `family` in `namespace`, subscribed to the multicast `groups`; with `receiveBuffer`,
/// room for that many bytes of notifications (a ruleset reload notifies every table, chain and rule).
func netlinkSubscription(in namespace: NetworkNamespace, family: Int32 = NETLINK_ROUTE, groups: UInt32,
                         nonBlocking: Bool = false, receiveBuffer: Int32? = nil) throws -> Int32 {
    let fd = try namespace.run {
        let kind = Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | (nonBlocking ? Int32(SOCK_NONBLOCK.rawValue) : 0)
        let fd = socket(AF_NETLINK, kind, family)
        var address = sockaddr_nl()
        address.nl_family = sa_family_t(AF_NETLINK)
        address.nl_groups = groups
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_nl>.size)) }
        }
        guard fd >= 0, bound == 0 else {
            if fd >= 0 { close(fd) }
            throw NetlinkError(code: errno, operation: "subscribe to kernel notifications")
        }
        return fd
    }
    if var size = receiveBuffer { _ = setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, socklen_t(MemoryLayout<Int32>.size)) }
    return fd
}

/// A non-blocking netlink socket in `namespace` subscribed to nftables notifications (NFNLGRP_NFTABLES,
/// group 7 of NETLINK_NETFILTER).
func nftablesNotifications(in namespace: NetworkNamespace) throws -> Int32 {
    try netlinkSubscription(in: namespace, family: 12, groups: 1 << (7 - 1), nonBlocking: true, receiveBuffer: 16 << 20)
}

/// NFT_MSG_NEWGEN (15) of the nftables subsystem (10): a transaction was committed.
let nftablesNewGeneration: UInt16 = 10 << 8 | 15

/// Every notification waiting on a non-blocking subscribed socket.
func pendingNotifications(_ fd: Int32) -> [NetlinkMessage] {
    var buffer = [UInt8](repeating: 0, count: 1 << 16)
    var messages: [NetlinkMessage] = []
    while case let count = buffer.withUnsafeMutableBytes({ recv(fd, $0.baseAddress, $0.count, 0) }), count > 0 {
        messages += (try? NetlinkMessage.parseAll(Array(buffer[0..<count]))) ?? []
    }
    return messages
}

/// A netlink socket in `namespace` subscribed to neighbour and FDB notifications (RTMGRP_NEIGH).
func neighbourNotifications(in namespace: NetworkNamespace) throws -> Int32 {
    try netlinkSubscription(in: namespace, groups: 1 << 2)
}

struct DatapathBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "datapath", abstract: "Overlay throughput against baselines, attach latency, and convergence on a lab (root).")
    @Option(help: "Seconds per iperf3 run.") var seconds = 5
    @Option(help: "Rounds of the three throughput runs.") var rounds = 3
    @Option(help: "Attaches to time.") var attaches = 100
    @Option(help: "Lab hosts for the convergence run.") var hosts = 20
    @Option(help: "Endpoint creations timed for convergence.") var creations = 50
    @Flag(help: "Skip the throughput runs (lab measurements only).") var skipThroughput = false
    @Flag(help: "Skip the lab measurements (throughput only).") var skipLab = false
    @Option(help: "The lab agents' datapath: auto, fast or bridge.") var datapath = "auto"

    func run() async throws {
        let tag = "tb\(UInt16.random(in: 0...UInt16.max))"
        defer {
            for name in NetworkNamespace.names() where name.hasPrefix(tag) || name.hasPrefix("trellis-\(tag)") {
                try? NetworkNamespace.delete(named: name)
            }
        }
        if !skipThroughput { try await throughput(tag) }
        if !skipLab { try await labMeasurements(tag) }
    }

    // MARK: Throughput

    func throughput(_ tag: String) async throws {
        // Direct veth pair.
        for side in ["va", "vb"] { _ = try namespace("\(tag)-\(side)") }
        try sh(["/usr/sbin/ip", "-n", "\(tag)-va", "link", "add", "v0", "type", "veth", "peer", "name", "v0", "netns", "\(tag)-vb"])
        for (ns, ip) in [("\(tag)-va", "10.201.0.1/24"), ("\(tag)-vb", "10.201.0.2/24")] {
            try sh(["/usr/sbin/ip", "-n", ns, "addr", "add", ip, "dev", "v0"])
            try sh(["/usr/sbin/ip", "-n", ns, "link", "set", "v0", "up"])
        }


        // Hand-built VXLAN between two host namespaces, made with iproute2 as in the manual ways.
        for name in ["hh1", "hh2", "hc1", "hc2"] { _ = try namespace("\(tag)-\(name)") }
        try sh(["/usr/sbin/ip", "-n", "\(tag)-hh1", "link", "add", "u0", "type", "veth", "peer", "name", "u0", "netns", "\(tag)-hh2"])
        for index in 1...2 {
            let host = "\(tag)-hh\(index)", container = "\(tag)-hc\(index)", other = 3 - index
            for command in [
                ["addr", "add", "10.202.0.\(index)/24", "dev", "u0"], ["link", "set", "u0", "up"],
                ["link", "add", "br0", "type", "bridge"], ["link", "set", "br0", "up"],
                ["link", "add", "vx0", "type", "vxlan", "id", "42", "dstport", "4789", "local", "10.202.0.\(index)", "nolearning"],
                ["link", "set", "vx0", "master", "br0", "mtu", "1450", "up"],
                ["link", "add", "p0", "type", "veth", "peer", "name", "eth0", "netns", container],
                ["link", "set", "p0", "master", "br0", "mtu", "1450", "up"],
            ] { try sh(["/usr/sbin/ip", "-n", host] + command) }
            try sh(["/usr/sbin/bridge", "-n", host, "fdb", "append", "00:00:00:00:00:00", "dev", "vx0", "dst", "10.202.0.\(other)"])
            for command in [["addr", "add", "192.168.202.\(index)/24", "dev", "eth0"], ["link", "set", "eth0", "mtu", "1450", "up"]] {
                try sh(["/usr/sbin/ip", "-n", container] + command)
            }
            try NetworkNamespace(named: host).setSysctl("net.bridge.bridge-nf-call-iptables", "0", optional: true)
        }


        // Trellis: the agent's datapath on two hosts, from desired states.
        let h1 = try namespace("\(tag)-th1"), h2 = try namespace("\(tag)-th2")
        let c1 = try namespace("\(tag)-tc1"), c2 = try namespace("\(tag)-tc2")
        try sh(["/usr/sbin/ip", "-n", "\(tag)-th1", "link", "add", "u0", "type", "veth", "peer", "name", "u0", "netns", "\(tag)-th2"])
        for (index, host) in [h1, h2].enumerated() {
            let netlink = try RouteNetlink(in: host)
            let link = try netlink.requireLink(named: "u0")
            try netlink.setLink(index: link.index, up: true)
            try netlink.addAddress(index: link.index, IPv4Address(0x0ACB_0001 + UInt32(index)), prefixLength: 24)
        }
        let network = try IPv4Network.parse("192.168.203.0/24")
        let subnet = DesiredSubnet(path: "b/d/z/s", cidr: network, gateway: network.firstHost, gatewayMAC: .gateway(vni: 7777), vni: 7777,
                                   dhcp: false, remoteVTEPs: [])
        let endpoints = [c1, c2].enumerated().map { index, container in
            Endpoint(id: index + 1, path: "b/d/z/s/e\(index)", name: "e\(index)", subnet: "b/d/z/s", domain: "b/d", enterprise: "b",
                     kind: .container, host: "\(tag)h\(index)", ip: IPv4Address(network.network.value + 2 + UInt32(index)),
                     mac: .endpoint(sequence: UInt32(index + 1)), state: .pending, externalIds: [:], revision: 1,
                     createdAt: Date())
        }
        for index in 0...1 {
            var own = subnet
            own.remoteVTEPs = [IPv4Address(0x0ACB_0001 + UInt32(1 - index))]
            let other = endpoints[1 - index]
            let state = DesiredState(host: "\(tag)h\(index)", revision: 1, underlayIP: IPv4Address(0x0ACB_0001 + UInt32(index)),
                                     domains: [DesiredDomain(path: "b/d", id: 1, subnets: [own], policies: [])],
                                     endpoints: [endpoints[index]],
                                     remoteEndpoints: [RemoteEndpoint(path: other.path, subnet: other.subnet, ip: other.ip, mac: other.mac,
                                                                      host: other.host!,
                                                                      vtep: IPv4Address(0x0ACB_0001 + UInt32(1 - index)))],
                                     profiles: [])
            let datapath = try Datapath(configuration: DatapathConfiguration(host: "\(tag)h\(index)",
                                                                             underlayIP: IPv4Address(0x0ACB_0001 + UInt32(index))),
                                        hostNamespace: index == 0 ? h1 : h2,
                                        bindings: try LocalBindingStore(path: nil))
            try datapath.bindings.bind(LocalBinding(endpoints[index], domainID: 1,
                                                    port: .namespace(path: [c1, c2][index].path, interface: "eth0")))
            try await datapath.reconcile(state)
            try datapath.firewall.sync()
        }
        // The port guard's cost: the same Trellis path with the guard's netdev table taken out of both
        // routers for one run of each round, and put back after.
        let routers = (0...1).map { "/run/netns/" + KernelNames.routerNamespace(host: "\(tag)h\($0)", domainID: 1) }
        func nft(_ router: String, _ arguments: [String]) throws -> String {
            try sh(["/usr/bin/nsenter", "--net=\(router)", "/usr/sbin/nft"] + arguments)
        }
        let guardTables = try routers.map { try nft($0, ["list", "table", "netdev", "trellis"]) }
        guard guardTables.allSatisfy({ $0.contains("ether saddr !=") }) else {
            throw TrellisError(.internalError, "the routers have no port guard: \(guardTables)")
        }
        func withoutGuard<T>(_ body: () throws -> T) throws -> T {
            for router in routers { _ = try nft(router, ["delete", "table", "netdev", "trellis"]) }
            defer {
                for (router, table) in zip(routers, guardTables) {
                    let file = "/tmp/\(tag)-guard.nft"
                    try? table.write(toFile: file, atomically: true, encoding: .utf8)
                    _ = try? nft(router, ["-f", file])
                    unlink(file)
                }
            }
            return try body()
        }
        // The paths take turns, `rounds` times; the medians are compared (runs here vary by ±10 %).
        var runs: [[Double]] = [[], [], [], []]
        let paths: [() throws -> Double] = [
            { try iperf(server: "\(tag)-vb", client: "\(tag)-va", address: "10.201.0.2", seconds: seconds) },
            { try iperf(server: "\(tag)-hc2", client: "\(tag)-hc1", address: "192.168.202.2", seconds: seconds) },
            { try iperf(server: "\(tag)-tc2", client: "\(tag)-tc1", address: endpoints[1].ip.description, seconds: seconds) },
            { try withoutGuard {
                try iperf(server: "\(tag)-tc2", client: "\(tag)-tc1", address: endpoints[1].ip.description, seconds: seconds)
            } },
        ]
        // Each round starts at the next path, so no path always follows the same one.
        for round in 0..<rounds {
            for step in 0..<paths.count {
                let path = (round + step) % paths.count
                runs[path].append(try paths[path]())
            }
        }
        let (veth, handBuilt, trellis, unguarded) = (median(runs[0]), median(runs[1]), median(runs[2]), median(runs[3]))
        print("datapath benchmark (iperf3 TCP, one stream, \(seconds) s each, medians of \(rounds) interleaved rounds, same run)")
        print(String(format: "  direct veth pair:                      %6.2f Gbit/s", veth))
        print(String(format: "  hand-built VXLAN between two hosts:    %6.2f Gbit/s", handBuilt))
        print(String(format: "  Trellis across two hosts:              %6.2f Gbit/s = %.2f × hand-built VXLAN (target ≥ 0.95), %.2f × veth",
                     trellis, trellis / handBuilt, trellis / veth))
        // The guard's cost from each round's own pair of runs, which shared that moment's machine.
        let costs = zip(runs[2], runs[3]).map { (1 - $0 / $1) * 100 }.sorted()
        print(String(format: "  Trellis without its port guard:        %6.2f Gbit/s: the guard costs %.1f %% (target ≤ 3 %%)",
                     unguarded, (1 - trellis / unguarded) * 100))
        print(String(format: "  the guard's cost within each round:    median %.1f %%, quartiles %.1f %% … %.1f %% (%d rounds)",
                     median(costs), costs[costs.count / 4], costs[(costs.count * 3) / 4], costs.count))
    }

    // MARK: Lab: attach latency and convergence

    func labMeasurements(_ tag: String) async throws {
        let upStarted = ContinuousClock.now
        let lab = try BenchLab(hosts: hosts, tag: tag, datapath: datapath)
        print(String(format: "  trellis lab up of %d hosts: %.1f s (target ≤ 60 s at 100)", hosts,
                     (ContinuousClock.now - upStarted).milliseconds / 1000))
        var downTimed = false
        defer { if !downTimed { lab.down() } }
        try await lab.subnet("10.50.0.0/16")
        let controller = lab.controller, agent = lab.agent(1)
        // A peer on h2 that sends an echo request every millisecond to each new endpoint until it answers.
        let peer = try namespace("\(tag)-peer")
        let _: Endpoint = try await lab.agent(2).post("/v1/attach", AttachRequest(subnet: "bench/d/z/s", name: "peer", ip: "10.50.255.1",
                                                                                  netns: peer.path))

        var attach = Samples(), request = Samples()
        for index in 0..<attaches {
            let container = try namespace("\(tag)-a\(index)")
            let address = "10.50.\(1 + index / 250).\(index % 250 + 1)"
            let probe = try EchoProbe(in: peer, target: try IPv4Address.parse(address, field: "address"))
            probe.start()
            usleep(20_000)
            let start = Date().timeIntervalSince1970
            let _: Endpoint = try await agent.post("/v1/attach", AttachRequest(subnet: "bench/d/z/s", name: "a\(index)", ip: address,
                                                                               netns: container.path))
            request.add((Date().timeIntervalSince1970 - start) * 1000)
            guard let answered = probe.wait() else { continue }
            attach.add((answered - start) * 1000)
            try NetworkNamespace.delete(named: "\(tag)-a\(index)")
        }
        print(String(format: "  attach → first echo reply to a peer on another host: %@"
                         + " (target p50 ≤ 10 ms, p99 ≤ 50 ms; %d of %d answered)",
                     attach.summary, attach.values.count, attaches))
        print(String(format: "    of which the attach request itself: %@", request.summary))
        let slow = attach.values.enumerated().filter { $0.element > 100 }.map { String(format: "#%d %.0f ms", $0.offset, $0.element) }
        if !slow.isEmpty { print("    over 100 ms: " + slow.joined(separator: ", ")) }

        // Convergence: every host serves the domain; time from creation until every other host has the FDB entry.
        for host in 2...hosts {
            let _: Endpoint = try await controller.post("/api/v1/endpoints", EndpointCreate(subnet: "bench/d/z/s", name: "anchor\(host)",
                                                                                            host: "h\(host)"))
        }
        // Measure a steady state: every agent has applied the current revision (its first snapshot included).
        _ = try await lab.applied(try await lab.revision(), hosts: 1...hosts, since: .now, every: .milliseconds(50))
        var watchers: [Int32] = []
        defer { watchers.forEach { close($0) } }
        for host in 2...hosts {
            let name = "trellis-h\(host)-d1"
            for _ in 0..<200 where !NetworkNamespace.names().contains(name) { try await Task.sleep(for: .milliseconds(50)) }
            watchers.append(try neighbourNotifications(in: try NetworkNamespace(named: name)))
        }
        var convergence = Samples(), created = Samples()
        let agents = (2...hosts).map { "h\($0)" }
        let cpuBefore = (agents: lab.cpuMilliseconds(agents), controller: lab.cpuMilliseconds(["controller"]))
        let creationsStarted = ContinuousClock.now
        for index in 0..<creations {
            let start = ContinuousClock.now
            let made: Endpoint = try await controller.post("/api/v1/endpoints", EndpointCreate(subnet: "bench/d/z/s", name: "c\(index)",
                                                                                               host: "h1"))
            created.add((ContinuousClock.now - start).milliseconds)
            // Waits on the kernel's notifications, without polling, until every host has the VXLAN entry.
            var pending = Set(watchers.indices)
            var buffer = [UInt8](repeating: 0, count: 1 << 16)
            while !pending.isEmpty {
                let order = Array(pending)
                var descriptors = order.map { pollfd(fd: watchers[$0], events: Int16(POLLIN), revents: 0) }
                guard ContinuousClock.now - start < .seconds(10) else { throw TrellisError(.unavailable, "no convergence in 10 s") }
                guard poll(&descriptors, nfds_t(descriptors.count), 100) > 0 else { continue }
                for (slot, descriptor) in descriptors.enumerated() where descriptor.revents & Int16(POLLIN) != 0 {
                    let count = buffer.withUnsafeMutableBytes { recv(descriptor.fd, $0.baseAddress, $0.count, 0) }
                    guard count > 0, let messages = try? NetlinkMessage.parseAll(Array(buffer[0..<count])) else { continue }
                    let arrived = messages.contains { message in
                        message.type == NL.RTM_NEWNEIGH && (try? Neighbour(message)).map { $0.mac == made.mac && $0.address != nil } == true
                    }
                    if arrived { pending.remove(order[slot]) }
                }
            }
            convergence.add((ContinuousClock.now - start).milliseconds)
        }
        let window = ContinuousClock.now - creationsStarted
        let cpuDuring = (agents: lab.cpuMilliseconds(agents) - cpuBefore.agents,
                         controller: lab.cpuMilliseconds(["controller"]) - cpuBefore.controller)
        // The same processes for as long again with nothing created: heartbeats and timers.
        let idleBefore = (agents: lab.cpuMilliseconds(agents), controller: lab.cpuMilliseconds(["controller"]))
        try await Task.sleep(for: window)
        let idle = (agents: lab.cpuMilliseconds(agents) - idleBefore.agents,
                    controller: lab.cpuMilliseconds(["controller"]) - idleBefore.controller)
        print(String(format: "  endpoint creation → FDB entry on all %d other hosts: %@ (target p99 ≤ 100 ms)", hosts - 1,
                     convergence.summary))
        print(String(format: "    of which the controller's create round trip: %@", created.summary))
        print(String(format: "    CPU per creation: %.1f ms in the %d agents (%.2f ms each), %.1f ms in the controller;"
                         + " idle for as long: %.1f ms agents, %.1f ms controller per creation's worth of time",
                     cpuDuring.agents / Double(creations), hosts - 1, cpuDuring.agents / Double(creations * (hosts - 1)),
                     cpuDuring.controller / Double(creations), idle.agents / Double(creations), idle.controller / Double(creations)))
        let slowest = convergence.values.enumerated().sorted { $0.element > $1.element }.prefix(3)
        print("    slowest: " + slowest.map { String(format: "#%d %.1f ms", $0.offset, $0.element) }.joined(separator: ", "))
        let downStarted = ContinuousClock.now
        downTimed = true
        lab.down()
        print(String(format: "  trellis lab down of %d hosts: %.1f s (target ≤ 60 s at 100)", hosts,
                     (ContinuousClock.now - downStarted).milliseconds / 1000))
    }
}
