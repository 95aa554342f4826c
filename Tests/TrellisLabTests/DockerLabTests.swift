import Foundation
import Glibc
import Testing
import TrellisClient
import TrellisModel
import TrellisTestSupport

extension RunningLab {
    /// `docker ARGS…` against the engine of a lab host.
    @discardableResult
    func docker(on host: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
        try runProgram(["/usr/bin/docker", "-H", "unix://\(directory.path)/\(host)-docker/docker.sock"] + arguments)
    }

    @discardableResult
    func docker(on host: String, _ arguments: String...) throws -> (status: Int32, output: String) { try docker(on: host, arguments) }

    /// The endpoints the controller knows.
    func endpoints() async throws -> [Endpoint] {
        let client = ControllerClient(baseURL: ControllerClient.baseURL(socket: directory.appendingPathComponent("controller.sock").path),
                                      token: token)
        let listed: ListBody<Endpoint> = try await client.get("/api/v1/endpoints")
        return listed.items
    }

    /// Polls `check` for up to `seconds`.
    func eventually(_ seconds: Double = 10, _ check: () async throws -> Bool) async throws -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if try await check() { return true }
            try await Task.sleep(for: .milliseconds(100))
        }
        return try await check()
    }
}

/// The variables that put a container on acme/app1/web/red as alice.
let redAsAlice = ["-e", "TRELLIS_ENTERPRISE=acme", "-e", "TRELLIS_DOMAIN=app1", "-e", "TRELLIS_ZONE=web", "-e", "TRELLIS_SUBNET=red",
                  "-e", "TRELLIS_USER=alice"]
/// A shell line that waits (up to 5 s) for the container's interface to have its address.
let awaitAddress = "for i in $(seq 500); do ip -4 addr show eth0 2>/dev/null | grep -q inet && break; sleep 0.01; done; "
let dockerAvailable = FileManager.default.isExecutableFile(atPath: "/usr/sbin/dockerd")
    && FileManager.default.isExecutableFile(atPath: "/usr/bin/docker")

