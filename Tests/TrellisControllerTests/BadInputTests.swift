import Foundation
import Testing
import TrellisClient
import TrellisModel
import TrellisTestSupport

/// Bad input for each resource: a 4xx with a message (and the field, where one is to blame), never a 500,
/// and nothing stored.
@Suite struct BadInputTests {
    struct Case: Sendable, CustomStringConvertible {
        var method: String
        var path: String
        var body: String?
        var status: Int
        var field: String?
        var description: String { "\(method) \(path) \(body ?? "")" }
    }

    static let cases: [Case] = [
        // Malformed or missing bodies.
        Case(method: "POST", path: "/api/v1/enterprises", body: "{", status: 400),
        Case(method: "POST", path: "/api/v1/enterprises", body: "", status: 400),
        Case(method: "POST", path: "/api/v1/enterprises", body: "[]", status: 400),
        Case(method: "POST", path: "/api/v1/enterprises", body: #"{"name": 5}"#, status: 400, field: "name"),
        Case(method: "POST", path: "/api/v1/enterprises", body: #"{"name": "Bad Name"}"#, status: 400, field: "name"),
        Case(method: "POST", path: "/api/v1/enterprises", body: #"{"name": "acme"}"#, status: 409, field: "name"),
        // Unknown parents.
        Case(method: "POST", path: "/api/v1/domains", body: #"{"enterprise": "nobody", "name": "d"}"#, status: 404, field: "enterprise"),
        Case(method: "POST", path: "/api/v1/zones", body: #"{"domain": "acme/nope", "name": "z"}"#, status: 404, field: "domain"),
        Case(method: "POST", path: "/api/v1/zones", body: #"{"domain": "acme", "name": "z"}"#, status: 400, field: "domain"),
        Case(method: "POST", path: "/api/v1/subnets", body: #"{"zone": "acme/app1/nope", "name": "s", "cidr": "10.9.0.0/24"}"#, status: 404,
             field: "zone"),
        // Subnet addressing.
        Case(method: "POST", path: "/api/v1/subnets", body: #"{"zone": "acme/app1/web", "name": "s", "cidr": "10.9.0.0"}"#, status: 400,
             field: "cidr"),
        Case(method: "POST", path: "/api/v1/subnets", body: #"{"zone": "acme/app1/web", "name": "s", "cidr": "10.9.0.1/24"}"#, status: 400,
             field: "cidr"),
        Case(method: "POST", path: "/api/v1/subnets", body: #"{"zone": "acme/app1/web", "name": "s", "cidr": "10.9.0.0/32"}"#, status: 400,
             field: "cidr"),
        Case(method: "POST", path: "/api/v1/subnets",
             body: #"{"zone": "acme/app1/web", "name": "s", "cidr": "10.9.0.0/24", "gateway": "10.8.0.1"}"#, status: 400, field: "gateway"),
        Case(method: "POST", path: "/api/v1/subnets",
             body: #"{"zone": "acme/app1/web", "name": "s", "cidr": "10.9.0.0/24", "gateway": "x"}"#, status: 400, field: "gateway"),
        Case(method: "POST", path: "/api/v1/subnets",
            body: #"{"zone": "acme/app1/web", "name": "s", "cidr": "10.9.0.0/24", "reserved": ["10.10.0.1"]}"#, status: 400,
                field: "reserved"),
        Case(method: "POST", path: "/api/v1/subnets", body: #"{"zone": "acme/app1/web", "name": "s", "cidr": "192.168.10.128/25"}"#,
             status: 409, field: "cidr"),
        Case(method: "POST", path: "/api/v1/subnets", body: #"{"zone": "acme/app1/web", "name": "red", "cidr": "10.9.0.0/24"}"#,
             status: 409, field: "name"),
        // Endpoints.
        Case(method: "POST", path: "/api/v1/endpoints", body: #"{"subnet": "acme/app1/web/nope", "name": "e"}"#, status: 404,
             field: "subnet"),
        Case(method: "POST", path: "/api/v1/endpoints", body: #"{"subnet": "acme/app1/web/red", "name": "e", "ip": "10.0.0.1"}"#,
             status: 409, field: "ip"),
        Case(method: "POST", path: "/api/v1/endpoints", body: #"{"subnet": "acme/app1/web/red", "name": "e", "ip": "192.168.10.1"}"#,
             status: 409, field: "ip"),
        Case(method: "POST", path: "/api/v1/endpoints", body: #"{"subnet": "acme/app1/web/red", "name": "e", "ip": "192.168.10.300"}"#,
             status: 400, field: "ip"),
        Case(method: "POST", path: "/api/v1/endpoints", body: #"{"subnet": "acme/app1/web/red", "name": "e", "host": "nohost"}"#,
             status: 404, field: "host"),
        Case(method: "POST", path: "/api/v1/endpoints",
             body: #"{"subnet": "acme/app1/web/red", "name": "e", "egressRate": {"bitsPerSecond": 0}}"#, status: 400,
             field: "egressRate.bitsPerSecond"),
        Case(method: "POST", path: "/api/v1/endpoints",
             body: #"{"subnet": "acme/app1/web/red", "name": "e", "ingressRate": {"bitsPerSecond": 1000000, "burstBytes": 268435455}}"#,
             status: 400, field: "ingressRate.burstBytes"),
        Case(method: "POST", path: "/api/v1/endpoints", body: #"{"subnet": "acme/app1/web/red", "name": "e", "profile": "globex/p"}"#,
             status: 404, field: "profile"),
        Case(method: "POST", path: "/api/v1/endpoints", body: #"{"subnet": "acme/app1/web/red", "name": "e", "kind": "toaster"}"#,
             status: 400, field: "kind"),
        Case(method: "POST", path: "/api/v1/endpoints", body: #"{"subnet": "acme/app1/web/red", "name": "web1"}"#, status: 409,
             field: "name"),
        Case(method: "PATCH", path: "/api/v1/endpoints/acme/app1/web/red/web1", body: #"{"state": "melted"}"#, status: 400, field: "state"),
        Case(method: "PATCH", path: "/api/v1/endpoints/acme/app1/web/red/web1", body: #"{"host": "ghost"}"#, status: 404, field: "host"),
        Case(method: "GET", path: "/api/v1/endpoints/424242", body: nil, status: 404),
        // Hosts, profiles, policies, users, events.
        Case(method: "PUT", path: "/api/v1/hosts/h9", body: #"{"underlayIP": "10.99.0.256"}"#, status: 400, field: "underlayIP"),
        Case(method: "PUT", path: "/api/v1/hosts/h9", body: #"{"underlayIP": "10.99.0.1"}"#, status: 409, field: "underlayIP"),
        Case(method: "POST", path: "/api/v1/hosts/ghost/heartbeat", body: "{}", status: 404),
        Case(method: "POST", path: "/api/v1/profiles", body: #"{"enterprise": "acme", "name": "p", "egressRate": {"bitsPerSecond": 0}}"#,
             status: 400, field: "egressRate.bitsPerSecond"),
        Case(method: "POST", path: "/api/v1/profiles",
            body: #"{"enterprise": "acme", "name": "p", "rules": [{"action": "allow", "protocol": "icmp", "ports": [22]}]}"#, status: 400,
                field: "rules[0].ports"),
        Case(method: "POST", path: "/api/v1/profiles", body: #"{"enterprise": "acme", "name": "p", "rules": [{"action": "maybe"}]}"#,
             status: 400, field: "rules[0].action"),
        Case(method: "POST", path: "/api/v1/profiles",
            body: #"{"enterprise": "acme", "name": "p", "rules": [{"action": "deny", "ports": [70000]}]}"#, status: 400,
                field: "rules[0].ports[0]"),
        Case(method: "POST", path: "/api/v1/policies",
            body: #"{"domain": "acme/app1", "name": "p", "rules": [{"action": "allow", "from": "acme/app1/web/nope"}]}"#, status: 400,
                field: "rules[0].from"),
        Case(method: "POST", path: "/api/v1/policies",
            body: #"{"domain": "acme/app1", "name": "p", "rules": [{"action": "allow", "to": "globex/x/y"}]}"#, status: 400,
                field: "rules[0].to"),
        Case(method: "POST", path: "/api/v1/policies",
            body: #"{"domain": "acme/app1", "name": "p", "rules": [{"action": "allow", "to": "10.0.0.1/8"}]}"#, status: 400,
                field: "rules[0].to"),
        Case(method: "POST", path: "/api/v1/users", body: #"{"name": "u"}"#, status: 400, field: "enterprise"),
        Case(method: "POST", path: "/api/v1/users", body: #"{"name": "u", "enterprise": "nobody"}"#, status: 404, field: "enterprise"),
        Case(method: "GET", path: "/api/v1/events?limit=0", body: nil, status: 400, field: "limit"),
        Case(method: "GET", path: "/api/v1/events?since=x", body: nil, status: 400, field: "since"),
        Case(method: "GET", path: "/api/v1/hosts/h1/desired?since=-5", body: nil, status: 400, field: "since"),
        // Floating IPs, statistics and flows.
        Case(method: "POST", path: "/api/v1/fip-pools", body: #"{"enterprise": "acme", "name": "p2", "cidr": "203.0.113.8/29"}"#,
             status: 409, field: "cidr"),
        Case(method: "POST", path: "/api/v1/fip-pools", body: #"{"enterprise": "acme", "name": "p2", "cidr": "nonsense"}"#, status: 400,
             field: "cidr"),
        Case(method: "POST", path: "/api/v1/fip-pools", body: #"{"enterprise": "acme", "name": "p2", "cidr": "10.0.0.0/8"}"#, status: 400,
             field: "cidr"),
        Case(method: "POST", path: "/api/v1/fip-pools", body: #"{"enterprise": "acme", "name": "p2", "cidr": "10.99.0.0/29"}"#,
             status: 409, field: "cidr"),
        Case(method: "PUT", path: "/api/v1/hosts/h2", body: #"{"underlayIP": "203.0.113.5"}"#, status: 409, field: "underlayIP"),
        Case(method: "POST", path: "/api/v1/fip-pools", body: #"{"enterprise": "nobody", "name": "p2", "cidr": "198.51.100.0/28"}"#,
             status: 404, field: "enterprise"),
        Case(method: "POST", path: "/api/v1/fip-pools/acme/public/bind", body: #"{"endpoint": "acme/app1/web/red/nope"}"#, status: 404,
             field: "endpoint"),
        Case(method: "POST", path: "/api/v1/fip-pools/acme/public/bind",
             body: #"{"endpoint": "acme/app1/web/red/web1", "address": "203.0.113.99"}"#, status: 400, field: "address"),
        Case(method: "POST", path: "/api/v1/fip-pools/acme/public/bind", body: #"{"endpoint": 5}"#, status: 400, field: "endpoint"),
        Case(method: "POST", path: "/api/v1/fip-pools/acme/nope/bind", body: #"{"endpoint": "acme/app1/web/red/web1"}"#, status: 404),
        Case(method: "DELETE", path: "/api/v1/fips/203.0.113.3", body: nil, status: 404, field: "address"),
        Case(method: "DELETE", path: "/api/v1/fips/not-an-address", body: nil, status: 400, field: "address"),
        Case(method: "PUT", path: "/api/v1/fips/203.0.113.3", body: #"{"endpoint": "acme/app1/web/red/web1"}"#, status: 404,
             field: "address"),
        Case(method: "GET", path: "/api/v1/flows", body: nil, status: 400, field: "subnet"),
        Case(method: "GET", path: "/api/v1/flows?subnet=acme/app1/web/nope", body: nil, status: 404),
        Case(method: "GET", path: "/api/v1/endpoints/424242/stats", body: nil, status: 404),
        Case(method: "GET", path: "/api/v1/endpoints/acme/stats", body: nil, status: 404),
        Case(method: "POST", path: "/api/v1/hosts/ghost/stats",
             body: #"{"collectedAt": "2026-01-01T00:00:00Z", "endpoints": [], "flows": []}"#, status: 404),
        Case(method: "POST", path: "/api/v1/hosts/h1/stats", body: #"{"collectedAt": "yesterday", "endpoints": [], "flows": []}"#,
             status: 400, field: "collectedAt"),
        Case(method: "POST", path: "/api/v1/endpoints", body: #"{"subnet": "acme/app1/web/red", "name": "web2", "hostname": "Not A Name"}"#,
             status: 400, field: "hostname"),
        Case(method: "PATCH", path: "/api/v1/endpoints/acme/app1/web/red/web1", body: #"{"hostname": "a.b"}"#, status: 400,
             field: "hostname"),
        Case(method: "POST", path: "/api/v1/docker-networks",
             body: #"{"host": "h1", "networkID": "xyz", "subnet": "acme/app1/web/red", "poolID": "p"}"#, status: 400, field: "networkID"),
        Case(method: "POST", path: "/api/v1/docker-networks",
            body: #"{"host": "h1", "networkID": "0123456789abcdef", "subnet": "acme/app1/web/nope", "poolID": "p"}"#, status: 404,
                field: "subnet"),
        Case(method: "POST", path: "/api/v1/docker-networks",
            body: #"{"host": "ghost", "networkID": "0123456789abcdef", "subnet": "acme/app1/web/red", "poolID": "p"}"#, status: 404,
                field: "host"),
        Case(method: "POST", path: "/api/v1/docker-networks",
            body: #"{"host": "h1", "networkID": "0123456789abcdef", "subnet": "acme/app1/web/red", "poolID": ""}"#, status: 400,
                field: "poolID"),
        Case(method: "GET", path: "/api/v1/docker-networks/h1/0123456789ab", body: nil, status: 404),
        Case(method: "DELETE", path: "/api/v1/docker-networks/h1/0123456789ab", body: nil, status: 404),
        Case(method: "POST", path: "/api/v1/hosts/ghost/refusals", body: #"{"path": "acme/app1/web/red/x", "reason": "no"}"#, status: 404),
        Case(method: "POST", path: "/api/v1/hosts/h1/refusals", body: #"{"path": "acme/app1/web/red/x", "reason": ""}"#, status: 400,
             field: "reason"),
        // Deletes of what others depend on.
        Case(method: "DELETE", path: "/api/v1/enterprises/acme", body: nil, status: 409),
        Case(method: "DELETE", path: "/api/v1/zones/acme/app1/web", body: nil, status: 409),
        Case(method: "DELETE", path: "/api/v1/hosts/h1", body: nil, status: 409),
    ]

    @Test func everyBadRequestGetsAClear4xxAndChangesNothing() async throws {
        try await withController { controller in
            let client = controller.client()
            try await makeSubnet(client)
            let _: HostRecord = try await client.put("/api/v1/hosts/h1", HostRegistration(underlayIP: "10.99.0.1"))
            let _: Endpoint = try await client.post("/api/v1/endpoints", EndpointCreate(subnet: "acme/app1/web/red", name: "web1",
                                                                                        host: "h1"))
            let _: FloatingIPPool = try await client.post("/api/v1/fip-pools", FloatingIPPoolCreate(enterprise: "acme", name: "public",
                cidr: "203.0.113.0/28"))
            let before: [String: [Event]] = try await client.get("/api/v1/events?since=0&limit=1000")
            for badCase in Self.cases {
                let answer = try await rawRequest(client, badCase.method, badCase.path, body: badCase.body)
                #expect(answer.status == badCase.status, "\(badCase): \(answer.error?.error ?? "no error body")")
                #expect(answer.error.map { !$0.error.isEmpty } == true, "\(badCase) has no message")
                if let field = badCase.field {
                    #expect(answer.error?.field == field, "\(badCase): \(answer.error?.error ?? "")")
                }
            }
            let after: [String: [Event]] = try await client.get("/api/v1/events?since=0&limit=1000")
            #expect(after["items"]?.count == before["items"]?.count, "a refused request recorded a change")
            let usage: [String: Int] = try await client.get("/api/v1/subnets/acme/app1/web/red/usage")
            #expect(usage["used"] == 1, "a refused endpoint kept an address")
        }
    }

    @Test func oversizedBodiesAre413() async throws {
        try await withController { controller in
            let huge = #"{"name": ""# + String(repeating: "a", count: 2 << 20) + #""}"#
            let answer = try await rawRequest(controller.client(), "POST", "/api/v1/enterprises", body: huge)
            #expect(answer.status == 413 && answer.error?.error.contains("1 MiB") == true)
        }
    }

    @Test func requestsWithoutAValidTokenAre401() async throws {
        try await withController { controller in
            let anonymous = controller.anonymousClient()
            let missing = try await rawRequest(anonymous, "GET", "/api/v1/enterprises", body: nil)
            let wrong = try await rawRequest(anonymous, "GET", "/api/v1/enterprises", body: nil, token: "trl_wrong")
            let health = try await rawRequest(anonymous, "GET", "/healthz", body: nil)
            #expect(missing.status == 401 && missing.error?.error.contains("bearer token") == true)
            #expect(wrong.status == 401 && health.status == 200)
        }
    }

    /// A client guessing tokens (user tokens, host credentials, join tokens) is locked out after 20
    /// failures a minute, even with a good token then, and the admin sees it in the event log.
    @Test func guessingTokensLocksTheClientOut() async throws {
        try await withController { controller in
            let anonymous = controller.anonymousClient()
            let guesses = (0..<20).map { index in
                APIToken.generate(prefix: [APIToken.userPrefix, APIToken.hostPrefix, APIToken.joinPrefix][index % 3])
            }
            for guess in guesses {
                let answer = guess.hasPrefix(APIToken.joinPrefix)
                    ? try await rawRequest(anonymous, "POST", "/api/v1/join", body: #"{"host": "h1", "joinToken": "\#(guess)"}"#)
                    : try await rawRequest(anonymous, "GET", "/api/v1/enterprises", body: nil, token: guess)
                #expect(answer.status == 401)
            }
            let locked = try await rawRequest(anonymous, "GET", "/api/v1/enterprises", body: nil, token: controller.adminToken)
            #expect(locked.status == 429 && locked.error?.error.contains("too many failed authentications from 127.0.0.1") == true)
            let admin = ControllerClient(baseURL: ControllerClient.baseURL(socket: controller.socket), token: controller.adminToken)
            let events: [String: [Event]] = try await admin.get("/api/v1/events?since=0&limit=1000")
            let recorded = events["items", default: []].filter { $0.action == .unauthenticated }
            #expect(recorded.map { $0.object?["failures"] } == [.number(1), .number(20)])
            #expect(recorded.allSatisfy { $0.path == "127.0.0.1" && $0.object?["lockedOut"] != nil })
            let logged = try controller.storeBytes()
            #expect(logged.contains("127.0.0.1"), "the store's files hold the recorded events")
            #expect(guesses.allSatisfy { !logged.contains($0) }, "a token that was tried is stored as it was sent")
        }
    }
}
