import Foundation
import Glibc
import Testing
import TrellisClient
import TrellisModel
import TrellisNetlink
import TrellisTestSupport

/// The repository this test was built from (scripts/, Tests/).
let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

let qemu = "/usr/bin/qemu-system-x86_64"
let dig = "/usr/bin/dig"

extension RunningLab {
    /// The lab's controller, with the admin token.
    var controller: ControllerClient {
        ControllerClient(baseURL: ControllerClient.baseURL(socket: directory.appendingPathComponent("controller.sock").path), token: token)
    }

    /// Attaches a new container namespace on `host` and returns it with its endpoint.
    func attach(_ name: String, on host: String, subnet: String) async throws -> (NetworkNamespace, Endpoint) {
        let container = try container(name)
        let made = try await trellis(on: host, "attach", "--subnet", subnet, "--netns", container.path, "--name", name, "-o", "json")
        return (container, try JSONCoding.decoder().decode(Endpoint.self, from: Data(made.stdout.utf8)))
    }
}

/// `dig ARGS…` inside `namespace`, against the domain's resolver.
func dig(in namespace: NetworkNamespace, _ arguments: String...) throws -> String {
    try runProgram(["/usr/bin/nsenter", "--net=\(namespace.path)", dig, "@169.254.169.253", "+time=3", "+tries=1"] + arguments).output
}

/// The records of dig's answer sections (of every query it made): (name, type, data) for each line.
func answers(_ output: String) -> [(name: String, type: String, data: String)] {
    output.components(separatedBy: ";; ANSWER SECTION:\n").dropFirst().flatMap { section in
        section.split(separator: "\n", omittingEmptySubsequences: false).prefix { !$0.isEmpty }.compactMap { line in
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            return fields.count >= 5 ? (String(fields[0]), String(fields[3]), String(fields[4])) : nil
        }
    }
}

extension LabTests {
    /// A fresh machine's /run (no mount on /run/netns), in a mount namespace of the test's own:
    /// scripts/up, twice, and scripts/down, mixed with `ip netns add`, leave nothing behind.
    @Test(.enabled(if: FileManager.default.fileExists(atPath: "/usr/bin/unshare"), "needs util-linux's unshare"))
    func aFreshMachineComesUpAndDownCleanly() throws {
        let script = repositoryRoot.appendingPathComponent("Tests/TrellisLabTests/fresh-machine.sh").path
        let run = try runProgram(["/usr/bin/unshare", "--mount", "--propagation", "private", "/bin/bash", script,
                                  trellisExecutable(), repositoryRoot.path])
        // Whatever happened inside, no process of it outlives the test.
        for line in run.output.split(separator: "\n") where line.hasPrefix("pid: ") {
            if let pid = Int32(line.dropFirst(5)) { kill(pid, SIGKILL) }
        }
        #expect(run.status == 0 && run.output.hasSuffix("fresh machine: clean\n"), "\(run.output)")
    }

