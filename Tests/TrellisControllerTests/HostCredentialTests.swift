import Foundation
import Testing
import TrellisClient
import TrellisModel
import TrellisTestSupport

/// Host credentials from the attacker's side: a host that joined holds a credential that reaches its own
/// host and nothing else, and the join tokens it came from cannot be used twice, late, or for another host.
@Suite struct HostCredentialTests {
    /// Joins `host` with a fresh join token (bound to it) and returns a client with its credential.
    static func join(_ host: String, _ controller: RunningController) async throws -> ControllerClient {
        let made: JoinToken = try await controller.client().post("/api/v1/join-tokens", JoinTokenCreate(ttlSeconds: 60, host: host))
        let credential: HostCredential = try await controller.anonymousClient()
            .post("/api/v1/join", HostJoin(host: host, joinToken: made.token))
        #expect(credential.host == host && credential.credential.hasPrefix(APIToken.hostPrefix))
        return controller.client(token: credential.credential)
    }

    @Test func aHostCredentialReachesOnlyItsOwnHost() async throws {
        try await withController { controller in
            let admin = controller.client()
            let subnet = try await makeSubnet(admin, enterprise: "acme")
            try await makeSubnet(admin, enterprise: "globex", cidr: "10.20.0.0/24")
            try await makeSubnet(admin, enterprise: "initech", cidr: "10.30.0.0/24")
            let h1 = try await Self.join("h1", controller)
            let h2 = try await Self.join("h2", controller)
            // What an agent does for its own host works.
            let _: HostRecord = try await h1.put("/api/v1/hosts/h1", HostRegistration(underlayIP: "10.255.0.1"))
            let _: HostRecord = try await h2.put("/api/v1/hosts/h2", HostRegistration(underlayIP: "10.255.0.2"))
            let _: HostRecord = try await h1.post("/api/v1/hosts/h1/heartbeat", HostHeartbeat(appliedRevision: nil))
            let _: DesiredState = try await h1.get("/api/v1/hosts/h1/desired")
            let mine: Endpoint = try await h1.post("/api/v1/endpoints", EndpointCreate(subnet: subnet, name: "web1", host: "h1"))
            let _: Endpoint = try await h1.patch("/api/v1/endpoints/\(mine.id)", EndpointUpdate(state: .up, interface: "trv1"))
            let listed: ListBody<Endpoint> = try await h1.get("/api/v1/endpoints?host=h1")
            #expect(listed.items.map(\.path) == [mine.path])
            let _: Subnet = try await h1.get("/api/v1/subnets/\(subnet)")
            let theirs: Endpoint = try await h2.post("/api/v1/endpoints", EndpointCreate(subnet: subnet, name: "web2", host: "h2"))
            let foreign: Endpoint = try await admin.post("/api/v1/endpoints",
                                                         EndpointCreate(subnet: "globex/app1/web/red", name: "db", host: "h2"))

            // Acting for a user narrows the host to that user's enterprise.
            let alice: UserWithToken = try await admin.post("/api/v1/users", UserCreate(name: "alice", enterprise: "globex"))
            let forAlice = h1.acting(for: alice.user.name)
            let refused = try await rawRequest(forAlice, "POST", "/api/v1/endpoints",
                                               body: #"{"subnet": "\#(subnet)", "name": "x", "host": "h1"}"#)
            #expect(refused.status == 404, "alice may not use acme's subnet through h1: \(refused.status)")
            let _: Endpoint = try await forAlice.post("/api/v1/endpoints",
                                                      EndpointCreate(subnet: "globex/app1/web/red", name: "a1", host: "h1"))

            let denied: [(String, String, String?)] = [
                ("GET", "/api/v1/enterprises", nil), ("POST", "/api/v1/enterprises", #"{"name": "mine"}"#),
                ("GET", "/api/v1/hosts", nil), ("GET", "/api/v1/hosts/h2", nil), ("GET", "/api/v1/hosts/h1", nil),
                ("PUT", "/api/v1/hosts/h2", #"{"underlayIP": "10.255.0.9"}"#), ("DELETE", "/api/v1/hosts/h2", nil),
                ("POST", "/api/v1/hosts/h2/heartbeat", "{}"), ("GET", "/api/v1/hosts/h2/desired", nil),
                ("GET", "/api/v1/hosts/h2/desired?watch=1", nil),
                ("POST", "/api/v1/hosts/h2/stats", #"{"collectedAt": "2026-01-01T00:00:00Z", "endpoints": [], "flows": []}"#),
                ("POST", "/api/v1/hosts/h2/refusals", #"{"path": "acme/app1/web/red/x", "reason": "no"}"#),
                ("GET", "/api/v1/endpoints", nil), ("GET", "/api/v1/endpoints?host=h2", nil),
                ("GET", "/api/v1/endpoints?subnet=\(subnet)", nil),
                ("POST", "/api/v1/endpoints", #"{"subnet": "\#(subnet)", "name": "x", "host": "h2"}"#),
                ("POST", "/api/v1/endpoints", #"{"subnet": "\#(subnet)", "name": "x"}"#),
                ("GET", "/api/v1/endpoints/\(theirs.id)", nil), ("GET", "/api/v1/endpoints/\(theirs.path)", nil),
                ("DELETE", "/api/v1/endpoints/\(theirs.id)", nil), ("PATCH", "/api/v1/endpoints/\(theirs.path)", #"{"state": "down"}"#),
                ("DELETE", "/api/v1/endpoints/\(foreign.id)", nil),
                ("PATCH", "/api/v1/endpoints/\(mine.id)", #"{"host": "h2"}"#),
                ("GET", "/api/v1/endpoints/\(mine.id)/stats", nil), ("GET", "/api/v1/flows?subnet=\(subnet)", nil),
                ("GET", "/api/v1/docker-networks", nil), ("GET", "/api/v1/docker-networks?host=h2", nil),
                ("POST", "/api/v1/docker-networks", #"{"host": "h2", "networkID": "0123456789ab", "subnet": "\#(subnet)", "poolID": "p"}"#),
                ("GET", "/api/v1/subnets", nil),
                ("POST", "/api/v1/subnets", #"{"zone": "acme/app1/web", "name": "x", "cidr": "10.9.0.0/24"}"#),
                ("PATCH", "/api/v1/subnets/\(subnet)", #"{"dhcp": true}"#), ("DELETE", "/api/v1/subnets/globex/app1/web/red", nil),
                ("POST", "/api/v1/profiles", #"{"enterprise": "acme", "name": "open"}"#),
                ("POST", "/api/v1/policies", #"{"domain": "acme/app1", "name": "any"}"#),
                ("POST", "/api/v1/fip-pools", #"{"enterprise": "acme", "name": "p", "cidr": "203.0.113.0/28"}"#),
                ("GET", "/api/v1/users", nil), ("POST", "/api/v1/users", #"{"name": "eve", "admin": true}"#),
                ("POST", "/api/v1/users/alice/token", nil), ("POST", "/api/v1/join-tokens", "{}"),
                ("GET", "/api/v1/events", nil), ("GET", "/metrics", nil),
            ]
            for (method, path, body) in denied {
                let answer = try await rawRequest(h1, method, path, body: body)
                #expect(answer.status == 403, "\(method) \(path) answered \(answer.status)")
                #expect(answer.error?.error.contains("host 'h1'") == true, "\(method) \(path): \(answer.error?.error ?? "")")
                #expect(answer.error?.error.contains("globex") != true, "\(method) \(path) named another tenant")
            }
            // Nothing the refused calls asked for happened.
            let h2Endpoints: ListBody<Endpoint> = try await admin.get("/api/v1/endpoints?host=h2")
            #expect(Set(h2Endpoints.items.map(\.path)) == [theirs.path, foreign.path])
            #expect((try await admin.get("/api/v1/endpoints/\(mine.id)") as Endpoint).host == "h1")
            #expect((try await admin.get("/api/v1/hosts/h2") as HostRecord).underlayIP.description == "10.255.0.2")

            // A host's report counts only for its own endpoints and the domains they are in.
            let counters = TrafficCounters(packets: 1, bytes: 100)
            func flow(_ domain: String, _ source: String) throws -> Flow {
                Flow(domain: domain, host: "h1", protocol: "tcp", source: try IPv4Address.parse(source, field: nil), sourcePort: 1,
                     destination: mine.ip, destinationPort: 80, state: "ESTABLISHED", original: counters, reply: counters,
                     translatedDestination: nil)
            }
            let report = HostStatsReport(collectedAt: Date(), endpoints: [mine, theirs].map {
                EndpointStats(endpoint: $0.path, id: $0.id, host: "h1", sent: counters, received: counters, source: "interface",
                              collectedAt: Date())
            }, flows: [try flow("acme/app1", "192.168.10.50"), try flow("initech/app1", "10.30.0.5")])
            _ = try await h1.send(.POST, "/api/v1/hosts/h1/stats", body: try JSONCoding.encoder().encode(report))
            let _: EndpointStats = try await admin.get("/api/v1/endpoints/\(mine.id)/stats")
            #expect(try await rawRequest(admin, "GET", "/api/v1/endpoints/\(theirs.id)/stats", body: nil).status == 404,
                    "h1 reported counters of h2's endpoint")
            let flows: FlowList = try await admin.get("/api/v1/flows?subnet=\(subnet)")
            #expect(flows.items.map(\.source.description) == ["192.168.10.50"])
            #expect(flows.items.first?.decidedBy?.stage == .sameSubnet && flows.items.first?.decidedBy?.object == subnet,
                    "the controller explains each flow under the current rules")
            let unserved: FlowList = try await admin.get("/api/v1/flows?subnet=initech/app1/web/red")
            #expect(unserved.items.isEmpty, "h1 reported flows of a domain it does not serve")

            // Deleting a host revokes its credential at once.
            try await h1.delete("/api/v1/endpoints/\(mine.id)")
            try await admin.delete("/api/v1/endpoints/globex/app1/web/red/a1")
            try await admin.delete("/api/v1/hosts/h1")
            let revoked = try await rawRequest(h1, "POST", "/api/v1/hosts/h1/heartbeat", body: "{}")
            #expect(revoked.status == 401)
        }
    }

    @Test func joinTokensAreSingleUseShortLivedAndBound() async throws {
        try await withController { controller in
            let admin = controller.client()
            let anonymous = controller.anonymousClient()
            func join(_ host: String, _ token: String) async throws -> (status: Int, error: ErrorBody?) {
                try await rawRequest(anonymous, "POST", "/api/v1/join", body: #"{"host": "\#(host)", "joinToken": "\#(token)"}"#)
            }
            let open: JoinToken = try await admin.post("/api/v1/join-tokens", JoinTokenCreate(ttlSeconds: 60))
            #expect(try await join("h1", open.token).status == 200)
            let reused = try await join("h2", open.token)
            #expect(reused.status == 401 && reused.error?.field == "joinToken", "a used join token works again: \(reused.status)")

            let bound: JoinToken = try await admin.post("/api/v1/join-tokens", JoinTokenCreate(ttlSeconds: 60, host: "h3"))
            #expect(try await join("h4", bound.token).status == 401)
            #expect(try await join("h3", bound.token).status == 401, "a token tried for another host is spent")

            let brief: JoinToken = try await admin.post("/api/v1/join-tokens", JoinTokenCreate(ttlSeconds: 1))
            try await Task.sleep(for: .seconds(2))
            #expect(try await join("h5", brief.token).status == 401, "an expired join token still works")

            // Joining again replaces the credential: the old one stops working.
            let first = try await HostCredentialTests.join("h6", controller)
            let second = try await HostCredentialTests.join("h6", controller)
            #expect(try await rawRequest(first, "POST", "/api/v1/hosts/h6/heartbeat", body: "{}").status == 401)
            #expect(try await rawRequest(second, "PUT", "/api/v1/hosts/h6", body: #"{"underlayIP": "10.255.0.6"}"#).status == 200)

            for (body, field) in [
                (#"{"host": "h1", "joinToken": "trl_0123"}"#, "joinToken"),
                (#"{"host": "h1", "joinToken": "trj_\#(String(repeating: "g", count: 40))"}"#, "joinToken"),
                (#"{"host": "../x", "joinToken": "\#(open.token)"}"#, "host"), (#"{"host": "h1"}"#, "joinToken"),
            ] {
                let answer = try await rawRequest(anonymous, "POST", "/api/v1/join", body: body)
                #expect(answer.status == 400 && answer.error?.field == field, "\(body): \(answer.status) \(answer.error?.field ?? "")")
            }
            for ttl in [0, -1, 8 * 24 * 3600] {
                let answer = try await rawRequest(admin, "POST", "/api/v1/join-tokens", body: #"{"ttlSeconds": \#(ttl)}"#)
                #expect(answer.status == 400 && answer.error?.field == "ttlSeconds")
            }
            // A host credential is not a user token, and a join token is no bearer token at all.
            let tenant = try await rawRequest(anonymous, "GET", "/api/v1/enterprises", body: nil, token: bound.token)
            #expect(tenant.status == 401)
        }
    }
}
