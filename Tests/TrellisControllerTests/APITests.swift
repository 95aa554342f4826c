import Foundation
import Testing
import TrellisClient
import TrellisModel
import TrellisTestSupport

/// Every resource of the API through the real server and a real SQLite file.
@Suite struct APITests {
    @Test func resourceLifecycle() async throws {
        try await withController { controller in
            let client = controller.client()
            let subnet = try await makeSubnet(client, reserved: ["192.168.10.2-192.168.10.9"])

            let enterprise: Enterprise = try await client.patch("/api/v1/enterprises/acme", DescriptionUpdate(description: "Acme Corp"))
            #expect(enterprise.description == "Acme Corp")
            let domains: ListBody<Domain> = try await client.get("/api/v1/domains?enterprise=acme")
            #expect(domains.items.map(\.path) == ["acme/app1"])
            let zone: Zone = try await client.patch("/api/v1/zones/acme/app1/web", DescriptionUpdate(description: "front"))
            #expect(zone.description == "front")

            var made: Subnet = try await client.get("/api/v1/subnets/\(subnet)")
            #expect(made.gateway.description == "192.168.10.1" && made.vni >= VNIRange.first && !made.dhcp)
            #expect(made.gatewayMAC == .gateway(vni: made.vni))
            made = try await client.patch("/api/v1/subnets/\(subnet)", SubnetUpdate(dhcp: true))
            #expect(made.dhcp)
            let subnets: ListBody<Subnet> = try await client.get("/api/v1/subnets?zone=acme/app1/web")
            #expect(subnets.items.count == 1)

            let host: HostRecord = try await client.put("/api/v1/hosts/h1", HostRegistration(underlayIP: "10.99.0.1"))
            #expect(host.status == .down && host.underlayIP.description == "10.99.0.1")
            let beat: HostRecord = try await client.post("/api/v1/hosts/h1/heartbeat", HostHeartbeat(appliedRevision: 3))
            #expect(beat.status == .up && beat.appliedRevision == 3)

            let profile: PortProfile = try await client.post("/api/v1/profiles", ProfileCreate(
                enterprise: "acme", name: "limited", rules: [try ACLRule.parse("deny tcp port 22")],
                egressRate: RateLimit(bitsPerSecond: 10_000_000), flowStats: true))
            #expect(profile.path == "acme/limited" && profile.rules.count == 1)

            let web1: Endpoint = try await client.post("/api/v1/endpoints", EndpointCreate(
                subnet: subnet, name: "web1", host: "h1", profile: "acme/limited",
                externalIds: ["vm-uuid": "1f0e", "vm-name": "web1"]))
            #expect(web1.ip.description == "192.168.10.10", "first address after gateway and the reserved range")
            #expect(web1.mac.isLocallyAdministered && web1.state == .pending && web1.profile == "acme/limited")
            let web2: Endpoint = try await client.post("/api/v1/endpoints", EndpointCreate(
                subnet: subnet, name: "web2", kind: .vm, ip: "192.168.10.200", ingressRate: RateLimit(bitsPerSecond: 5_000_000)))
            #expect(web2.ip.description == "192.168.10.200" && web2.kind == .vm && web2.mac != web1.mac)
            #expect(web2.ingressRate == RateLimit(bitsPerSecond: 5_000_000) && web2.egressRate == nil && web1.ingressRate == nil)

            let byID: Endpoint = try await client.get("/api/v1/endpoints/\(web1.id)")
            #expect(byID.path == web1.path)
            let attached: Endpoint = try await client.patch("/api/v1/endpoints/\(web1.path)", EndpointUpdate(
                state: .up, interface: "trv1", externalIds: ["iface-id": "trv1", "attached-mac": web1.mac.description, "vm-uuid": ""]))
            #expect(attached.state == .up && attached.interface == "trv1")
            #expect(attached.externalIds == ["iface-id": "trv1", "attached-mac": web1.mac.description, "vm-name": "web1"])
            let onHost: ListBody<Endpoint> = try await client.get("/api/v1/endpoints?host=h1")
            #expect(onHost.items.map(\.name) == ["web1"])
            let inSubnet: ListBody<Endpoint> = try await client.get("/api/v1/endpoints?subnet=\(subnet)")
            #expect(inSubnet.items.map(\.name) == ["web1", "web2"])

            let policy: NetworkPolicy = try await client.post("/api/v1/policies", PolicyCreate(
                domain: "acme/app1", name: "web-in", rules: [try PolicyRule.parse("allow tcp from 10.0.0.0/8 to acme/app1/web port 80")]))
            #expect(policy.rules.count == 1)
            let replaced: NetworkPolicy = try await client.put("/api/v1/policies/acme/app1/web-in", PolicyUpdate(rules: [],
                description: "none"))
            #expect(replaced.rules.isEmpty && replaced.revision > policy.revision)

            // Floating IPs: bound once, moved, unbound; a bound pool cannot go; deleting the endpoint frees its address.
            let pool: FloatingIPPool = try await client.post("/api/v1/fip-pools", FloatingIPPoolCreate(enterprise: "acme", name: "public",
                                                                                                      cidr: "203.0.113.0/30"))
            #expect(pool.path == "acme/public")
            let bound: FloatingIPBinding = try await client.post("/api/v1/fip-pools/acme/public/bind", FloatingIPBind(endpoint: web1.path))
            #expect(bound.address.description == "203.0.113.1" && bound.endpointIP == web1.ip && bound.host == "h1")
            let twice = try await rawRequest(client, "POST", "/api/v1/fip-pools/acme/public/bind",
                                             body: #"{"endpoint": "\#(web2.path)", "address": "203.0.113.1"}"#)
            #expect(twice.status == 409 && twice.error?.field == "address")
            let moved: FloatingIPBinding = try await client.put("/api/v1/fips/203.0.113.1", FloatingIPMove(endpoint: String(web2.id)))
            #expect(moved.endpoint == web2.path)
            let second: FloatingIPBinding = try await client.post("/api/v1/fip-pools/acme/public/bind", FloatingIPBind(endpoint: web1.path))
            #expect(second.address.description == "203.0.113.2")
            let exhausted = try await rawRequest(client, "POST", "/api/v1/fip-pools/acme/public/bind",
                                                 body: #"{"endpoint": "\#(web1.path)"}"#)
            #expect(exhausted.status == 409)
            let listed: FloatingIPList = try await client.get("/api/v1/fips")
            #expect(listed.items.map(\.address.description) == ["203.0.113.1", "203.0.113.2"])
            let poolInUse = try await rawRequest(client, "DELETE", "/api/v1/fip-pools/acme/public", body: nil)
            #expect(poolInUse.status == 409)
            try await client.delete("/api/v1/fips/203.0.113.2")
            let rebound: FloatingIPBinding = try await client.post("/api/v1/fip-pools/acme/public/bind",
                                                                   FloatingIPBind(endpoint: web1.path, address: IPv4Address("203.0.113.2")))
            #expect(rebound.address.description == "203.0.113.2")

            let alice: UserWithToken = try await client.post("/api/v1/users", UserCreate(name: "alice", enterprise: "acme"))
            let me: User = try await client.get("/api/v1/users/alice")
            #expect(me.enterprise == "acme" && !me.admin && alice.token.hasPrefix("trl_"))
            // A token stops working at once when it is replaced or its user deleted, though it was just used.
            #expect(try await rawRequest(client, "GET", "/api/v1/enterprises", body: nil, token: alice.token).status == 200)
            let rotated: UserWithToken = try await client.post("/api/v1/users/alice/token", [String: String]())
            #expect(rotated.token != alice.token)
            let stale = try await rawRequest(client, "GET", "/api/v1/enterprises", body: nil, token: alice.token)
            #expect(stale.status == 401)
            let bob: UserWithToken = try await client.post("/api/v1/users", UserCreate(name: "bob", enterprise: "acme"))
            #expect(try await rawRequest(client, "GET", "/api/v1/enterprises", body: nil, token: bob.token).status == 200)
            try await client.delete("/api/v1/users/bob")
            #expect(try await rawRequest(client, "GET", "/api/v1/enterprises", body: nil, token: bob.token).status == 401)

            // Deleting in dependency order; parents refuse while children remain.
            let busy = try await rawRequest(client, "DELETE", "/api/v1/subnets/\(subnet)", body: nil)
            #expect(busy.status == 409 && busy.error?.error.contains("endpoints") == true)
            let inUse = try await rawRequest(client, "DELETE", "/api/v1/profiles/acme/limited", body: nil)
            #expect(inUse.status == 409)
            try await client.delete("/api/v1/endpoints/\(web1.path)")
            try await client.delete("/api/v1/endpoints/\(web2.id)")
            let freed: FloatingIPList = try await client.get("/api/v1/fips")
            #expect(freed.items.isEmpty, "deleting an endpoint unbinds its floating IP")
            try await client.delete("/api/v1/fip-pools/acme/public")
            let network: DockerNetwork = try await client.post("/api/v1/docker-networks", DockerNetworkCreate(
                host: "h1", networkID: "0123456789abcdef0123", subnet: subnet, poolID: "trellis:\(subnet)"))
            try await client.delete("/api/v1/docker-networks/\(network.path)")
            try await client.delete("/api/v1/profiles/acme/limited")
            try await client.delete("/api/v1/policies/acme/app1/web-in")
            try await client.delete("/api/v1/subnets/\(subnet)")
            try await client.delete("/api/v1/zones/acme/app1/web")
            try await client.delete("/api/v1/domains/acme/app1")
            try await client.delete("/api/v1/users/alice")
            try await client.delete("/api/v1/enterprises/acme")
            try await client.delete("/api/v1/hosts/h1")
            let gone = try await rawRequest(client, "GET", "/api/v1/enterprises/acme", body: nil)
            #expect(gone.status == 404)

            let events: [String: [Event]] = try await client.get("/api/v1/events?since=0&limit=1000")
            let kinds = Set(events["items", default: []].map(\.kind))
            #expect(kinds == Set(ResourceKind.allCases))
            let deleted = events["items", default: []].filter { $0.action == .deleted }.map(\.path)
            #expect(deleted.contains("acme/app1/web/red/web1") && deleted.last == "h1")
            #expect(events["items", default: []].allSatisfy { $0.actor == "admin" || $0.actor == "system" })
        }
    }

    @Test func addressesAreReleasedAndNotReusedAtOnce() async throws {
        try await withController { controller in
            let client = controller.client()
            let subnet = try await makeSubnet(client, cidr: "10.1.0.0/29")
            var made: [Endpoint] = []
            for index in 0..<5 {
                made.append(try await client.post("/api/v1/endpoints", EndpointCreate(subnet: subnet, name: "e\(index)")))
            }
            #expect(made.map(\.ip.description) == ["10.1.0.2", "10.1.0.3", "10.1.0.4", "10.1.0.5", "10.1.0.6"])
            let full = try await rawRequest(client, "POST", "/api/v1/endpoints", body: #"{"subnet":"\#(subnet)","name":"e5"}"#)
            #expect(full.status == 409 && full.error?.error.contains("full") == true && full.error?.field == "subnet")
            try await client.delete("/api/v1/endpoints/\(subnet)/e1")
            let again: Endpoint = try await client.post("/api/v1/endpoints", EndpointCreate(subnet: subnet, name: "e5"))
            #expect(again.ip.description == "10.1.0.3", "the only free address is the released one")
            try await client.delete("/api/v1/endpoints/\(subnet)/e2")
            let stat: Endpoint = try await client.post("/api/v1/endpoints", EndpointCreate(subnet: subnet, name: "e6", ip: "10.1.0.4"))
            #expect(stat.ip.description == "10.1.0.4", "a released address can be requested statically")

            // Each change above was one committed write transaction, and /metrics counts them.
            let metrics = String(decoding: try await client.exchange("GET", "/metrics", body: nil).body, as: UTF8.self)
            let commits = metrics.split(separator: "\n").first { $0.hasPrefix("trellis_store_commits_total ") }
            #expect(commits.flatMap { Int($0.split(separator: " ")[1]) } ?? 0 >= 13, "\(String(describing: commits))")
            #expect(metrics.contains("\ntrellis_store_conflict_retries_total "))
        }
    }

    @Test func openAPIDocumentDescribesTheServedRoutes() async throws {
        try await withController { controller in
            let client = controller.anonymousClient()
            let document: JSONValue = try await client.get("/api/v1/openapi.json")
            #expect(document["openapi"]?.stringValue?.hasPrefix("3.") == true)
            guard case .object(let paths)? = document["paths"] else { Issue.record("no paths"); return }
            #expect(paths.count >= 25)
            // Every documented operation is routed: none answers the router's "no such API path".
            for (path, operations) in paths {
                guard case .object(let methods) = operations else { continue }
                let concrete = path.replacingOccurrences(of: "{id}", with: "999999").replacingOccurrences(
                    of: #"\{[a-z]+\}"#, with: "nope", options: .regularExpression)
                for method in methods.keys {
                    let answer = try await rawRequest(controller.client(), method.uppercased(), concrete, body: "{}")
                    #expect(answer.error?.error != "no such API path", "\(method) \(path) is documented but not routed")
                    #expect(answer.status < 500, "\(method) \(path) answered \(answer.status)")
                }
            }
            let undocumented = try await rawRequest(controller.client(), "GET", "/api/v1/bogus", body: nil)
            #expect(undocumented.status == 404 && undocumented.error?.error == "no such API path")
        }
    }
}