/// Docker tests share LabTests' suite: one lab runs at a time on a machine.
extension LabTests {
    /// The first seed's scenario, bottom-up: `docker run --net=none` with Trellis variables on host A serves
    /// HTTP that a container on host B reaches by address and by name, with no port mapping; ports come and
    /// go with their containers, across an agent restart, and refused containers get nothing.
    @Test(.enabled(if: dockerAvailable, "needs docker.io")) func dockerContainersJoinFromTheirVariables() async throws {
        let lab = try await RunningLab(hosts: 2, docker: true)
        try await lab.makeSubnet("acme/app1/web/red", cidr: "192.168.10.0/24")
        try await lab.trellis(on: "h1", "domain", "create", "acme/app2")
        try await lab.trellis(on: "h1", "zone", "create", "acme/app2/web")
        try await lab.trellis(on: "h1", "subnet", "create", "acme/app2/web/blue", "--cidr", "192.168.20.0/24")
        try await lab.trellis(on: "h1", "user", "create", "alice", "--enterprise", "acme")
        try await lab.trellis(on: "h1", "enterprise", "create", "globex")
        try await lab.trellis(on: "h1", "user", "create", "bob", "--enterprise", "globex")

        let web = try lab.docker(on: "h1", ["run", "-d", "--net=none", "--name", "web1"] + redAsAlice
                                 + ["trellis/busybox", "sh", "-c", "echo hello from web1 > /www/index.html; exec httpd -f -p 5000 -h /www"])
        #expect(web.status == 0, "\(web.output)")
        #expect(try await lab.eventually { try await lab.endpoints().contains { $0.name == "web1" && $0.state == .up } })
        let web1 = try #require(try await lab.endpoints().first { $0.name == "web1" })
        #expect(web1.host == "h1" && web1.externalIds["docker-container"] != nil && web1.owner == web1.externalIds["docker-container"])
        // Another domain's endpoint with a name: it must not resolve from app1.
        #expect(try lab.docker(on: "h2", "run", "-d", "--net=none", "--name", "hidden", "-e", "TRELLIS_ENTERPRISE=acme", "-e",
                               "TRELLIS_DOMAIN=app2",
                               "-e", "TRELLIS_ZONE=web", "-e", "TRELLIS_SUBNET=blue", "-e", "TRELLIS_USER=alice", "trellis/busybox",
                               "sleep", "600").status == 0)
        #expect(try await lab.eventually { try await lab.endpoints().contains { $0.name == "hidden" && $0.state == .up } })

        // From host B: by address, by short name and by full name; no port mapping anywhere.
        let client = try lab.docker(on: "h2", ["run", "--rm", "--net=none", "--name", "client1"] + redAsAlice + ["trellis/busybox", "sh",
            "-c",
            awaitAddress + "wget -q -O - http://\(web1.ip):5000/ && wget -q -O - http://web1:5000/"
                + " && wget -q -O - http://web1.red.app1:5000/"
            + " && cat /etc/resolv.conf && ! nslookup hidden && ! nslookup hidden.blue.app2 && echo names-of-app2-do-not-resolve"])
        #expect(client.status == 0, "\(client.output)")
        #expect(client.output.components(separatedBy: "hello from web1").count == 4, "\(client.output)")
        #expect(client.output.contains("nameserver 169.254.169.253") && client.output.contains("names-of-app2-do-not-resolve"),
                "\(client.output)")
        #expect(try lab.docker(on: "h1", "port", "web1").output.isEmpty, "no port mapping")
        // client1 ran with --rm: its port went with it.
        #expect(try await lab.eventually { try await !lab.endpoints().contains { $0.name == "client1" } })

        // Refused: a user of another enterprise, a missing variable, an unknown subnet, an address outside the subnet.
        let before = try await lab.endpoints().count
        let refusals: [(name: String, variables: [String], reason: String)] = [
            ("intruder", ["-e", "TRELLIS_ENTERPRISE=acme", "-e", "TRELLIS_DOMAIN=app1", "-e", "TRELLIS_ZONE=web", "-e",
                          "TRELLIS_SUBNET=red", "-e", "TRELLIS_USER=bob"], "as user bob"),
            ("nouser", ["-e", "TRELLIS_ENTERPRISE=acme", "-e", "TRELLIS_DOMAIN=app1", "-e", "TRELLIS_ZONE=web", "-e", "TRELLIS_SUBNET=red"],
             "TRELLIS_USER"),
            ("nosubnet", ["-e", "TRELLIS_ENTERPRISE=acme", "-e", "TRELLIS_DOMAIN=app1", "-e", "TRELLIS_ZONE=web", "-e",
                          "TRELLIS_SUBNET=nope", "-e", "TRELLIS_USER=alice"], "no subnet"),
            ("outside", redAsAlice + ["-e", "TRELLIS_IP=10.9.9.9"], "10.9.9.9"),
        ]
        for refusal in refusals {
            #expect(try lab.docker(on: "h1", ["run", "-d", "--net=none", "--name", refusal.name] + refusal.variables + ["trellis/busybox",
                "sleep", "600"]).status == 0)
        }
        for refusal in refusals {
            #expect(try await lab.eventually {
                try await lab.trellis(on: "h1", "events", "-o", "json").stdout.contains(refusal.reason)
            }, "the event log shows why \(refusal.name) was refused")
            #expect(try lab.docker(on: "h1", "exec", refusal.name, "ip", "-o", "link").output.split(separator: "\n").count == 1,
                    "only lo in \(refusal.name)")
        }
        let log = try String(contentsOf: lab.directory.appendingPathComponent("h1.log"), encoding: .utf8)
        #expect(log.contains("refused to attach") && log.contains("as user bob"))
        #expect(try await lab.endpoints().count == before, "nothing leaked")

        // The container stops: its port is removed and its address released.
        #expect(try lab.docker(on: "h1", "stop", "-t", "0", "web1").status == 0)
        #expect(try await lab.eventually { try await !lab.endpoints().contains { $0.name == "web1" } })

        // Agent restart: a container that started while the agent was down is attached when it is back;
        // one killed while it was down loses its port; one that ran throughout keeps its port untouched.
        #expect(try lab.docker(on: "h1", ["run", "-d", "--net=none", "--name", "steady"] + redAsAlice + ["trellis/busybox", "sleep",
            "600"]).status == 0)
        #expect(try lab.docker(on: "h1", ["run", "-d", "--net=none", "--name", "doomed"] + redAsAlice + ["trellis/busybox", "sleep",
            "600"]).status == 0)
        #expect(try await lab.eventually { try await lab.endpoints().filter { ["steady",
            "doomed"].contains($0.name) && $0.state == .up }.count == 2 })
        let steady = try #require(try await lab.endpoints().first { $0.name == "steady" })
        lab.stop("h1")
        #expect(try lab.docker(on: "h1", ["run", "-d", "--net=none", "--name", "latecomer"] + redAsAlice + ["trellis/busybox", "sleep",
            "600"]).status == 0)
        #expect(try lab.docker(on: "h1", "kill", "doomed").status == 0)
        try await lab.restart("h1")
        #expect(try await lab.eventually {
            let names = Set(try await lab.endpoints().filter { $0.state == .up }.map(\.name))
            return names.contains("latecomer") && !names.contains("doomed")
        })
        #expect(try await lab.endpoints().first { $0.name == "steady" }?.id == steady.id)
        let reach = try lab.docker(on: "h2", ["run", "--rm", "--net=none", "--name", "prober"] + redAsAlice + ["trellis/busybox", "sh",
            "-c",
            awaitAddress + "ping -c 1 -W 2 steady && ping -c 1 -W 2 latecomer"])
        #expect(reach.status == 0, "\(reach.output)")
    }
}

