import Foundation
import Glibc
import Testing
import TrellisAgent
import TrellisModel
import TrellisNetlink
import TrellisTestSupport

extension LabTests {
    /// `trellis explain --verify` has the agent of the source's host send one traced packet from its container, through
    /// the controller, and shows the kernel's verdict next to the computed one: both deny web → db before a policy and
    /// allow it after (the destination answering), and a drop rule put into the router namespace by hand, which the
    /// controller knows nothing of, is reported loudly with exit status 3. The tracing tables are gone afterwards.
    @Test func explainVerifyHoldsTheComputedVerdictAgainstTheKernel() async throws {
        let lab = try await RunningLab(hosts: 2)
        try await lab.makeSubnet("acme/app1/web/red", cidr: "10.8.1.0/24")
        try await lab.trellis(on: "h1", "zone", "create", "acme/app1/db")
        try await lab.trellis(on: "h1", "subnet", "create", "acme/app1/db/blue", "--cidr", "10.8.2.0/24")
        _ = try await lab.member("web1", on: "h1", subnet: "acme/app1/web/red", ip: "10.8.1.11")
        let db = try await lab.member("db1", on: "h2", subnet: "acme/app1/db/blue", ip: "10.8.2.11")
        try await lab.settle(hosts: 2)
        let listener = Process()
        listener.executableURL = URL(fileURLWithPath: "/usr/bin/nsenter")
        listener.arguments = ["--net=\(db.namespace.path)", "/usr/bin/nc", "-lk", "-p", "5432"]
        try listener.run()
        defer { kill(listener.processIdentifier, SIGKILL); listener.waitUntilExit() }
        func verify() async throws -> CommandResult {
            try await runTrellis(["lab", "exec", "--dir", lab.directory.path, "h1", "--", trellisExecutable(), "explain",
                                  "acme/app1/web/red/web1", "acme/app1/db/blue/db1", "tcp/5432", "--verify"], environment: [:])
        }

        let isolated = try await verify()
        #expect(isolated.status == 0 && isolated.stdout.contains("DENIED") && isolated.stdout.contains("kernel: DENIED, no answer")
                && isolated.stdout.contains("inet trellis forward") && isolated.stdout.contains("drop"),
                "\(isolated.stdout)\(isolated.stderr)")

        try await lab.trellis(on: "h1", "policy", "create", "acme/app1/web-to-db",
                              "--rule", "allow tcp from acme/app1/web to acme/app1/db port 5432")
        try await lab.settle(hosts: 2)
        let allowed = try await verify()
        #expect(allowed.status == 0 && allowed.stdout.contains("kernel: ALLOWED, answered")
                && allowed.stdout.contains("5432 } ct mark set"), "\(allowed.stdout)\(allowed.stderr)")

        let domain: Domain = try await lab.controller.get("/api/v1/domains/acme/app1")
        let router = "\(NetworkNamespace.namedDirectory)/\(KernelNames.routerNamespace(host: "h1", domainID: domain.id))"
        let rogue = "table inet rogue { chain f { type filter hook forward priority -50; policy accept; tcp dport 5432 drop; }; }"
        #expect(try runProgram(["/usr/bin/nsenter", "--net=\(router)", "/usr/sbin/nft", rogue]).status == 0)
        let disagreeing = try await verify()
        #expect(disagreeing.status == 3 && disagreeing.stderr.contains("THE KERNEL DISAGREES: computed allow, the kernel did deny")
                && disagreeing.stdout.contains("inet rogue f"), "\(disagreeing.stdout)\(disagreeing.stderr)")
        let tables = try runProgram(["/usr/bin/nsenter", "--net=\(router)", "/usr/sbin/nft", "list", "tables"]).output
        #expect(!tables.contains("trellis_probe"), "the probe's tables are removed: \(tables)")

        // The probe is sent by the agent of the source's host, wherever the CLI runs: db1 is on h2.
        let remote = try await runTrellis(["lab", "exec", "--dir", lab.directory.path, "h1", "--", trellisExecutable(), "explain",
                                           "acme/app1/db/blue/db1", "acme/app1/web/red/web1", "tcp/80", "--verify"], environment: [:])
        #expect(remote.status == 0 && remote.stdout.contains("kernel: DENIED, no answer") && remote.stdout.contains("drop"),
                "\(remote.stdout)\(remote.stderr)")
        let address = try await runTrellis(["lab", "exec", "--dir", lab.directory.path, "h1", "--", trellisExecutable(), "explain",
                                            "acme/app1/web/red/web1", "10.8.2.0/24", "tcp/80", "--verify"], environment: [:])
        #expect(address.status != 0 && address.stderr.contains("to: the probe goes to one address"), "\(address.stderr)")
    }
}
