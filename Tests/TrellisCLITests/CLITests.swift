import Foundation
import Testing
import TrellisClient
import TrellisModel
import TrellisTestSupport

/// The real `trellis` binary against a real controller.
@Suite struct CLITests {
    func environment(_ controller: RunningController, token: String? = nil) -> [String: String] {
        ["TRELLIS_CONTROLLER": controller.url, "TRELLIS_TOKEN": token ?? controller.adminToken, "TRELLIS_CA_FILE": controller.caFile]
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
            try await trellis(controller, "endpoint", "create", "acme/app1/web/red", "--name", "vm1", "--kind", "vm", "--ip",
                              "192.168.10.77")

            let table = try await trellis(controller, "endpoint", "list")
            let lines = table.stdout.split(separator: "\n")
            #expect(lines.count == 3)
            #expect(lines[0].hasPrefix("PATH") && lines[0].contains("HOST") && lines[0].contains("MAC") && lines[0].contains("STATE"))
            #expect(lines.contains { $0.contains("acme/app1/web/red/web1") && $0.contains("h1") && $0.contains("192.168.10.10")
                && $0.contains("pending") })

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
            let policy = try await trellis(controller, "policy", "rule", "add", "acme/app1/open",
                                           "allow tcp from 10.0.0.0/8 to acme/app1/web/red port 8000-8080")
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

    @Test func explainNamesTheDecidingRule() async throws {
        try await withController { controller in
            let admin = controller.client()
            let red = try await makeSubnet(admin, zone: "web", subnet: "red", cidr: "10.1.1.0/24")
            let green = try await makeSubnet(admin, zone: "db", subnet: "green", cidr: "10.1.2.0/24")
            let _: Endpoint = try await admin.post("/api/v1/endpoints", EndpointCreate(subnet: red, name: "web1"))
            let db: Endpoint = try await admin.post("/api/v1/endpoints", EndpointCreate(subnet: green, name: "db1"))
            try await trellis(controller, "policy", "create", "acme/app1/db-in", "--rule",
                              "allow tcp from acme/app1/web to acme/app1/db port 5432")

            let allowed = try await trellis(controller, "explain", "\(red)/web1", db.ip.description, "tcp/5432")
            let lines = allowed.stdout.split(separator: "\n")
            #expect(lines.first == "\(red)/web1 (10.1.1.2) → \(green)/db1 (10.1.2.2) tcp/5432: ALLOWED", "\(allowed.stdout)")
            #expect(lines.last?.contains("network-policy") == true && lines.last?.contains("[allow tcp from acme/app1/web") == true)
            let json = try await trellis(controller, "explain", "\(red)/web1", "\(green)/db1", "icmp", "-o", "json")
            let denied = try JSONCoding.decoder().decode(PolicyExplanation.self, from: Data(json.stdout.utf8))
            #expect(denied.verdict == .deny && denied.deciding?.stage == .isolation)
            let missingPort = try await runTrellis(["explain", "\(red)/web1", "\(green)/db1", "tcp"], environment: environment(controller))
            #expect(missingPort.status != 0 && missingPort.stderr.contains("port"))
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
            let unreachable = try await runTrellis(["enterprise", "list"], environment: ["TRELLIS_CONTROLLER": "http://127.0.0.1:1",
                                                                                         "TRELLIS_TOKEN": "x"])
            #expect(unreachable.status != 0 && unreachable.stderr.contains("cannot reach the controller"))
            let badToken = try await runTrellis(["enterprise", "list"], environment: environment(controller, token: "trl_nope"))
            #expect(badToken.status != 0 && badToken.stderr.contains("token is not valid"))
        }
    }

    /// The controller command from a fresh state directory: a private admin token, its own CA (0600 key),
    /// HTTPS on TCP (plain HTTP there is refused) and plain HTTP on its unix socket; the CLI verifies it
    /// by CA file or by the fingerprint the controller prints, and refuses a controller with another CA.
    @Test func theControllerCommandServesTLSAndWritesAPrivateAdminToken() async throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: trellisExecutable())
        let port = 20000 + Int.random(in: 0..<20000)
        let socket = "\(directory.path)/controller.sock"
        process.arguments = ["controller", "--listen", "127.0.0.1:\(port)", "--listen", "unix:\(socket)",
                             "--store", "sqlite:\(directory.path)/state/t.db", "--admin-token-file", "\(directory.path)/secret/admin.token"]
        let printed = Pipe()
        process.standardOutput = printed
        process.standardError = FileHandle.nullDevice
        try process.run()
        defer { process.terminate(); process.waitUntilExit() }
        let tokenPath = "\(directory.path)/secret/admin.token", caFile = "\(directory.path)/secret/tls/ca.pem"
        var health: (status: Int, body: Data)?
        for _ in 0..<100 where health?.status != 200 {
            try await Task.sleep(for: .milliseconds(100))
            guard FileManager.default.fileExists(atPath: caFile) else { continue }
            let trust = try ControllerTrust(caFile: caFile)
            let client = ControllerClient(baseURL: "https://127.0.0.1:\(port)", token: nil, trust: trust)
            health = try? await client.exchange("GET", "/healthz", body: nil)
        }
        #expect(health?.status == 200)
        #expect((try FileManager.default.attributesOfItem(atPath: tokenPath)[.posixPermissions] as? Int) == 0o600)
        let keyFile = "\(directory.path)/secret/tls/ca.key"
        #expect((try FileManager.default.attributesOfItem(atPath: keyFile)[.posixPermissions] as? Int) == 0o600)
        let token = try String(contentsOfFile: tokenPath, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let https = ["TRELLIS_CONTROLLER": "https://127.0.0.1:\(port)", "TRELLIS_TOKEN": token]
        let list = try await runTrellis(["enterprise", "list"], environment: https.merging(["TRELLIS_CA_FILE": caFile]) { $1 })
        #expect(list.status == 0 && list.stdout.hasPrefix("NAME"), "\(list.stderr)")
        let overSocket = try await runTrellis(["enterprise", "create", "viasocket"],
                                              environment: ["TRELLIS_CONTROLLER": "unix:\(socket)", "TRELLIS_TOKEN": token])
        #expect(overSocket.status == 0, "\(overSocket.stderr)")

        // The fingerprint the controller printed, and the CA it serves, are its CA file's.
        let pem = try String(contentsOfFile: caFile, encoding: .utf8)
        let der = try #require(Data(base64Encoded: pem.split(separator: "\n").filter { !$0.hasPrefix("-----") }.joined()))
        let fingerprint = SHA256.hex(bytes: Array(der))
        let pinned = try await runTrellis(["enterprise", "list"],
                                          environment: https.merging(["TRELLIS_CA_FINGERPRINT": "sha256:" + fingerprint]) { $1 })
        #expect(pinned.stdout.contains("viasocket"), "one controller behind both addresses: \(pinned.stderr)")
        let wrong = String(fingerprint.reversed())
        let impostor = try await runTrellis(["enterprise", "list"], environment: https.merging(["TRELLIS_CA_FINGERPRINT": wrong]) { $1 })
        #expect(impostor.status != 0 && impostor.stderr.contains("refusing"), "\(impostor.stderr)")
        let unverified = try await runTrellis(["enterprise", "list"], environment: https)
        #expect(unverified.status != 0 && unverified.stderr.contains("ca-file"), "\(unverified.stderr)")
        let plain = try await runTrellis(["enterprise", "list"],
                                         environment: ["TRELLIS_CONTROLLER": "http://127.0.0.1:\(port)", "TRELLIS_TOKEN": token])
        #expect(plain.status != 0 && !plain.stdout.contains("viasocket"), "plain HTTP on the TLS port: \(plain.stdout)")
        // A client holding another controller's CA does not trust this one.
        let stranger: Int? = try await withController { other in
            let client = ControllerClient(baseURL: "https://127.0.0.1:\(port)", token: token, trust: other.trust)
            return try? await rawRequest(client, "GET", "/healthz", body: nil).status
        }
        #expect(stranger == nil, "a client trusting another CA was answered")
        process.terminate()
        process.waitUntilExit()
        #expect(process.terminationReason == .exit, "SIGTERM shuts the controller down cleanly")
        let output = String(decoding: printed.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(output.contains("sha256:\(fingerprint)"), "\(output)")
    }

    /// An agent whose join token carries another CA's fingerprint refuses the controller before sending
    /// the token, so the token stays unspent, and stores nothing.
    @Test func anAgentGivenTheWrongFingerprintRefusesToConnect() async throws {
        try await withController { controller in
            let made: JoinToken = try await controller.client().post("/api/v1/join-tokens", JoinTokenCreate(ttlSeconds: 60, host: "hx"))
            let real = try JoinTokenText(parsing: made.token)
            #expect(real.caFingerprint == controller.caFingerprint)
            let forged = JoinTokenText(secret: real.secret, caFingerprint: String(try #require(real.caFingerprint).reversed()))
            let state = controller.directory.appendingPathComponent("agent").path
            let tokenFile = controller.directory.appendingPathComponent("join").path
            try forged.description.write(toFile: tokenFile, atomically: true, encoding: .utf8)
            let agent = try await runTrellis(["agent", "--controller", controller.url, "--join-token-file", tokenFile, "--state-dir", state,
                                              "--host", "hx", "--underlay-ip", "10.99.0.5", "--socket", "\(state)/agent.sock"],
                                             environment: [:])
            #expect(agent.status != 0 && agent.stderr.contains("refusing to talk to it"), "\(agent.stderr)")
            for left in ["credential", "ca.pem"] { #expect(!FileManager.default.fileExists(atPath: "\(state)/\(left)")) }
            let joined: HostCredential = try await controller.anonymousClient().post("/api/v1/join",
                                                                                     HostJoin(host: "hx", joinToken: made.token))
            #expect(joined.host == "hx")
        }
    }

    /// Plain HTTP on TCP is only for loopback, and only when asked for.
    @Test func plainHTTPIsRefusedBeyondLoopback() async throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let started = try await runTrellis(["controller", "--listen", "0.0.0.0:0", "--insecure-http",
                                            "--store", "sqlite:\(directory.path)/t.db",
                                            "--admin-token-file", "\(directory.path)/admin.token"],
                                           environment: [:])
        #expect(started.status != 0 && started.stderr.contains("insecure-http: plain HTTP is served on loopback only"), "\(started.stderr)")
    }
}

extension CLITests {
    /// A backup taken while the controller serves and creates go on is a store a new controller starts from:
    /// what was there at its revision is there, and allocation goes on without handing out an address twice.
    @Test(.disabled(if: testStoreIsEtcd, "an etcd store is backed up with etcd's snapshots"))
    func aBackupOfARunningStoreRestoresIntoANewController() async throws {
        let restored = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: restored) }
        let backup = restored.appendingPathComponent("trellis.db").path
        let (before, revision) = try await withController { controller in
            let client = controller.client()
            let _: HostRecord = try await client.put("/api/v1/hosts/h1", HostRegistration(underlayIP: "10.99.0.1"))
            let subnet = try await makeSubnet(client, cidr: "10.20.0.0/24")
            var made: [Endpoint] = []
            for index in 0..<5 {
                made.append(try await client.post("/api/v1/endpoints", EndpointCreate(subnet: subnet, name: "e\(index)", host: "h1")))
            }
            // Creates keep coming while the backup is taken.
            async let more: Void = {
                for index in 5..<25 {
                    let _: Endpoint = try await client.post("/api/v1/endpoints", EndpointCreate(subnet: subnet, name: "e\(index)"))
                }
            }()
            let store = "sqlite:\(controller.directory.path)/trellis.db"
            let result = try await runTrellis(["store", "backup", "--store", store, "--to", backup], environment: [:])
            try await more
            #expect(result.status == 0, "\(result.stderr)")
            let revision = try #require(Int(result.stdout.split(separator: " ").dropFirst(5).first ?? ""), "\(result.stdout)")
            try FileManager.default.copyItem(at: controller.directory.appendingPathComponent("admin.token"),
                                             to: restored.appendingPathComponent("admin.token"))
            return (made, revision)
        }
        let attributes = try FileManager.default.attributesOfItem(atPath: backup)
        #expect((attributes[.posixPermissions] as? Int) == 0o600)
        try await withController(directory: restored) { controller in
            let client = controller.client()
            let listed: ListBody<Endpoint> = try await client.get("/api/v1/endpoints?subnet=acme/app1/web/red")
            #expect(listed.revision == revision, "the restored store is at the backup's revision")
            #expect(Set(before.map(\.path)).isSubset(of: Set(listed.items.map(\.path))))
            let next: Endpoint = try await client.post("/api/v1/endpoints", EndpointCreate(subnet: "acme/app1/web/red", name: "after"))
            #expect(!listed.items.map(\.ip).contains(next.ip), "an address of the backup is not handed out again")
            #expect(next.revision == revision + 1)
            // An agent that had seen the old controller's later revisions gets the restored state, not a bookmark.
            var first: WatchMessage?
            try await client.stream("/api/v1/hosts/h1/desired?watch=1&since=\(revision + 40)") { (message: WatchMessage) in
                first = message
                return false
            }
            #expect(first?.type == .snapshot && first?.state?.endpoints.map(\.path).sorted() == before.map(\.path).sorted())
        }
        let missing = try await runTrellis(["store", "backup", "--store", "sqlite:/nonexistent/trellis.db", "--to", backup + "2"],
                                           environment: [:])
        #expect(missing.status != 0 && missing.stderr.contains("no store at /nonexistent/trellis.db"))
        #expect(!FileManager.default.fileExists(atPath: backup + "2"))
    }
}
