import ArgumentParser
import Foundation
import Glibc
import TrellisAgent
import TrellisModel
import TrellisNetlink

/// The eBPF fast path against the bridge path and a direct veth pair, each made in this run (two containers
/// per path, the agent's datapath built from desired states), on one host and across two, within one subnet
/// and routed between two subnets of a domain through a policy that allows the connection.
struct FastPathBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fastpath", abstract: "iperf3 between two containers, one host and two, one subnet and two: fast path, bridge, veth.")
    @Option(help: "Seconds per iperf3 run.") var seconds = 5
    @Option(help: "Rounds of the three runs of each case, interleaved.") var rounds = 3

    func run() async throws {
        let tag = "tf\(UInt16.random(in: 0...UInt16.max))"
        defer {
            for name in NetworkNamespace.names() where name.hasPrefix(tag) || name.hasPrefix("trellis-\(tag)") {
                try? NetworkNamespace.delete(named: name)
            }
        }
        for side in ["va", "vb"] { _ = try namespace("\(tag)-\(side)") }
        try sh(["/usr/sbin/ip", "-n", "\(tag)-va", "link", "add", "v0", "type", "veth", "peer", "name", "v0", "netns", "\(tag)-vb"])
        for (name, ip) in [("\(tag)-va", "10.201.0.1/24"), ("\(tag)-vb", "10.201.0.2/24")] {
            try sh(["/usr/sbin/ip", "-n", name, "addr", "add", ip, "dev", "v0"])
            try sh(["/usr/sbin/ip", "-n", name, "link", "set", "v0", "mtu", "1450", "up"])
        }
        let veth: () throws -> Double = { try iperf(server: "\(tag)-vb", client: "\(tag)-va", address: "10.201.0.2", seconds: seconds) }
        print("fast path benchmark (iperf3 TCP, one stream, MTU 1450, \(seconds) s each, medians of \(rounds) interleaved rounds)")
        for (routed, acrossHosts) in [(false, false), (true, false), (false, true), (true, true)] {
            let suffix = (routed ? "r" : "s") + (acrossHosts ? "x" : "")
            let fast = try await pair("\(tag)f\(suffix)", fastPath: true, routed: routed, acrossHosts: acrossHosts)
            let bridge = try await pair("\(tag)b\(suffix)", fastPath: false, routed: routed, acrossHosts: acrossHosts)
            var runs: [[Double]] = [[], [], []]
            let paths: [() throws -> Double] = [
                veth,
                { try iperf(server: bridge.server, client: bridge.client, address: bridge.address, seconds: seconds) },
                { try iperf(server: fast.server, client: fast.client, address: fast.address, seconds: seconds) },
            ]
            for round in 0..<rounds {
                for step in 0..<paths.count {
                    let path = (round + step) % paths.count
                    runs[path].append(try paths[path]())
                }
            }
            // A real application across hosts: redis-benchmark's SET and GET, 20 clients, requests per second.
            var redis: [[Double]] = [[], [], []]
            if acrossHosts {
                let servers = [("\(tag)-vb", "\(tag)-va", "10.201.0.2"), (bridge.server, bridge.client, bridge.address),
                               (fast.server, fast.client, fast.address)]
                for round in 0..<rounds {
                    for step in 0..<servers.count {
                        let path = (round + step) % servers.count
                        redis[path].append(try redisRequests(server: servers[path].0, client: servers[path].1, address: servers[path].2))
                    }
                }
            }
            let (direct, bridged, fastPath) = (median(runs[0]), median(runs[1]), median(runs[2]))
            let through = (routed ? "Trellis, router (policy):" : "Trellis, bridge path:")
                .padding(toLength: 29, withPad: " ", startingAt: 0)
            print((acrossHosts ? "across two hosts, " : "on one host, ")
                  + (routed ? "routed between two subnets, a policy allowing the connection:" : "within one subnet, nothing filtering:"))
            print(String(format: "  direct veth pair:            %6.2f Gbit/s", direct))
            print("  " + through + String(format: "%6.2f Gbit/s = %.2f × veth", bridged, bridged / direct))
            print(String(format: "  Trellis, eBPF fast path:     %6.2f Gbit/s = %.2f × veth (target ≥ %.2f), %.2f × bridge path",
                         fastPath, fastPath / direct, acrossHosts ? 0.9 : 0.95, fastPath / bridged))
            print("  packets the bridge sent to the server's port: fast path \(try fast.bridgedToServer()),"
                  + " bridge path \(try bridge.bridgedToServer())")
            if acrossHosts {
                let (direct, bridged, fastPath) = (median(redis[0]), median(redis[1]), median(redis[2]))
                print(String(format: "  redis-benchmark (SET and GET, 20 clients): veth %.0f, bridge path %.0f = %.2f × veth,"
                             + " fast path %.0f = %.2f × veth (target ≥ 0.8) requests/s", direct, bridged, bridged / direct,
                             fastPath, fastPath / direct))
            }
            withExtendedLifetime(fast.datapaths + bridge.datapaths) {}
        }
    }

    /// redis-benchmark's SET and GET requests per second (their mean) from namespace `client` to a redis-server
    /// in namespace `server` at `address`, 20 clients.
    func redisRequests(server: String, client: String, address: String) throws -> Double {
        let daemon = Process()
        daemon.executableURL = URL(fileURLWithPath: "/usr/bin/nsenter")
        daemon.arguments = ["--net=/run/netns/\(server)", "/usr/bin/redis-server", "--bind", address, "--port", "6379", "--save", "",
                            "--appendonly", "no", "--protected-mode", "no"]
        daemon.standardOutput = FileHandle.nullDevice
        daemon.standardError = FileHandle.nullDevice
        try daemon.run()
        defer { kill(daemon.processIdentifier, SIGKILL); daemon.waitUntilExit() }
        usleep(300_000)
        let output = try sh(["/usr/bin/nsenter", "--net=/run/netns/\(client)", "/usr/bin/redis-benchmark", "-h", address, "-p", "6379",
                             "-c", "20", "-n", "100000", "-t", "set,get", "-q"])
        // Lines like "SET: 81234.77 requests per second, p50=0.135 msec" (after progress lines ending in \r).
        let rates = output.split(whereSeparator: { $0 == "\n" || $0 == "\r" }).compactMap { line -> Double? in
            guard line.hasPrefix("SET: ") || line.hasPrefix("GET: "), line.contains("requests per second") else { return nil }
            return Double(line.dropFirst(5).prefix { $0 != " " })
        }
        guard rates.count == 2 else { throw TrellisError(.unavailable, "redis-benchmark gave no result: \(output.suffix(300))") }
        return rates.reduce(0, +) / 2
    }

    /// Two containers with the agent's datapath: on one host or on two; the first is the iperf3 client.
    struct Pair {
        var client: String
        var server: String
        var address: String
        /// The router namespace of the server's host, and the server's port in it.
        var router: String
        var serverPort: String
        /// Kept for the runs: the fast path's programs are attached while their datapath lives.
        var datapaths: [Datapath]

        func bridgedToServer() throws -> UInt64 {
            try RouteNetlink(in: NetworkNamespace(named: router)).link(named: serverPort)?.statistics?.sentPackets ?? 0
        }
    }

    /// With `routed`, the two containers are in two subnets of the domain and a policy allows TCP from the first;
    /// with `acrossHosts`, the second is on a second host (the hosts' underlay a veth pair, VXLAN between them).
    func pair(_ name: String, fastPath: Bool, routed: Bool, acrossHosts: Bool) async throws -> Pair {
        let hosts = try (0...(acrossHosts ? 1 : 0)).map { try namespace("\(name)-h\($0)") }
        let underlay = hosts.indices.map { IPv4Address(0x0ACC_0001 + UInt32($0)) }
        try sh(["/usr/sbin/ip", "-n", "\(name)-h0", "link", "add", "u0", "type", "veth", "peer", "name", acrossHosts ? "u0" : "u1"]
               + (acrossHosts ? ["netns", "\(name)-h1"] : []))
        for (host, address) in zip(hosts, underlay) {
            let netlink = try RouteNetlink(in: host)
            let link = try netlink.requireLink(named: "u0")
            try netlink.setLink(index: link.index, up: true)
            try netlink.addAddress(index: link.index, address, prefixLength: 24)
        }
        let containers = try [namespace("\(name)-c1"), namespace("\(name)-c2")]
        let subnets = try (0...(routed ? 1 : 0)).map { index in
            let network = try IPv4Network.parse("192.168.\(204 + index).0/24"), vni = 7778 + index
            return DesiredSubnet(path: "b/d/z/s\(index)", cidr: network, gateway: network.firstHost, gatewayMAC: .gateway(vni: vni),
                                 vni: vni, dhcp: false, remoteVTEPs: [])
        }
        let hostOf = { (index: Int) in acrossHosts ? index : 0 }
        let endpoints = (0...1).map { index in
            let subnet = subnets[routed ? index : 0]
            let ip = IPv4Address(subnet.cidr.network.value + 2 + UInt32(index))
            return Endpoint(id: index + 1, path: "\(subnet.path)/e\(index)", name: "e\(index)", subnet: subnet.path, domain: "b/d",
                            enterprise: "b", kind: .container, host: "\(name)h\(hostOf(index))", ip: ip,
                            mac: .endpoint(sequence: UInt32(index + 1)), state: .pending, externalIds: [:], revision: 1, createdAt: Date())
        }
        let policies = routed ? [NetworkPolicy(path: "b/d/p", name: "p", domain: "b/d", rules: [
            try PolicyRule.parse("allow tcp from \(subnets[0].path) to \(subnets[1].path) port 5201"),
            try PolicyRule.parse("allow tcp from \(subnets[0].path) to \(subnets[1].path) port 6379"),
        ], revision: 1, createdAt: Date())] : []
        var datapaths: [Datapath] = []
        for (index, host) in hosts.enumerated() {
            let hostName = "\(name)h\(index)"
            let own = subnets.map { subnet in
                var own = subnet
                own.remoteVTEPs = underlay.filter { $0 != underlay[index] }
                return own
            }
            let local = endpoints.filter { $0.host == hostName }
            let remote = endpoints.filter { $0.host != hostName }.map { endpoint in
                RemoteEndpoint(path: endpoint.path, subnet: endpoint.subnet, ip: endpoint.ip, mac: endpoint.mac, host: endpoint.host!,
                               vtep: underlay[1 - index])
            }
            let state = DesiredState(host: hostName, revision: 1, underlayIP: underlay[index],
                                     domains: [DesiredDomain(path: "b/d", id: 1, subnets: own, policies: policies)],
                                     endpoints: local, remoteEndpoints: remote, profiles: [])
            let configuration = DatapathConfiguration(host: hostName, underlayIP: underlay[index], fastPath: fastPath)
            let datapath = try Datapath(configuration: configuration, hostNamespace: host, bindings: try LocalBindingStore(path: nil))
            for (endpoint, container) in zip(endpoints, containers) where endpoint.host == hostName {
                try datapath.bindings.bind(LocalBinding(endpoint, domainID: 1, port: .namespace(path: container.path, interface: "eth0")))
            }
            try await datapath.reconcile(state)
            try datapath.firewall.sync()
            datapaths.append(datapath)
        }
        return Pair(client: "\(name)-c1", server: "\(name)-c2", address: endpoints[1].ip.description,
                    router: KernelNames.routerNamespace(host: "\(name)h\(hostOf(1))", domainID: 1),
                    serverPort: KernelNames.port(endpointID: 2), datapaths: datapaths)
    }
}
