import ArgumentParser
import Foundation
import Glibc
import TrellisAgent
import TrellisModel
import TrellisNetlink

/// Same host, same subnet: the eBPF fast path against the bridge path and a direct veth pair, each made
/// in this run (two containers per path, the agent's datapath built from a desired state).
struct FastPathBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fastpath", abstract: "iperf3 between two containers of one subnet on one host: fast path, bridge, veth.")
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
        let fast = try await host("\(tag)f", fastPath: true), bridge = try await host("\(tag)b", fastPath: false)

        var runs: [[Double]] = [[], [], []]
        let paths: [() throws -> Double] = [
            { try iperf(server: "\(tag)-vb", client: "\(tag)-va", address: "10.201.0.2", seconds: seconds) },
            { try iperf(server: bridge.server, client: bridge.client, address: bridge.address, seconds: seconds) },
            { try iperf(server: fast.server, client: fast.client, address: fast.address, seconds: seconds) },
        ]
        for round in 0..<rounds {
            for step in 0..<paths.count {
                let path = (round + step) % paths.count
                runs[path].append(try paths[path]())
            }
        }
        let (veth, bridged, fastPath) = (median(runs[0]), median(runs[1]), median(runs[2]))
        print("fast path benchmark (iperf3 TCP, one stream, MTU 1450, \(seconds) s each, medians of \(rounds) interleaved rounds)")
        print(String(format: "  direct veth pair:            %6.2f Gbit/s", veth))
        print(String(format: "  Trellis, bridge path:        %6.2f Gbit/s = %.2f × veth", bridged, bridged / veth))
        print(String(format: "  Trellis, eBPF fast path:     %6.2f Gbit/s = %.2f × veth (target ≥ 0.95), %.2f × bridge path",
                     fastPath, fastPath / veth, fastPath / bridged))
        print("  packets the bridge sent to the server's port: fast path \(try fast.bridgedToServer()),"
              + " bridge path \(try bridge.bridgedToServer())")
        withExtendedLifetime([fast.datapath, bridge.datapath]) {}
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

    func host(_ name: String, fastPath: Bool) async throws -> Host {
        let hostNamespace = try namespace("\(name)-h")
        try sh(["/usr/sbin/ip", "-n", "\(name)-h", "link", "add", "u0", "type", "veth", "peer", "name", "u1"])
        try sh(["/usr/sbin/ip", "-n", "\(name)-h", "addr", "add", "10.204.0.1/24", "dev", "u0"])
        try sh(["/usr/sbin/ip", "-n", "\(name)-h", "link", "set", "u0", "up"])
        let underlay = IPv4Address("10.204.0.1")!
        let containers = try [namespace("\(name)-c1"), namespace("\(name)-c2")]
        let network = try IPv4Network.parse("192.168.204.0/24")
        let subnet = DesiredSubnet(path: "b/d/z/s", cidr: network, gateway: network.firstHost, gatewayMAC: .gateway(vni: 7778), vni: 7778,
                                   dhcp: false, remoteVTEPs: [])
        let endpoints = (0...1).map { index in
            Endpoint(id: index + 1, path: "b/d/z/s/e\(index)", name: "e\(index)", subnet: "b/d/z/s", domain: "b/d", enterprise: "b",
                     kind: .container, host: name, ip: IPv4Address(network.network.value + 2 + UInt32(index)),
                     mac: .endpoint(sequence: UInt32(index + 1)), state: .pending, externalIds: [:], revision: 1, createdAt: Date())
        }
        let state = DesiredState(host: name, revision: 1, underlayIP: underlay,
                                 domains: [DesiredDomain(path: "b/d", id: 1, subnets: [subnet], policies: [])],
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
