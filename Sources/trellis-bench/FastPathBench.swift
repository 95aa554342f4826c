import ArgumentParser
import Foundation
import Glibc
import TrellisAgent
import TrellisModel
import TrellisNetlink

/// Same host: the eBPF fast path against the bridge path and a direct veth pair, each made in this run (two
/// containers per path, the agent's datapath built from a desired state), within one subnet and routed
/// between two subnets of a domain through a policy that allows the connection.
struct FastPathBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fastpath", abstract: "iperf3 between two containers on one host, one subnet and two: fast path, bridge, veth.")
    @Option(help: "Seconds per iperf3 run.") var seconds = 5
    @Option(help: "Rounds of the three runs, interleaved.") var rounds = 3

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
        for routed in [false, true] {
            let suffix = routed ? "r" : "s"
            let fast = try await host("\(tag)f\(suffix)", fastPath: true, routed: routed)
            let bridge = try await host("\(tag)b\(suffix)", fastPath: false, routed: routed)
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
            let (direct, bridged, fastPath) = (median(runs[0]), median(runs[1]), median(runs[2]))
            let through = (routed ? "Trellis, router (policy):" : "Trellis, bridge path:")
                .padding(toLength: 29, withPad: " ", startingAt: 0)
            print(routed ? "routed between two subnets, a policy allowing the connection:" : "within one subnet, nothing filtering:")
            print(String(format: "  direct veth pair:            %6.2f Gbit/s", direct))
            print("  " + through + String(format: "%6.2f Gbit/s = %.2f × veth", bridged, bridged / direct))
            print(String(format: "  Trellis, eBPF fast path:     %6.2f Gbit/s = %.2f × veth (target ≥ 0.95), %.2f × bridge path",
                         fastPath, fastPath / direct, fastPath / bridged))
            print("  packets the bridge sent to the server's port: fast path \(try fast.bridgedToServer()),"
                  + " bridge path \(try bridge.bridgedToServer())")
            withExtendedLifetime([fast.datapath, bridge.datapath]) {}
        }
    }

    /// One host with the agent's datapath and two containers in one subnet; the first is the iperf3 client.
    struct Host {
        var client: String
        var server: String
        var address: String
        var router: String
        var serverPort: String
        /// Kept for the runs: the fast path's programs are attached while their datapath lives.
        var datapath: Datapath

        func bridgedToServer() throws -> UInt64 {
            try RouteNetlink(in: NetworkNamespace(named: router)).link(named: serverPort)?.statistics?.sentPackets ?? 0
        }
    }

    /// With `routed`, the two containers are in two subnets of the domain and a policy allows TCP from the first.
    func host(_ name: String, fastPath: Bool, routed: Bool) async throws -> Host {
        let hostNamespace = try namespace("\(name)-h")
        try sh(["/usr/sbin/ip", "-n", "\(name)-h", "link", "add", "u0", "type", "veth", "peer", "name", "u1"])
        try sh(["/usr/sbin/ip", "-n", "\(name)-h", "addr", "add", "10.204.0.1/24", "dev", "u0"])
        try sh(["/usr/sbin/ip", "-n", "\(name)-h", "link", "set", "u0", "up"])
        let underlay = IPv4Address("10.204.0.1")!
        let containers = try [namespace("\(name)-c1"), namespace("\(name)-c2")]
        let subnets = try (0...(routed ? 1 : 0)).map { index in
            let network = try IPv4Network.parse("192.168.\(204 + index).0/24"), vni = 7778 + index
            return DesiredSubnet(path: "b/d/z/s\(index)", cidr: network, gateway: network.firstHost, gatewayMAC: .gateway(vni: vni),
                                 vni: vni, dhcp: false, remoteVTEPs: [])
        }
        let endpoints = (0...1).map { index in
            let subnet = subnets[routed ? index : 0]
            let ip = IPv4Address(subnet.cidr.network.value + 2 + UInt32(index))
            return Endpoint(id: index + 1, path: "\(subnet.path)/e\(index)", name: "e\(index)", subnet: subnet.path, domain: "b/d",
                            enterprise: "b", kind: .container, host: name, ip: ip,
                            mac: .endpoint(sequence: UInt32(index + 1)), state: .pending, externalIds: [:], revision: 1, createdAt: Date())
        }
        let policies = routed ? [NetworkPolicy(path: "b/d/p", name: "p", domain: "b/d", rules: [
            try PolicyRule.parse("allow tcp from \(subnets[0].path) to \(subnets[1].path) port 5201"),
        ], revision: 1, createdAt: Date())] : []
        let state = DesiredState(host: name, revision: 1, underlayIP: underlay,
                                 domains: [DesiredDomain(path: "b/d", id: 1, subnets: subnets, policies: policies)],
                                 endpoints: endpoints, remoteEndpoints: [], profiles: [])
        let datapath = try Datapath(configuration: DatapathConfiguration(host: name, underlayIP: underlay, fastPath: fastPath),
                                    hostNamespace: hostNamespace, bindings: try LocalBindingStore(path: nil))
        for (endpoint, container) in zip(endpoints, containers) {
            try datapath.bindings.bind(LocalBinding(endpoint, domainID: 1, port: .namespace(path: container.path, interface: "eth0")))
        }
        try await datapath.reconcile(state)
        try datapath.firewall.sync()
        return Host(client: "\(name)-c1", server: "\(name)-c2", address: endpoints[1].ip.description,
                    router: KernelNames.routerNamespace(host: name, domainID: 1), serverPort: KernelNames.port(endpointID: 2),
                    datapath: datapath)
    }
}
