import Foundation
import Testing
import TrellisClient
import TrellisModel
import TrellisTestSupport

/// The real `trellis` binary against a real controller.
@Suite struct CLITests {
    func environment(_ controller: RunningController, token: String? = nil) -> [String: String] {
        ["TRELLIS_CONTROLLER": controller.url, "TRELLIS_TOKEN": token ?? controller.adminToken]
    }

    @discardableResult
    func trellis(_ controller: RunningController, _ arguments: String..., token: String? = nil) async throws -> CommandResult {
        let result = try await runTrellis(arguments, environment: environment(controller, token: token))
        #expect(result.status == 0, "trellis \(arguments.joined(separator: " ")): \(result.stderr)")
        return result
    }

    @Test func buildsATenantNetworkAndListsPorts() async throws {
        try await withController { controller in
            try await trellis(controller, "enterprise", "create", "acme")
            try await trellis(controller, "domain", "create", "acme/app1")
            try await trellis(controller, "zone", "create", "acme/app1/web")
            let subnet = try await trellis(controller, "subnet", "create", "acme/app1/web/red", "--cidr", "192.168.10.0/24",
                                           "--reserved", "192.168.10.2-192.168.10.9")
            #expect(subnet.stdout.contains("192.168.10.0/24") && subnet.stdout.contains("vni"))
            let _: HostRecord = try await controller.client().put("/api/v1/hosts/h1", HostRegistration(underlayIP: "10.99.0.1"))
            try await trellis(controller, "endpoint", "create", "acme/app1/web/red", "--name", "web1", "--host", "h1")
            try await trellis(controller, "endpoint", "create", "acme/app1/web/red", "--name", "vm1", "--kind", "vm", "--ip", "192.168.10.77")

            let table = try await trellis(controller, "endpoint", "list")
            let lines = table.stdout.split(separator: "\n")
            #expect(lines.count == 3)
            #expect(lines[0].hasPrefix("PATH") && lines[0].contains("HOST") && lines[0].contains("MAC") && lines[0].contains("STATE"))
            #expect(lines.contains { $0.contains("acme/app1/web/red/web1") && $0.contains("h1") && $0.contains("192.168.10.10") && $0.contains("pending") })

            let json = try await trellis(controller, "endpoint", "show", "acme/app1/web/red/vm1", "-o", "json")
            let object = try JSONCoding.decoder().decode(JSONValue.self, from: Data(json.stdout.utf8))
            for key in ["name", "subnet", "host", "ip", "mac", "state"] where key != "host" {
                #expect(object[key] != nil, "missing \(key)")
            }
            #expect(object["ip"]?.stringValue == "192.168.10.77" && object["kind"]?.stringValue == "vm")
            let list = try await trellis(controller, "endpoint", "list", "--host", "h1", "-o", "json")
            let items = try JSONCoding.decoder().decode([Endpoint].self, from: Data(list.stdout.utf8))
            #expect(items.map(\.name) == ["web1"] && items[0].host == "h1")

            let token = try await trellis(controller, "user", "create", "alice", "--enterprise", "acme")
            let aliceToken = token.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(aliceToken.hasPrefix("trl_"))
            let mine = try await trellis(controller, "subnet", "list", token: aliceToken)
            #expect(mine.stdout.contains("acme/app1/web/red"))

            try await trellis(controller, "profile", "create", "acme/limited", "--egress-rate", "10mbit", "--flow-stats")
            let rules = try await trellis(controller, "profile", "rule", "add", "acme/limited", "deny tcp port 22")
            #expect(rules.stdout.contains("deny tcp ingress port 22"))
            try await trellis(controller, "endpoint", "set", "acme/app1/web/red/web1", "--profile", "acme/limited")
            try await trellis(controller, "policy", "create", "acme/app1/open", "--rule", "allow icmp from acme/app1/web to any")
            let policy = try await trellis(controller, "policy", "rule", "add", "acme/app1/open", "allow tcp from 10.0.0.0/8 to acme/app1/web/red port 8000-8080")
            #expect(policy.stdout.contains("1  allow tcp from 10.0.0.0/8 to acme/app1/web/red port 8000-8080"))
            let hosts = try await trellis(controller, "host", "list")
            #expect(hosts.stdout.contains("h1") && hosts.stdout.contains("10.99.0.1"))

            let events = try await trellis(controller, "events", "--limit", "3")
            #expect(events.stdout.contains("created") || events.stdout.contains("updated"))
            try await trellis(controller, "endpoint", "delete", "acme/app1/web/red/vm1")
            let after = try await trellis(controller, "subnet", "show", "acme/app1/web/red")
            #expect(after.stdout.contains("1 used of 245"))
        }
    }

