import Foundation
import Glibc
import Testing
import TrellisClient
import TrellisModel
import TrellisNetlink
import TrellisNetlinkWire
import TrellisTestSupport

/// A lab brought up with the real binary; it and the test's container namespaces are removed at the end.
final class RunningLab: @unchecked Sendable {
    let directory: URL
    private(set) var containers: [String] = []

    init(hosts: Int, controllers: Int = 1, docker: Bool = false) async throws {
        directory = try makeTemporaryDirectory()
        let up = try await runTrellis(["lab", "up", "--hosts", String(hosts), "--controllers", String(controllers), "--dir", directory.path,
                                       "--datapath", testDatapath] + (docker ? ["--docker"] : []), environment: [:])
        guard up.status == 0 else { throw TrellisError(.unavailable, "lab up failed: \(up.stderr)\(up.stdout)") }
    }

    var token: String { (try? String(contentsOf: directory.appendingPathComponent("admin.token"),
                                     encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "" }
    func pid(_ name: String) -> Int32 { Int32((try? String(contentsOf: directory.appendingPathComponent("\(name).pid"),
                                                           encoding: .utf8)) ?? "") ?? 0 }

    /// `trellis lab exec HOST -- trellis ARGS…`
    @discardableResult
    func trellis(on host: String, _ arguments: String...) async throws -> CommandResult {
        let result = try await runTrellis(["lab", "exec", "--dir", directory.path, host, "--", trellisExecutable()] + arguments,
                                          environment: [:])
        #expect(result.status == 0, "trellis \(arguments.joined(separator: " ")) on \(host): \(result.stderr)")
        return result
    }

    /// Makes a subnet and its enterprise, domain and zone, through host h1.
    func makeSubnet(_ path: String, cidr: String, dhcp: Bool = false) async throws {
        let parts = path.split(separator: "/").map(String.init)
        try await trellis(on: "h1", "enterprise", "create", parts[0])
        try await trellis(on: "h1", "domain", "create", parts[0...1].joined(separator: "/"))
        try await trellis(on: "h1", "zone", "create", parts[0...2].joined(separator: "/"))
        if dhcp {
            try await trellis(on: "h1", "subnet", "create", path, "--cidr", cidr, "--dhcp")
        } else {
            try await trellis(on: "h1", "subnet", "create", path, "--cidr", cidr)
        }
    }

    func container(_ name: String) throws -> NetworkNamespace {
        let full = "trlab-\(name)-\(UInt16.random(in: 0...UInt16.max))"
        containers.append(full)
        return try NetworkNamespace.create(named: full)
    }

    /// Starts a stopped process of the lab again with `trellis lab start`.
    func restart(_ name: String) async throws {
        let result = try await runTrellis(["lab", "start", "--dir", directory.path, name], environment: [:])
        #expect(result.status == 0, "lab start \(name): \(result.stderr)")
    }

    /// Stops a process with SIGTERM and checks that it ends by itself within 5 s.
    func stop(_ name: String) {
        let pid = pid(name)
        kill(pid, SIGTERM)
        for _ in 0..<50 where kill(pid, 0) == 0 { usleep(100_000) }
        #expect(kill(pid, 0) != 0, "\(name) did not stop on SIGTERM")
        kill(pid, SIGKILL)
    }

    deinit {
        let down = Process()
        down.executableURL = URL(fileURLWithPath: trellisExecutable())
        down.arguments = ["lab", "down", "--dir", directory.path]
        try? down.run()
        down.waitUntilExit()
        for name in containers { try? NetworkNamespace.delete(named: name) }
        try? FileManager.default.removeItem(at: directory)
    }
}

func ping(from namespace: NetworkNamespace, _ address: String, count: Int = 2, extra: [String] = []) throws -> (status: Int32,
    output: String) {
    try runProgram(["/usr/bin/nsenter", "--net=\(namespace.path)", "/usr/bin/ping", "-c", String(count), "-W", "1"] + extra + [address])
}

/// Waits until something in the namespace at `path` listens on TCP `port` (a listener just started may
/// take a while on a loaded machine); false if nothing does within five seconds.
func listening(in path: String, port: Int) async throws -> Bool {
    for _ in 0..<250 {
        let sockets = try runProgram(["/usr/bin/nsenter", "--net=\(path)", "/usr/bin/ss", "-Hltn", "sport = :\(port)"])
        if sockets.status == 0 && !sockets.output.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty { return true }
        try await Task.sleep(for: .milliseconds(20))
    }
    return false
}

@Suite(.enabled(if: getuid() == 0 && FileManager.default.fileExists(atPath: "/usr/bin/ping"), "needs root and ping"), .serialized)
struct LabTests {
    @Test func twoHostsOneSubnetSurviveAgentAndControllerRestarts() async throws {
        let lab = try await RunningLab(hosts: 2)
        let status = try await runTrellis(["lab", "status", "--dir", lab.directory.path], environment: [:])
        #expect(status.stdout.contains("h1") && status.stdout.contains("10.255.0.2") && status.stdout.contains("yes"))
        #expect(!(try runProgram(["/usr/sbin/ip", "-o", "addr"]).output.contains("10.255.0.")), "no lab address in the root namespace")

        try await lab.makeSubnet("acme/app1/web/red", cidr: "192.168.10.0/24")
        let c1 = try lab.container("c1"), c2 = try lab.container("c2")
        try await lab.trellis(on: "h1", "attach", "--subnet", "acme/app1/web/red", "--netns", c1.path, "--name", "web1")
        let attached = try await lab.trellis(on: "h2", "attach", "--subnet", "acme/app1/web/red", "--netns", c2.path, "--name", "web2",
                                             "-o", "json")
        let web2 = try JSONCoding.decoder().decode(Endpoint.self, from: Data(attached.stdout.utf8))
        #expect(web2.host == "h2" && web2.state == .up && web2.externalIds["iface-id"] == web2.interface)

        // Across hosts, at full size with DF set (MTU 1450 in the overlay), and the local anycast gateway.
        #expect(try ping(from: c1, web2.ip.description).status == 0)
        #expect(try ping(from: c1, web2.ip.description, count: 1, extra: ["-M", "do", "-s", "1422"]).status == 0)
        #expect(try ping(from: c1, web2.ip.description, count: 1, extra: ["-M", "do", "-s", "1423"]).status != 0)
        #expect(try ping(from: c1, "192.168.10.1", count: 1).status == 0)
        // TCP across hosts: a message sent with nc arrives.
        let listener = Process()
        listener.executableURL = URL(fileURLWithPath: "/usr/bin/nsenter")
        listener.arguments = ["--net=\(c2.path)", "/usr/bin/nc", "-l", "-p", "8080"]
        let received = Pipe()
        listener.standardOutput = received
        try listener.run()
        #expect(try await listening(in: c2.path, port: 8080))
        let sender = Process()
        sender.executableURL = URL(fileURLWithPath: "/usr/bin/nsenter")
        sender.arguments = ["--net=\(c1.path)", "/usr/bin/nc", "-N", "-w", "2", web2.ip.description, "8080"]
        let input = Pipe()
        sender.standardInput = input
        try sender.run()
        input.fileHandleForWriting.write(Data("hello over tcp\n".utf8))
        try input.fileHandleForWriting.close()
        sender.waitUntilExit()
        listener.waitUntilExit()
        #expect(String(decoding: received.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self) == "hello over tcp\n")
        let listed = try await lab.trellis(on: "h1", "endpoint", "list")
        #expect(listed.stdout.contains("trv") && listed.stdout.contains(" up "))

        // The agent of h1 is killed and started again while 100 pings a second flow: none is lost.
        let flow = Task { try ping(from: c1, web2.ip.description, count: 300, extra: ["-i", "0.01"]) }
        try await Task.sleep(for: .milliseconds(500))
        lab.stop("h1")
        try await lab.restart("h1")
        let during = try await flow.value
        #expect(during.output.contains("300 received"), "\(during.output.split(separator: "\n").suffix(2))")

        // The controller goes away: forwarding goes on; when it is back, a new endpoint converges.
        lab.stop("controller")
        #expect(try ping(from: c1, web2.ip.description).status == 0)
        try await lab.restart("controller")
        try await Task.sleep(for: .milliseconds(500))
        let c3 = try lab.container("c3")
        var converged = false
        for _ in 0..<50 where !converged {
            let result = try await runTrellis(["lab", "exec", "--dir", lab.directory.path, "h2", "--", trellisExecutable(), "attach",
                                               "--subnet", "acme/app1/web/red", "--netns", c3.path, "--name", "web3"], environment: [:])
            converged = result.status == 0
            if !converged { try await Task.sleep(for: .milliseconds(200)) }
        }
        #expect(converged)
        var reached = false
        for _ in 0..<20 where !reached {
            reached = try ping(from: c1, "192.168.10.4", count: 1).status == 0
        }
        #expect(reached, "a new endpoint on h2 is reachable from h1 after the controller returned")

        // Detach: the port is gone on h2, its FDB and neighbour entries on h1, and its address is free.
        try await lab.trellis(on: "h2", "detach", "acme/app1/web/red/web2")
        #expect(try RouteNetlink(in: c2).link(named: "eth0") == nil)
        var clean = false
        var left = ""
        for _ in 0..<50 where !clean {
            let fdb = try runProgram(["/usr/sbin/bridge", "-n", "trellis-h1-d1", "fdb", "show"]).output
            let neighbours = try runProgram(["/usr/sbin/ip", "-n", "trellis-h1-d1", "neigh", "show", "nud", "permanent"]).output
            clean = !fdb.contains(web2.mac.description) && !neighbours.contains(web2.ip.description)
            left = fdb.split(separator: "\n").filter { $0.contains(web2.mac.description) }.joined(separator: "; ") + " | " + neighbours
            if !clean { try await Task.sleep(for: .milliseconds(100)) }
        }
        let log = (try? String(contentsOf: lab.directory.appendingPathComponent("h1.log"), encoding: .utf8)) ?? ""
        #expect(clean,
                "h1 still forwards to the detached endpoint: \(left)\n\(log.split(separator: "\n").suffix(6).joined(separator: "\n"))")
        let usage = try await lab.trellis(on: "h1", "subnet", "show", "acme/app1/web/red")
        #expect(usage.stdout.contains("2 used of 253"))
        try await lab.trellis(on: "h1", "attach", "--subnet", "acme/app1/web/red", "--netns", c2.path, "--name", "again", "--ip",
                              web2.ip.description)
    }

    @Test func subnetsRouteAsPoliciesAllowAndDomainsNeverMeet() async throws {
        let lab = try await RunningLab(hosts: 2)
        for arguments in [["enterprise", "create", "acme"], ["enterprise", "create", "globex"], ["domain", "create", "acme/app1"],
                          ["domain", "create", "globex/app1"], ["zone", "create", "acme/app1/web"], ["zone", "create", "acme/app1/db"],
                          ["zone", "create", "globex/app1/web"],
                          ["subnet", "create", "acme/app1/web/red", "--cidr", "192.168.10.0/24"],
                          ["subnet", "create", "acme/app1/db/blue", "--cidr", "192.168.20.0/24"],
                          ["subnet", "create", "globex/app1/web/red", "--cidr", "192.168.10.0/24"]] {
            _ = try await runTrellis(["lab", "exec", "--dir", lab.directory.path, "h1", "--", trellisExecutable()] + arguments,
                                     environment: [:])
        }
        let red1 = try lab.container("red1"), blue2 = try lab.container("blue2")
        let other1 = try lab.container("other1"), other2 = try lab.container("other2")
        try await lab.trellis(on: "h1", "attach", "--subnet", "acme/app1/web/red", "--netns", red1.path, "--ip", "192.168.10.5")
        try await lab.trellis(on: "h2", "attach", "--subnet", "acme/app1/db/blue", "--netns", blue2.path, "--ip", "192.168.20.5")
        try await lab.trellis(on: "h1", "attach", "--subnet", "globex/app1/web/red", "--netns", other1.path, "--ip", "192.168.10.6")
        try await lab.trellis(on: "h2", "attach", "--subnet", "globex/app1/web/red", "--netns", other2.path, "--ip", "192.168.10.7")

        // Subnets are isolated until a policy joins them; then routed across hosts, both ways.
        #expect(try ping(from: red1, "192.168.20.5", count: 1).status != 0, "isolated by default")
        try await lab.trellis(on: "h1", "policy", "create", "acme/app1/web-db")
        try await lab.trellis(on: "h1", "policy", "rule", "add", "acme/app1/web-db",
                              "allow any from acme/app1/web/red to acme/app1/db/blue")
        try await lab.trellis(on: "h1", "policy", "rule", "add", "acme/app1/web-db",
                              "allow icmp from acme/app1/db/blue to acme/app1/web/red")
        #expect(try ping(from: red1, "192.168.20.5").status == 0)
        #expect(try ping(from: blue2, "192.168.10.5").status == 0)
        // The other enterprise's pair, in the same CIDR, talks across hosts…
        #expect(try ping(from: other1, "192.168.10.7").status == 0)
        // …and never meets acme's: not by ping, not by TCP.
        #expect(try ping(from: red1, "192.168.10.7", count: 1).status != 0)
        #expect(try ping(from: other2, "192.168.10.5", count: 1).status != 0)
        #expect(try ping(from: other2, "192.168.20.5", count: 1).status != 0)
        let listener = Process()
        listener.executableURL = URL(fileURLWithPath: "/usr/bin/nsenter")
        listener.arguments = ["--net=\(blue2.path)", "/usr/bin/nc", "-l", "-p", "5432"]
        listener.standardOutput = FileHandle.nullDevice
        try listener.run()
        defer { kill(listener.processIdentifier, SIGKILL); listener.waitUntilExit() }
        #expect(try await listening(in: blue2.path, port: 5432))
        let foreign = try runProgram(["/usr/bin/nsenter", "--net=\(other1.path)", "/usr/bin/nc", "-z", "-w", "1", "192.168.20.5", "5432"])
        #expect(foreign.status != 0, "TCP across domains")
        let own = try runProgram(["/usr/bin/nsenter", "--net=\(red1.path)", "/usr/bin/nc", "-v", "-z", "-w", "2", "192.168.20.5", "5432"])
        #expect(own.status == 0, "TCP between subnets of one domain: \(own.output)")
    }

    @Test(.enabled(if: FileManager.default.fileExists(atPath: "/bin/busybox"), "needs busybox for udhcpc"))
    func containersGetTheControllersAddressesByDHCP() async throws {
        let lab = try await RunningLab(hosts: 2)
        try await lab.makeSubnet("acme/app1/web/dyn", cidr: "192.168.40.0/24", dhcp: true)
        let script = lab.directory.appendingPathComponent("udhcpc.sh")
        try "#!/bin/sh\necho \"$1 ip=$ip mask=$mask router=$router mtu=$mtu\"\n".write(to: script, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: script.path)
        for (host, name) in [("h1", "d1"), ("h2", "d2")] {
            let container = try lab.container(name)
            let made = try await lab.trellis(on: host, "attach", "--subnet", "acme/app1/web/dyn", "--netns", container.path, "--name", name,
                                             "-o", "json")
            let endpoint = try JSONCoding.decoder().decode(Endpoint.self, from: Data(made.stdout.utf8))
            let addresses = try RouteNetlink(in: container).addresses().filter { $0.prefixLength == 24 }
            #expect(addresses.isEmpty, "on a DHCP subnet attach leaves the address to DHCP")
            var lease = ""
            for _ in 0..<3 where !lease.contains("bound") {
                lease = try runProgram(["/usr/bin/nsenter", "--net=\(container.path)", "/bin/busybox", "udhcpc", "-i", "eth0", "-n", "-q",
                                        "-f",
                                        "-t", "3", "-T", "1", "-s", script.path]).output
            }
            #expect(lease.contains("bound ip=\(endpoint.ip) mask=24 router=192.168.40.1 mtu=1450"), "\(host): \(lease)")
        }
    }

    @Test func aVMTapAndAContainerShareASubnet() async throws {
        let lab = try await RunningLab(hosts: 1)
        try await lab.makeSubnet("acme/app1/web/red", cidr: "192.168.10.0/24")
        let c1 = try lab.container("c1")
        let made = try await lab.trellis(on: "h1", "attach", "--subnet", "acme/app1/web/red", "--netns", c1.path, "--name", "web1", "-o",
                                         "json")
        let container = try JSONCoding.decoder().decode(Endpoint.self, from: Data(made.stdout.utf8))
        let vmMade = try await lab.trellis(on: "h1", "attach", "--subnet", "acme/app1/web/red", "--vm", "--name", "vm1", "--tap", "tap-vm1",
                                           "-o", "json")
        let vm = try JSONCoding.decoder().decode(Endpoint.self, from: Data(vmMade.stdout.utf8))
        #expect(vm.kind == .vm && vm.interface == "tap-vm1" && vm.state == .up)
        #expect(vm.externalIds["tap"] == nil && container.externalIds["netns"] == nil && container.externalIds["ifname"] == nil,
                "how a port is plugged stays on its host: \(vm.externalIds), \(container.externalIds)")
        let router = try NetworkNamespace(named: try #require(vm.externalIds["router-netns"]))

        // The test plays the VM: it opens the tap as QEMU would and speaks ARP on it.
        let fd = try router.openTap(named: "tap-vm1")
        defer { close(fd) }
        /// Reads frames until one matches, writing `send` (if any) every 250 ms meanwhile, as a VM retries ARP:
        /// the kernel may take up to a second to see the tap's carrier come up once it is opened.
        func frames(sending send: [UInt8]? = nil, until match: ([UInt8]) -> Bool) -> Bool {
            var buffer = [UInt8](repeating: 0, count: 2048)
            for attempt in 0..<40 {
                if let send, attempt % 5 == 0 { _ = send.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) } }
                var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                guard poll(&poller, 1, 50) > 0 else { continue }
                let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if count > 0, match(Array(buffer[0..<count])) { return true }
            }
            return false
        }
        let ask = ARPFrame.request(mac: vm.mac, ip: vm.ip, target: container.ip)
        #expect(frames(sending: ask) { ARPFrame.parse($0).map { $0.operation == 2 && $0.senderIP == container.ip
            && $0.senderMAC == container.mac } ?? false },
                "the container answers the VM")
        let pinger = Process()
        pinger.executableURL = URL(fileURLWithPath: "/usr/bin/nsenter")
        pinger.arguments = ["--net=\(c1.path)", "/usr/bin/ping", "-c", "3", "-W", "1", vm.ip.description]
        pinger.standardOutput = FileHandle.nullDevice
        try pinger.run()
        defer { pinger.waitUntilExit() }
        // The container learnt the VM's MAC from its request, so it may send IPv4 at once rather than ask.
        let vmIP = [UInt8(vm.ip.value >> 24), UInt8(vm.ip.value >> 16 & 0xff), UInt8(vm.ip.value >> 8 & 0xff), UInt8(vm.ip.value & 0xff)]
        #expect(frames { frame in
            guard frame.count >= 34, Array(frame[6..<12]) == container.mac.bytes else { return false }
            let asks = ARPFrame.parse(frame).map { $0.operation == 1 && $0.targetIP == vm.ip } ?? false
            return asks || (frame[12] == 0x08 && frame[13] == 0x00 && Array(frame[30..<34]) == vmIP)
        }, "the container's traffic for the VM arrives on the tap")

        try await lab.trellis(on: "h1", "detach", vm.path)
        #expect(try RouteNetlink(in: router).link(named: "tap-vm1") == nil, "detach removes the tap")
    }

    @Test func aFailedAttachLeavesNothingBehind() async throws {
        let lab = try await RunningLab(hosts: 1)
        try await lab.makeSubnet("acme/app1/web/red", cidr: "192.168.10.0/24")
        let c1 = try lab.container("c1")
        // The interface name is taken inside the namespace: the kernel refuses, and the attach is undone.
        let inside = try RouteNetlink(in: c1)
        try inside.createLink(LinkSpec(name: "eth0", kind: .bridge))
        let failed = try await runTrellis(["lab", "exec", "--dir", lab.directory.path, "h1", "--", trellisExecutable(), "attach",
                                           "--subnet", "acme/app1/web/red", "--netns", c1.path, "--name", "web1"], environment: [:])
        #expect(failed.status != 0 && failed.stderr.contains("File exists"), "\(failed.stderr)")
        let endpoints = try await lab.trellis(on: "h1", "endpoint", "list", "-o", "json")
        #expect(endpoints.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "[\n\n]" || !endpoints.stdout.contains("web1"))
        let usage = try await lab.trellis(on: "h1", "subnet", "show", "acme/app1/web/red")
        #expect(usage.stdout.contains("0 used of 253"), "the address was released")
        let ports = try runProgram(["/usr/sbin/ip", "-n", "trellis-h1-d1", "-o", "link", "show"]).output
        #expect(!ports.contains("trv"), "no half-made port")
        let missing = try await runTrellis(["lab", "exec", "--dir", lab.directory.path, "h1", "--", trellisExecutable(), "attach",
                                            "--subnet", "acme/app1/web/red", "--netns", "/run/netns/does-not-exist"], environment: [:])
        #expect(missing.status != 0 && missing.stderr.contains("cannot open the network namespace"))
    }
}