extension LabTests {
    /// Top-down: Docker networks of two engines on two hosts stand for one subnet; containers get the
    /// controller's addresses (never one twice), reach each other by name across hosts, join and leave
    /// with connect/disconnect, keep a static --ip; bad networks and addresses are refused with the reason.
    @Test(.enabled(if: dockerAvailable, "needs docker.io")) func dockerNetworksOfTwoEnginesShareASubnet() async throws {
        let lab = try await RunningLab(hosts: 2, docker: true)
        try await lab.makeSubnet("acme/app1/web/red", cidr: "192.168.10.0/24")
        try await lab.trellis(on: "h1", "subnet", "create", "acme/app1/web/green", "--cidr", "192.168.30.0/24")
        try await lab.trellis(on: "h1", "policy", "create", "acme/app1/open", "--rule",
                              "allow any from acme/app1/web/green to acme/app1/web/red")

        // Refused networks, each with a reason that names what to change.
        let noSubnetOption = try lab.docker(on: "h1", "network", "create", "-d", "trellis", "--ipam-driver", "trellis", "bad1")
        #expect(noSubnetOption.status != 0 && noSubnetOption.output.contains("trellis.subnet"), "\(noSubnetOption.output)")
        let wrongCIDR = try lab.docker(on: "h1", "network", "create", "-d", "trellis", "--ipam-driver", "trellis", "--subnet",
                                       "10.7.0.0/24",
                                       "-o", "trellis.subnet=acme/app1/web/red", "bad2")
        #expect(wrongCIDR.status != 0 && wrongCIDR.output.contains("does not agree"), "\(wrongCIDR.output)")
        let dockerIPAM = try lab.docker(on: "h1", "network", "create", "-d", "trellis", "-o", "trellis.subnet=acme/app1/web/red", "bad3")
        #expect(dockerIPAM.status != 0 && dockerIPAM.output.contains("--ipam-driver trellis"), "\(dockerIPAM.output)")
        let unknown = try lab.docker(on: "h1", "network", "create", "-d", "trellis", "--ipam-driver", "trellis", "-o",
                                     "trellis.subnet=acme/app1/web/nope", "bad4")
        #expect(unknown.status != 0 && unknown.output.contains("no subnet"), "\(unknown.output)")

        // The same subnet under one name on both engines: without --subnet on h1, with it on h2.
        #expect(try lab.docker(on: "h1", "network", "create", "-d", "trellis", "--ipam-driver", "trellis", "-o",
                               "trellis.subnet=acme/app1/web/red", "red").status == 0)
        #expect(try lab.docker(on: "h2", "network", "create", "-d", "trellis", "--ipam-driver", "trellis", "--subnet", "192.168.10.0/24",
                               "-o", "trellis.subnet=acme/app1/web/red", "red").status == 0)
        #expect(try lab.docker(on: "h2", "network", "create", "-d", "trellis", "--ipam-driver", "trellis", "--ipam-opt",
                               "trellis.subnet=acme/app1/web/green",
                               "-o", "trellis.subnet=acme/app1/web/green", "green").status == 0)

        // The web scenario across hosts, by name: db on h1, the app on h2 with a static address.
        #expect(try lab.docker(on: "h1", "run", "-d", "--network", "red", "--name", "db", "trellis/busybox", "sh", "-c",
                               "echo rows > /www/index.html; exec httpd -f -p 5432 -h /www").status == 0)
        let app = try lab.docker(on: "h2", "run", "--rm", "--network", "red", "--ip", "192.168.10.50", "--name", "app", "trellis/busybox",
                                 "sh", "-c",
                                 "ip -4 -o addr show eth0; wget -q -O - http://db:5432/ && wget -q -O - http://db.red.app1:5432/")
        #expect(app.status == 0 && app.output.contains("192.168.10.50/24") && app.output.components(separatedBy: "rows").count == 3,
                "\(app.output)")
        let db = try #require(try await lab.endpoints().first { $0.hostname == "db" })
        #expect(db.host == "h1" && db.state == .up && db.externalIds["docker-endpoint"] != nil)
        #expect(try await lab.eventually { try await !lab.endpoints().contains { $0.ip.description == "192.168.10.50" } },
                "--rm released the static address")

        // Two engines allocate from one pool: ten containers on each, no address twice.
        for index in 0..<10 {
            for host in ["h1", "h2"] {
                #expect(try lab.docker(on: host, "run", "-d", "--network", "red", "--name", "n\(host)\(index)", "trellis/busybox", "sleep",
                                       "600").status == 0)
            }
        }
        let addresses = try await lab.endpoints().filter { $0.subnet == "acme/app1/web/red" }.map(\.ip)
        #expect(addresses.count == 21 && Set(addresses).count == 21)
        let dockerSeen = try lab.docker(on: "h2", "inspect", "-f", "{{.NetworkSettings.Networks.red.IPAddress}}", "nh29").output
        #expect(addresses.map(\.description).contains(dockerSeen.trimmingCharacters(in: .whitespacesAndNewlines)))

        // connect and disconnect: a container of green joins red as a second interface, then leaves it.
        #expect(try lab.docker(on: "h2", "run", "-d", "--network", "green", "--name", "roamer", "trellis/busybox", "sleep",
                               "600").status == 0)
        #expect(try lab.docker(on: "h2", "network", "connect", "red", "roamer").status == 0)
        let joined = try lab.docker(on: "h2", "exec", "roamer", "sh", "-c", "ip -4 -o addr; ping -c 1 -W 2 db")
        #expect(joined.status == 0 && joined.output.contains("eth1") && joined.output.contains("192.168.30."), "\(joined.output)")
        #expect(try lab.docker(on: "h2", "network", "disconnect", "red", "roamer").status == 0)
        #expect(try !lab.docker(on: "h2", "exec", "roamer", "ip", "-o", "link").output.contains("eth1"))
        #expect(try await lab.eventually {
            try await lab.endpoints().filter { $0.externalIds["container-name"] == "roamer" }.map(\.subnet) == ["acme/app1/web/green"]
        })

        // A static address outside the subnet: refused, and nothing is left behind.
        let before = try await lab.endpoints().count
        let outside = try lab.docker(on: "h1", "run", "-d", "--network", "red", "--ip", "10.9.9.9", "--name", "stray", "trellis/busybox",
                                     "sleep", "600")
        #expect(outside.status != 0, "\(outside.output)")
        #expect(try await lab.endpoints().count == before)
        try lab.docker(on: "h1", "rm", "-f", "stray")

        // The agent restarts: the engine's network still works, since the controller keeps the mapping.
        lab.stop("h1")
        try await lab.restart("h1")
        try await Task.sleep(for: .milliseconds(500))
        let after = try lab.docker(on: "h1", "run", "--rm", "--network", "red", "--name", "afterwards", "trellis/busybox", "ping", "-c",
                                   "1", "-W", "2", "nh25")
        #expect(after.status == 0, "\(after.output)")

        // Containers and networks go: the controller forgets both.
        for index in 0..<10 {
            #expect(try lab.docker(on: "h1", "rm", "-f", "nh1\(index)").status == 0)
        }
        #expect(try lab.docker(on: "h1", "rm", "-f", "db").status == 0)
        #expect(try lab.docker(on: "h1", "network", "rm", "red").status == 0)
        let socket = lab.directory.appendingPathComponent("controller.sock").path
        let client = ControllerClient(baseURL: ControllerClient.baseURL(socket: socket), token: lab.token)
        let networks: ListBody<DockerNetwork> = try await client.get("/api/v1/docker-networks")
        #expect(networks.items.map(\.host).sorted() == ["h2", "h2"])
        #expect(try await lab.endpoints().filter { $0.host == "h1" }.isEmpty)
    }
}