    @Test func errorsAreOneClearLineAndANonZeroExit() async throws {
        try await withController { controller in
            try await trellis(controller, "enterprise", "create", "acme")
            try await trellis(controller, "domain", "create", "acme/app1")
            try await trellis(controller, "zone", "create", "acme/app1/web")
            for (arguments, fragment) in [
                (["subnet", "create", "acme/app1/web/red", "--cidr", "192.168.10.5/24"], "did you mean 192.168.10.0/24"),
                (["subnet", "create", "acme/app1/red", "--cidr", "192.168.10.0/24"], "ENTERPRISE/DOMAIN/ZONE/SUBNET"),
                (["endpoint", "create", "acme/app1/web/blue", "--name", "x"], "no subnet"),
                (["enterprise", "create", "acme"], "already exists"),
                (["policy", "create", "acme/app1/p", "--rule", "permit all"], "must start with allow or deny"),
            ] {
                let result = try await runTrellis(arguments, environment: environment(controller))
                #expect(result.status != 0)
                let lines = result.stderr.split(separator: "\n")
                #expect(lines.count == 1 && lines[0].contains(fragment), "\(arguments): \(result.stderr)")
            }
            let unreachable = try await runTrellis(["enterprise", "list"], environment: ["TRELLIS_CONTROLLER": "http://127.0.0.1:1", "TRELLIS_TOKEN": "x"])
            #expect(unreachable.status != 0 && unreachable.stderr.contains("cannot reach the controller"))
            let badToken = try await runTrellis(["enterprise", "list"], environment: environment(controller, token: "trl_nope"))
            #expect(badToken.status != 0 && badToken.stderr.contains("token is not valid"))
        }
    }

    @Test func theControllerCommandServesAndWritesAPrivateAdminToken() async throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: trellisExecutable())
        let port = 20000 + Int.random(in: 0..<20000)
        let socket = "\(directory.path)/controller.sock"
        process.arguments = ["controller", "--listen", "127.0.0.1:\(port)", "--listen", "unix:\(socket)", "--store", "sqlite:\(directory.path)/state/t.db",
                             "--admin-token-file", "\(directory.path)/secret/admin.token"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        defer { process.terminate(); process.waitUntilExit() }
        let tokenPath = "\(directory.path)/secret/admin.token"
        var health: (status: Int, body: Data)?
        for _ in 0..<100 where health?.status != 200 {
            try await Task.sleep(for: .milliseconds(100))
            health = try? await ControllerClient(baseURL: "http://127.0.0.1:\(port)", token: nil).exchange("GET", "/healthz", body: nil)
        }
        #expect(health?.status == 200)
        let attributes = try FileManager.default.attributesOfItem(atPath: tokenPath)
        #expect((attributes[.posixPermissions] as? Int) == 0o600)
        let token = try String(contentsOfFile: tokenPath, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let list = try await runTrellis(["enterprise", "list"], environment: ["TRELLIS_CONTROLLER": "http://127.0.0.1:\(port)", "TRELLIS_TOKEN": token])
        #expect(list.status == 0 && list.stdout.hasPrefix("NAME"))
        let overSocket = try await runTrellis(["enterprise", "create", "viasocket"], environment: ["TRELLIS_CONTROLLER": "unix:\(socket)", "TRELLIS_TOKEN": token])
        #expect(overSocket.status == 0, "\(overSocket.stderr)")
        let seen = try await runTrellis(["enterprise", "list"], environment: ["TRELLIS_CONTROLLER": "http://127.0.0.1:\(port)", "TRELLIS_TOKEN": token])
        #expect(seen.stdout.contains("viasocket"), "one controller behind both addresses")
        process.terminate()
        process.waitUntilExit()
        #expect(process.terminationReason == .exit, "SIGTERM shuts the controller down cleanly")
    }
}