    /// The seeds' main VM path: a real VM (qemu, Debian's kernel, busybox's udhcpc) on a DHCP subnet gets
    /// exactly the controller's address, gateway and MTU from its host, and talks to a container on another host.
    @Test(.enabled(if: FileManager.default.fileExists(atPath: qemu) && FileManager.default.fileExists(atPath: "/bin/busybox"),
                   "needs qemu-system-x86 and busybox-static"))
    func aRealVMGetsItsLeaseAndMeetsAContainerOnAnotherHost() async throws {
        let image = repositoryRoot.appendingPathComponent(".build/vm")
        let built = try runProgram([repositoryRoot.appendingPathComponent("scripts/vm-image").path, image.path])
        try #require(built.status == 0, "scripts/vm-image: \(built.output)")
        let lab = try await RunningLab(hosts: 2)
        try await lab.makeSubnet("acme/app1/web/dyn", cidr: "192.168.50.0/24", dhcp: true)

        // A container on h2 takes its lease with udhcpc, as in the DHCP test.
        let script = lab.directory.appendingPathComponent("lease.sh")
        try """
            #!/bin/sh
            [ "$1" = bound ] && ip addr add $ip/$mask dev $interface && ip route add default via $router
            echo "$1 ip=$ip"

            """.write(to: script, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: script.path)
        let (container, peer) = try await lab.attach("c2", on: "h2", subnet: "acme/app1/web/dyn")
        var lease = ""
        for _ in 0..<3 where !lease.contains("bound") {
            lease = try runProgram(["/usr/bin/nsenter", "--net=\(container.path)", "/bin/busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-f",
                                    "-t", "3", "-T", "1", "-s", script.path]).output
        }
        try #require(lease.contains("bound ip=\(peer.ip)"), "the container's lease: \(lease)")

        let made = try await lab.trellis(on: "h1", "attach", "--subnet", "acme/app1/web/dyn", "--vm", "--name", "vm1", "--tap", "tvm1",
                                         "-o", "json")
        let vm = try JSONCoding.decoder().decode(Endpoint.self, from: Data(made.stdout.utf8))
        let router = try #require(vm.externalIds["router-netns"])
        let console = lab.directory.appendingPathComponent("vm1.console")
        _ = FileManager.default.createFile(atPath: console.path, contents: nil)
        let machine = Process()
        machine.executableURL = URL(fileURLWithPath: "/usr/bin/nsenter")
        machine.arguments = ["--net=/run/netns/\(router)", qemu, "-accel", "tcg", "-m", "256", "-nodefaults", "-nographic", "-no-reboot",
                             "-serial", "stdio", "-kernel", image.appendingPathComponent("vmlinuz").path,
                             "-initrd", image.appendingPathComponent("initrd").path,
                             "-append", "console=ttyS0 quiet panic=-1 trellis.peer=\(peer.ip)",
                             "-netdev", "tap,id=n0,ifname=tvm1,script=no,downscript=no", "-device", "e1000,netdev=n0,mac=\(vm.mac)"]
        machine.standardOutput = try FileHandle(forWritingTo: console)
        machine.standardError = machine.standardOutput
        machine.standardInput = FileHandle.nullDevice
        try machine.run()
        defer {
            kill(machine.processIdentifier, SIGKILL)
            machine.waitUntilExit()
        }
        var output = ""
        for _ in 0..<240 where !output.contains("trellis-vm: ready") && machine.isRunning {
            try await Task.sleep(for: .milliseconds(500))
            output = (try? String(contentsOf: console, encoding: .utf8)) ?? ""
        }
        try #require(output.contains("trellis-vm: ready"), "the VM did not finish booting: \(output.suffix(2000))")
        #expect(output.contains("trellis-vm: lease ip=\(vm.ip) mask=24 router=192.168.50.1 mtu=1450 dns=169.254.169.253"),
                "the VM's lease is the controller's address: \(output.suffix(1500))")
        #expect(output.contains("trellis-vm: mtu 1450") && output.contains("trellis-vm: route default via 192.168.50.1 dev eth0"))
        #expect(output.contains("trellis-vm: peer \(peer.ip) answers"), "the VM pings the container on h2: \(output.suffix(1500))")
        let back = try ping(from: container, vm.ip.description, count: 3)
        #expect(back.status == 0, "the container on h2 pings the VM: \(back.output)")
    }

    /// The resolver as real clients use it: dig over UDP with EDNS, over TCP (several queries on one
    /// connection, and the retry after a truncated answer), reverse lookups, AAAA; glibc through a
    /// resolv.conf in the container's namespace, over UDP and TCP.
    @Test(.enabled(if: FileManager.default.fileExists(atPath: dig), "needs dig (bind9-dnsutils)"))
    func realResolversGetNamesOverUDPAndTCPAndBack() async throws {
        let lab = try await RunningLab(hosts: 2)
        try await lab.makeSubnet("acme/app1/web/red", cidr: "192.168.10.0/24")
        try await lab.trellis(on: "h1", "domain", "create", "acme/app2")
        try await lab.trellis(on: "h1", "zone", "create", "acme/app2/web")
        try await lab.trellis(on: "h1", "subnet", "create", "acme/app2/web/blue", "--cidr", "192.168.99.0/24")
        let (c1, web1) = try await lab.attach("web1", on: "h1", subnet: "acme/app1/web/red")
        let (_, db) = try await lab.attach("db", on: "h2", subnet: "acme/app1/web/red")
        let (_, hidden) = try await lab.attach("hidden", on: "h1", subnet: "acme/app2/web/blue")
        // Forty endpoints answer to one name: more A records than fit in 512 bytes.
        for index in 1...40 {
            let pooled = EndpointCreate(subnet: "acme/app1/web/red", name: "pool\(index)", host: "h2", hostname: "pool")
            let _: Endpoint = try await lab.controller.post("/api/v1/endpoints", pooled)
        }
        try await lab.settle(hosts: 2)

        let udp = try dig(in: c1, "db.red.app1")
        #expect(answers(udp).map(\.data) == [db.ip.description] && udp.contains("flags: qr aa rd") && udp.contains("status: NOERROR"),
                "\(udp)")
        #expect(udp.contains("; EDNS: version: 0, flags:; udp: 1232") && udp.contains("(UDP)"), "an EDNS answer over UDP: \(udp)")
        let tcp = try dig(in: c1, "+tcp", "db.red.app1")
        #expect(answers(tcp).map(\.data) == [db.ip.description] && tcp.contains("(TCP)"), "over TCP: \(tcp)")
        let kept = try dig(in: c1, "+tcp", "+keepopen", "db", "web1.red", "pool", "hidden.blue.app2")
        #expect(kept.components(separatedBy: "(TCP)").count == 5, "four answers on one connection: \(kept)")
        #expect(kept.contains("status: NXDOMAIN") && answers(kept).count == 1 + 1 + 40, "\(kept)")

        let reverse = try dig(in: c1, "-x", db.ip.description)
        #expect(answers(reverse).map { "\($0.type) \($0.data)" } == ["PTR db.red.app1."], "\(reverse)")
        let reverseTCP = try dig(in: c1, "+tcp", "-x", web1.ip.description)
        #expect(answers(reverseTCP).map(\.data) == ["web1.red.app1."], "\(reverseTCP)")
        let otherDomain = try dig(in: c1, "-x", hidden.ip.description)
        #expect(otherDomain.contains("status: NXDOMAIN"), "another domain's address has no name here: \(otherDomain)")
        let aaaa = try dig(in: c1, "AAAA", "db.red.app1")
        #expect(aaaa.contains("status: NOERROR") && aaaa.contains("ANSWER: 0,"), "AAAA is NODATA: \(aaaa)")

        let truncated = try dig(in: c1, "+noedns", "+ignore", "pool")
        #expect(truncated.contains("flags: qr aa tc rd") && answers(truncated).count < 40, "512 bytes cannot hold forty: \(truncated)")
        let retried = try dig(in: c1, "+noedns", "pool")
        #expect(retried.contains("Truncated, retrying in TCP mode") && answers(retried).count == 40, "dig retries over TCP: \(retried)")

        // An attacker in the container: more idle half-sent TCP queries than the resolver keeps, a framed
        // message that is no query, random datagrams. The resolver stays up and answers over both transports.
        let abuse = try runProgram(["/usr/bin/nsenter", "--net=\(c1.path)", "/usr/bin/python3",
                                    repositoryRoot.appendingPathComponent("Tests/TrellisLabTests/dns-abuse.py").path, "web1"])
        #expect(abuse.output == "garbage-closed=True udp=\(web1.ip) tcp=\(web1.ip)\n", "\(abuse.output)")

        // glibc's resolver, given the domain's resolver by a resolv.conf of the namespace (as `ip netns exec` binds it).
        let name = URL(fileURLWithPath: c1.path).lastPathComponent
        let etc = URL(fileURLWithPath: "/etc/netns/\(name)")
        let madeParent = !FileManager.default.fileExists(atPath: "/etc/netns")
        try FileManager.default.createDirectory(at: etc, withIntermediateDirectories: true)
        defer {
            try? FileManager.default.removeItem(at: etc)
            if madeParent { rmdir("/etc/netns") }
        }
        for options in ["", "options use-vc\n"] {
            let resolver = "nameserver 169.254.169.253\n\(options)"
            try resolver.write(to: etc.appendingPathComponent("resolv.conf"), atomically: true, encoding: .utf8)
            let forward = try runProgram(["/usr/sbin/ip", "netns", "exec", name, "getent", "hosts", "db.red.app1"])
            #expect(forward.status == 0 && forward.output.contains(db.ip.description), "getent hosts (\(options)): \(forward.output)")
            let short = try runProgram(["/usr/sbin/ip", "netns", "exec", name, "getent", "ahostsv4", "db"])
            #expect(short.status == 0 && short.output.hasPrefix(db.ip.description), "getent ahostsv4 (\(options)): \(short.output)")
            let back = try runProgram(["/usr/sbin/ip", "netns", "exec", name, "getent", "hosts", db.ip.description])
            #expect(back.status == 0 && back.output.contains("db.red.app1"), "getent hosts ADDRESS (\(options)): \(back.output)")
            let missing = try runProgram(["/usr/sbin/ip", "netns", "exec", name, "getent", "hosts", "hidden.blue.app2"])
            #expect(missing.status == 2, "another domain's name is unknown (\(options)): \(missing.output)")
        }
    }
}
