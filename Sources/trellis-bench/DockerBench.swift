import ArgumentParser
import Foundation
import TrellisClient
import TrellisModel
import TrellisNetlink

/// From `docker run -d` to the new container answering pings from another container of its network,
/// for Trellis's remote driver, for bottom-up attachment (`--net=none` and variables), and, as the
/// baseline in the same run, for a network of Docker's own bridge driver. The cases take turns, run
/// by run and in rotating order, on one lab host's engine. Once `docker run -d` returns, as a user would, the prober sends an
/// ICMP echo every millisecond from the other container's namespace until one is answered; the time
/// counts from the start of `docker run`.
struct DockerBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "docker",
                                                    abstract: "docker run -d → first ping: Trellis against Docker's bridge.")
    @Option(help: "Runs of each case.") var runs = 50

    enum Case: String, CaseIterable {
        case bridge = "Docker bridge network (baseline)"
        case driver = "Trellis remote driver (--network)"
        case bottomUp = "Trellis bottom-up (--net=none + TRELLIS_*)"
        case null = "no-op remote driver (the floor of any remote driver)"
    }

    func run() async throws {
        let lab = try BenchLab(hosts: 1, tag: "trellis-bench-docker", docker: true)
        defer { lab.down() }
        try await lab.subnet("10.60.0.0/16")
        let _: UserWithToken = try await lab.controller.post("/api/v1/users", UserCreate(name: "runner", enterprise: "bench"))
        let docker = ["/usr/bin/docker", "-H", "unix://\(lab.directory)/h1-docker/docker.sock"]
        _ = try sh(docker + ["network", "create", "-d", "bridge", "--subnet", "172.30.0.0/16", "bnet"])
        _ = try sh(docker + ["network", "create", "-d", "trellis", "--ipam-driver", "trellis", "--subnet", "10.60.0.0/16",
                             "-o", "trellis.subnet=bench/d/z/s", "tnet"])
        let null = try NullDriver(plugins: "\(lab.directory)/h1-docker/plugins", host: try NetworkNamespace(named: "trellis-lab-h1"))
        let serving = Task { try await null.run() }
        defer { serving.cancel() }
        while !FileManager.default.fileExists(atPath: null.socketPath) { try await Task.sleep(for: .milliseconds(10)) }
        _ = try sh(docker + ["network", "create", "-d", NullDriver.name, "--ipam-driver", NullDriver.name, "--subnet", "10.70.0.0/16",
                             "nnet"])
        try null.prepareSpare()
        var probers: [Case: NetworkNamespace] = [:]
        let probes: [(network: String, address: String, cases: [Case])] = [
            ("bnet", "172.30.255.1", [.bridge]), ("tnet", "10.60.255.1", [.driver, .bottomUp]), ("nnet", "10.70.255.1", [.null]),
        ]
        for (network, address, cases) in probes {
            _ = try sh(docker + ["run", "-d", "--network", network, "--ip", address, "--name", "probe-\(network)", "trellis/busybox",
                                 "sleep", "1000000"])
            let pid = try sh(docker + ["inspect", "-f", "{{.State.Pid}}",
                                       "probe-\(network)"]).trimmingCharacters(in: .whitespacesAndNewlines)
            let namespace = try NetworkNamespace(path: "/proc/\(pid)/ns/net")
            for benchCase in cases { probers[benchCase] = namespace }
        }
        let variables = ["-e", "TRELLIS_ENTERPRISE=bench", "-e", "TRELLIS_DOMAIN=d", "-e", "TRELLIS_ZONE=z", "-e", "TRELLIS_SUBNET=s", "-e",
                         "TRELLIS_USER=runner"]
        var samples: [Case: [Double]] = [:]
        var returned: [Case: [Double]] = [:]
        var lost: [Case: Int] = [:]
        print("docker run -d → first ping from another container, \(runs) runs of each case, interleaved")
        for run in 0..<runs {
            // Each case follows each other case equally often: a removed container's namespace is torn
            // down by the kernel while the next run starts, and that cost should not fall on one case.
            let order = Case.allCases.indices.map { Case.allCases[($0 + run) % Case.allCases.count] }
            for benchCase in order {
                let (address, arguments): (String, [String]) = switch benchCase {
                case .bridge: ("172.30.1.\(run + 1)", ["--network", "bnet", "--ip", "172.30.1.\(run + 1)"])
                case .driver: ("10.60.1.\(run + 1)", ["--network", "tnet", "--ip", "10.60.1.\(run + 1)"])
                case .bottomUp: ("10.60.2.\(run + 1)", ["--net=none"] + variables + ["-e", "TRELLIS_IP=10.60.2.\(run + 1)"])
                case .null: ("10.70.1.\(run + 1)", ["--network", "nnet", "--ip", "10.70.1.\(run + 1)"])
                }
                if benchCase == .null { try null.prepareSpare() }
                let name = "c\(run)-\(benchCase)"
                let probe = try EchoProbe(in: probers[benchCase]!, target: try IPv4Address.parse(address, field: "address"))
                let start = Date().timeIntervalSince1970
                _ = try sh(docker + ["run", "-d", "--name", name] + arguments + ["trellis/busybox", "sleep", "1000000"])
                returned[benchCase, default: []].append((Date().timeIntervalSince1970 - start) * 1000)
                probe.start(timeout: 10)
                if let answered = probe.wait() {
                    samples[benchCase, default: []].append((answered - start) * 1000)
                } else {
                    lost[benchCase, default: 0] += 1
                }
                _ = try sh(docker + ["rm", "-f", name])
            }
        }
        let baseline = median(samples[.bridge] ?? [])
        for benchCase in Case.allCases {
            var values = Samples()
            for value in samples[benchCase] ?? [] { values.add(value) }
            print(String(format: "  %@: p50 %.0f ms, p99 %.0f ms, median %.2f × the bridge's (docker run returned at p50 %.0f ms)%@",
                         benchCase.rawValue, values.percentile(50), values.percentile(99), median(samples[benchCase] ?? []) / baseline,
                         median(returned[benchCase] ?? []),
                         lost[benchCase].map { ", \($0) never answered within 10 s" } ?? ""))
        }
        let log = (try? String(contentsOfFile: "\(lab.directory)/h1.log", encoding: .utf8)) ?? ""
        var afterStart = Samples()
        for line in log.split(separator: "\n") where line.contains("ms after its start event") {
            if let value = line.split(separator: " ").reversed().dropFirst(5).first.flatMap({ Double($0) }) { afterStart.add(value) }
        }
        print(String(format: "  bottom-up: interface attached %.1f ms (p50), %.1f ms (p99) after the engine's start event"
                         + " (agent log, %d containers)",
                     afterStart.percentile(50), afterStart.percentile(99), afterStart.values.count))
    }
}
