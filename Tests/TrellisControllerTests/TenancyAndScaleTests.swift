import Foundation
import Testing
import TrellisClient
import TrellisModel
import TrellisTestSupport

@Suite struct TenancyTests {
    /// Users of one enterprise neither see nor change anything of another: 404, as if it did not exist.
    @Test func enterprisesAreIsolated() async throws {
        try await withController { controller in
            let admin = controller.client()
            try await makeSubnet(admin, enterprise: "acme")
            try await makeSubnet(admin, enterprise: "globex", cidr: "192.168.10.0/24")
            let _: PortProfile = try await admin.post("/api/v1/profiles", ProfileCreate(enterprise: "globex", name: "gold"))
            let alice: UserWithToken = try await admin.post("/api/v1/users", UserCreate(name: "alice", enterprise: "acme"))
            let aliceClient = controller.client(token: alice.token)

            let enterprises: ListBody<Enterprise> = try await aliceClient.get("/api/v1/enterprises")
            #expect(enterprises.items.map(\.name) == ["acme"])
            let subnets: ListBody<Subnet> = try await aliceClient.get("/api/v1/subnets")
            #expect(subnets.items.map(\.path) == ["acme/app1/web/red"])
            let foreign: ListBody<Subnet> = try await aliceClient.get("/api/v1/subnets?zone=globex/app1/web")
            #expect(foreign.items.isEmpty)
            let profiles: ListBody<PortProfile> = try await aliceClient.get("/api/v1/profiles")
            #expect(profiles.items.isEmpty)

            // Alice works in her own enterprise.
            let mine: Endpoint = try await aliceClient.post("/api/v1/endpoints", EndpointCreate(subnet: "acme/app1/web/red", name: "web1"))
            let theirs: Endpoint = try await admin.post("/api/v1/endpoints", EndpointCreate(subnet: "globex/app1/web/red", name: "db1"))
            #expect(mine.ip == theirs.ip, "overlapping address spaces of different enterprises are independent")

            for (method, path, body) in [
                ("GET", "/api/v1/enterprises/globex", nil), ("GET", "/api/v1/subnets/globex/app1/web/red", nil),
                ("GET", "/api/v1/endpoints/globex/app1/web/red/db1", nil), ("GET", "/api/v1/endpoints/\(theirs.id)", nil),
                ("DELETE", "/api/v1/endpoints/globex/app1/web/red/db1", nil),
                ("PATCH", "/api/v1/endpoints/globex/app1/web/red/db1", #"{"state": "down"}"#),
                ("POST", "/api/v1/endpoints", #"{"subnet": "globex/app1/web/red", "name": "x"}"#),
                ("POST", "/api/v1/domains", #"{"enterprise": "globex", "name": "x"}"#),
                ("GET", "/api/v1/profiles/globex/gold", nil), ("DELETE", "/api/v1/zones/globex/app1/web", nil),
                ("PATCH", "/api/v1/enterprises/globex", #"{"description": "mine now"}"#),
                ("POST", "/api/v1/endpoints", #"{"subnet": "acme/app1/web/red", "name": "x", "profile": "globex/gold"}"#),
            ] as [(String, String, String?)] {
                let answer = try await rawRequest(aliceClient, method, path, body: body)
                #expect(answer.status == 404, "\(method) \(path) answered \(answer.status)")
            }
            for (method, path, body) in [
                ("POST", "/api/v1/enterprises", #"{"name": "mine"}"#), ("GET", "/api/v1/hosts", nil),
                ("POST", "/api/v1/users", #"{"name": "eve", "admin": true}"#), ("GET", "/api/v1/hosts/h1/desired", nil),
            ] as [(String, String, String?)] {
                let answer = try await rawRequest(aliceClient, method, path, body: body)
                #expect(answer.status == 403, "\(method) \(path) answered \(answer.status)")
            }

            let events: [String: [Event]] = try await aliceClient.get("/api/v1/events?since=0&limit=1000")
            #expect(!events["items", default: []].isEmpty)
            #expect(events["items", default: []].allSatisfy { $0.enterprise == "acme" })
            let stillThere: Endpoint = try await admin.get("/api/v1/endpoints/globex/app1/web/red/db1")
            #expect(stillThere.state == .pending)
        }
    }
}

extension TenancyTests {
    /// Every error a tenant can provoke about another enterprise's objects, by id, address, floating IP,
    /// Docker network id or a claim, says only what the tenant asked for: no response body contains a
    /// name of the other enterprise (its enterprise, domain, zone, subnet, endpoint or pool).
    @Test func errorsNeverNameAnotherTenantsObjects() async throws {
        try await withController { controller in
            let admin = controller.client()
            let hidden = ["globex", "corpnet", "zvault", "vaultnet", "secretep", "gpool"]
            let foreignSubnet = try await makeSubnet(admin, enterprise: "globex", domain: "corpnet", zone: "zvault", subnet: "vaultnet",
                                                     cidr: "10.66.0.0/24")
            let ownSubnet = try await makeSubnet(admin, enterprise: "acme")
            let _: HostRecord = try await admin.put("/api/v1/hosts/h1", HostRegistration(underlayIP: "10.99.0.1"))
            let secret: Endpoint = try await admin.post("/api/v1/endpoints",
                                                        EndpointCreate(subnet: foreignSubnet, name: "secretep", host: "h1"))
            let _: FloatingIPPool = try await admin.post("/api/v1/fip-pools", FloatingIPPoolCreate(enterprise: "globex", name: "gpool",
                                                                                                     cidr: "203.0.113.0/28"))
            let bound: FloatingIPBinding = try await admin.post("/api/v1/fip-pools/globex/gpool/bind",
                                                                FloatingIPBind(endpoint: secret.path))
            let _: DockerNetwork = try await admin.post("/api/v1/docker-networks", DockerNetworkCreate(
                host: "h1", networkID: "abcdef012345", subnet: foreignSubnet, poolID: "globex-pool"))
            let alice: UserWithToken = try await admin.post("/api/v1/users", UserCreate(name: "alice", enterprise: "acme"))
            let tenant = controller.client(token: alice.token)
            let mine: Endpoint = try await tenant.post("/api/v1/endpoints", EndpointCreate(subnet: ownSubnet, name: "web1"))
            let _: FloatingIPPool = try await admin.post("/api/v1/fip-pools", FloatingIPPoolCreate(enterprise: "acme", name: "apool",
                                                                                                     cidr: "198.51.100.0/28"))
            let myFloating: FloatingIPBinding = try await tenant.post("/api/v1/fip-pools/acme/apool/bind",
                                                                      FloatingIPBind(endpoint: mine.path))
            let probes: [(String, String, String?)] = [
                ("GET", "/api/v1/endpoints/\(secret.id)", nil),
                ("PATCH", "/api/v1/endpoints/\(secret.id)", #"{"state": "down"}"#),
                ("DELETE", "/api/v1/endpoints/\(secret.id)", nil),
                ("GET", "/api/v1/endpoints/\(secret.id)/stats", nil),
                ("POST", "/api/v1/fip-pools/acme/apool/bind", #"{"endpoint": "\#(secret.id)"}"#),
                ("PUT", "/api/v1/fips/\(myFloating.address)", #"{"endpoint": "\#(secret.id)"}"#),
                ("PUT", "/api/v1/fips/\(bound.address)", #"{"endpoint": "\#(mine.id)"}"#),
                ("DELETE", "/api/v1/fips/\(bound.address)", nil),
                ("POST", "/api/v1/fip-pools", #"{"enterprise": "acme", "name": "clash", "cidr": "203.0.113.0/29"}"#),
                ("DELETE", "/api/v1/fip-pools/globex/gpool", nil),
                ("POST", "/api/v1/fip-pools/acme/apool/bind", #"{"endpoint": "\#(mine.path)", "address": "203.0.113.1"}"#),
                ("POST", "/api/v1/docker-networks",
                 #"{"host": "h1", "networkID": "abcdef012345", "subnet": "\#(ownSubnet)", "poolID": "p"}"#),
                ("POST", "/api/v1/endpoints", #"{"subnet": "\#(ownSubnet)", "name": "web2", "ip": "\#(secret.ip)"}"#),
                ("GET", "/api/v1/endpoints?host=h1", nil), ("GET", "/api/v1/fips", nil), ("GET", "/api/v1/docker-networks?host=h1", nil),
                ("GET", "/api/v1/flows?subnet=\(ownSubnet)", nil), ("GET", "/api/v1/events?since=0&limit=1000", nil),
                ("GET", "/api/v1/fip-pools", nil), ("GET", "/api/v1/hosts/h1/desired", nil),
            ]
            for (method, path, body) in probes {
                let answer = try await tenant.exchange(method, path, body: body.map { Data($0.utf8) })
                let text = String(decoding: answer.body, as: UTF8.self)
                let named = hidden.filter { text.contains($0) }
                #expect(named.isEmpty, "\(method) \(path) answered \(answer.status) naming \(named): \(text.prefix(300))")
                #expect(answer.status < 500, "\(method) \(path) answered \(answer.status)")
            }
            let still: Endpoint = try await admin.get("/api/v1/endpoints/\(secret.id)")
            #expect(still.state == .pending && still.floatingIP == bound.address, "nothing of the other tenant changed")
        }
    }
}

extension TenancyTests {
    /// Floating IP pools take addresses on the underlay, where the endpoint's host answers for them: only
    /// an admin makes them, for an enterprise, and never over a reserved range, a host's underlay address
    /// or another pool; a host cannot register an address of a pool. Tenants use the pools given to them.
    @Test func tenantsCannotClaimTheUnderlay() async throws {
        try await withController(underlayReserved: ["10.255.0.0/24", "192.0.2.10/32"]) { controller in
            let admin = controller.client()
            let subnet = try await makeSubnet(admin, enterprise: "acme")
            let _: HostRecord = try await admin.put("/api/v1/hosts/h1", HostRegistration(underlayIP: "10.99.0.1"))
            let alice: UserWithToken = try await admin.post("/api/v1/users", UserCreate(name: "alice", enterprise: "acme"))
            let tenant = controller.client(token: alice.token)
            let web: Endpoint = try await tenant.post("/api/v1/endpoints", EndpointCreate(subnet: subnet, name: "web", host: "h1"))
            func pool(_ client: ControllerClient, _ cidr: String) async throws -> (status: Int, error: ErrorBody?) {
                try await rawRequest(client, "POST", "/api/v1/fip-pools", body: #"{"enterprise": "acme", "name": "p", "cidr": "\#(cidr)"}"#)
            }
            let takeover = try await pool(tenant, "10.99.0.0/30")
            #expect(takeover.status == 403, "a tenant's pool over a host's underlay address: \(takeover)")
            let harmless = try await pool(tenant, "203.0.113.0/30")
            #expect(harmless.status == 403, "no tenant makes pools at all: \(harmless)")
            for (cidr, reason) in [("10.99.0.0/30", "underlay address of host h1"), ("10.255.0.128/25", "reserved range 10.255.0.0/24"),
                                   ("192.0.2.8/29", "reserved range 192.0.2.10/32")] {
                let refused = try await pool(admin, cidr)
                #expect(refused.status == 409 && refused.error?.field == "cidr" && refused.error?.error.contains(reason) == true,
                        "\(cidr): \(refused)")
            }
            let given: FloatingIPPool = try await admin.post("/api/v1/fip-pools", FloatingIPPoolCreate(enterprise: "acme", name: "public",
                                                                                                         cidr: "10.255.1.0/29"))
            let bound: FloatingIPBinding = try await tenant.post("/api/v1/fip-pools/\(given.path)/bind", FloatingIPBind(endpoint: web.path))
            #expect(bound.address.description == "10.255.1.1", "the tenant binds from the pool the admin gave it")
            let host = try await rawRequest(admin, "PUT", "/api/v1/hosts/h2", body: #"{"underlayIP": "10.255.1.3"}"#)
            #expect(host.status == 409 && host.error?.field == "underlayIP", "a host on a pool's address: \(host)")
            let deleting = try await rawRequest(tenant, "DELETE", "/api/v1/fip-pools/acme/public", body: nil)
            #expect(deleting.status == 403)
            let pools: ListBody<FloatingIPPool> = try await tenant.get("/api/v1/fip-pools")
            #expect(pools.items.map(\.path) == ["acme/public"])
        }
    }
}

@Suite struct ConcurrencyTests {
    /// 2,000 creations in parallel into one /21 give 2,000 distinct addresses; once it is full, 409.
    @Test func parallelAllocationNeverDuplicates() async throws {
        try await withController { controller in
            let client = controller.client()
            let subnet = try await makeSubnet(client, cidr: "10.20.0.0/21")
            let usage: [String: Int] = try await client.get("/api/v1/subnets/\(subnet)/usage")
            let capacity = try #require(usage["capacity"])
            #expect(capacity == 2045)
            let made = try await withThrowingTaskGroup(of: Endpoint.self) { group in
                var endpoints: [Endpoint] = []
                for index in 0..<2000 {
                    if index >= 64 { endpoints.append(try await group.next()!) }
                    group.addTask { try await client.post("/api/v1/endpoints", EndpointCreate(subnet: subnet, name: "e\(index)")) }
                }
                for try await endpoint in group { endpoints.append(endpoint) }
                return endpoints
            }
            #expect(made.count == 2000)
            #expect(Set(made.map(\.ip)).count == 2000, "duplicate addresses")
            #expect(Set(made.map(\.mac)).count == 2000, "duplicate MACs")
            let network = try IPv4Network.parse("10.20.0.0/21")
            #expect(made.allSatisfy { network.contains($0.ip) && $0.ip != network.firstHost && $0.ip != network.broadcast })

            // Fill the rest in parallel too, then every further request is refused as full.
            let results = await withTaskGroup(of: Int.self) { group in
                for index in 2000..<(capacity + 20) {
                    group.addTask {
                        let body = #"{"subnet":"\#(subnet)","name":"e\#(index)"}"#
                        return (try? await rawRequest(client, "POST", "/api/v1/endpoints", body: body).status) ?? 0
                    }
                }
                return await group.reduce(into: [Int: Int]()) { $0[$1, default: 0] += 1 }
            }
            #expect(results == [201: capacity - 2000, 409: 20])
            let all: ListBody<Endpoint> = try await client.get("/api/v1/endpoints?subnet=\(subnet)")
            #expect(all.items.count == capacity && Set(all.items.map(\.ip)).count == capacity)
        }
    }
}

@Suite struct RestartTests {
    @Test func dataAndRevisionsSurviveARestart() async throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let (token, revision, first) = try await withController(directory: directory) { controller in
            let client = controller.client()
            try await makeSubnet(client, cidr: "10.30.0.0/29")
            let first: Endpoint = try await client.post("/api/v1/endpoints", EndpointCreate(subnet: "acme/app1/web/red", name: "a"))
            let list: ListBody<Endpoint> = try await client.get("/api/v1/endpoints")
            return (controller.adminToken, list.revision, first)
        }
        try await withController(directory: directory) { controller in
            #expect(controller.adminToken == token, "a valid admin token is kept across restarts")
            let client = controller.client()
            let list: ListBody<Endpoint> = try await client.get("/api/v1/endpoints")
            #expect(list.revision == revision)
            #expect(list.items == [first])
            let second: Endpoint = try await client.post("/api/v1/endpoints", EndpointCreate(subnet: "acme/app1/web/red", name: "b"))
            #expect(second.ip != first.ip && second.mac != first.mac && second.id > first.id)
            let after: ListBody<Endpoint> = try await client.get("/api/v1/endpoints")
            #expect(after.revision == revision + 1)
        }
    }
}
