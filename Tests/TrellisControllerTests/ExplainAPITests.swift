import Foundation
import Testing
import TrellisClient
import TrellisModel
import TrellisTestSupport

/// `GET /api/v1/explain` resolves ends by path, address or CIDR within the caller's enterprise, refuses bad
/// input by field, and reveals nothing of another enterprise.
@Suite struct ExplainAPITests {
    func explain(_ client: ControllerClient, _ query: String) async throws -> PolicyExplanation {
        try await client.get("/api/v1/explain?\(query)")
    }

    @Test func explainsByPathAndAddressWithTheDecidingRule() async throws {
        try await withController { controller in
            let admin = controller.client()
            let red = try await makeSubnet(admin, zone: "web", subnet: "red", cidr: "10.1.1.0/24")
            let green = try await makeSubnet(admin, zone: "db", subnet: "green", cidr: "10.1.2.0/24")
            let _: PortProfile = try await admin.post("/api/v1/profiles", ProfileCreate(
                enterprise: "acme", name: "db", rules: [try ACLRule.parse("deny tcp ingress port 22")]))
            let web: Endpoint = try await admin.post("/api/v1/endpoints", EndpointCreate(subnet: red, name: "web1"))
            let db: Endpoint = try await admin.post("/api/v1/endpoints", EndpointCreate(subnet: green, name: "db1", profile: "acme/db"))
            let _: NetworkPolicy = try await admin.post("/api/v1/policies", PolicyCreate(domain: "acme/app1", name: "db-in", rules: [
                try PolicyRule.parse("allow udp from acme/app1/web to acme/app1/db port 53"),
                try PolicyRule.parse("allow tcp from acme/app1/web to acme/app1/db port 5432"),
            ]))

            let allowed = try await explain(admin, "from=\(web.path)&to=\(db.path)&protocol=tcp&port=5432")
            #expect(allowed.verdict == .allow && allowed.from.endpoint == web.path && allowed.to.profile == "acme/db")
            #expect(allowed.deciding?.stage == .networkPolicy && allowed.deciding?.object == "acme/app1/db-in")
            #expect(allowed.deciding?.ruleNumber == 2 && allowed.deciding?.rule == "allow tcp from acme/app1/web to acme/app1/db port 5432")
            #expect(allowed.steps.map(\.stage) == [.sourceProfile, .destinationProfile, .networkPolicy])

            let byAddress = try await explain(admin, "from=\(web.ip)&to=\(db.ip)&port=22")
            #expect(byAddress.verdict == .deny && byAddress.deciding?.stage == .destinationProfile && byAddress.to.endpoint == db.path)
            let other = try await explain(admin, "from=\(web.path)&to=\(db.path)&protocol=udp&port=5432")
            #expect(other.verdict == .deny && other.deciding?.stage == .isolation)
            let outside = try await explain(admin, "from=198.51.100.0/24&to=\(db.path)&protocol=icmp")
            #expect(outside.verdict == .deny && outside.deciding?.stage == .routing && outside.from.endpoint == nil)
        }
    }

    @Test func badInputIsA4xxNamingTheField() async throws {
        try await withController { controller in
            let admin = controller.client()
            let red = try await makeSubnet(admin)
            let web: Endpoint = try await admin.post("/api/v1/endpoints", EndpointCreate(subnet: red, name: "web1"))
            for (query, status, field) in [
                ("to=\(web.path)&port=80", 400, "from"), ("from=\(web.path)&port=80", 400, "to"),
                ("from=\(web.path)&to=\(web.path)", 400, "port"), ("from=\(web.path)&to=\(web.path)&port=0", 400, "port"),
                ("from=\(web.path)&to=\(web.path)&port=http", 400, "port"),
                ("from=\(web.path)&to=\(web.path)&protocol=icmp&port=80", 400, "port"),
                ("from=\(web.path)&to=\(web.path)&protocol=any&port=80", 400, "protocol"),
                ("from=\(web.path)&to=10.0.0.0/33&port=80", 400, "to"),
                ("from=10.0.0.0/8&to=10.9.9.9&port=80", 400, "from"),
                ("from=acme/app1/web/red/nobody&to=\(web.path)&port=80", 404, "from"),
                ("from=\(web.path)&to=\(String(repeating: "x/", count: 300))&port=80", 400, "to"),
            ] {
                let answer = try await rawRequest(admin, "GET", "/api/v1/explain?\(query)", body: nil)
                #expect(answer.status == status && answer.error?.field == field,
                        "\(query): \(answer.status) \(String(describing: answer.error))")
            }
        }
    }

    @Test func anotherEnterpriseIsInvisible() async throws {
        try await withController { controller in
            let admin = controller.client()
            let acme = try await makeSubnet(admin, enterprise: "acme")
            let globex = try await makeSubnet(admin, enterprise: "globex")
            let mine: Endpoint = try await admin.post("/api/v1/endpoints", EndpointCreate(subnet: acme, name: "web1"))
            let theirs: Endpoint = try await admin.post("/api/v1/endpoints", EndpointCreate(subnet: globex, name: "secret"))
            #expect(mine.ip == theirs.ip)
            let alice: UserWithToken = try await admin.post("/api/v1/users", UserCreate(name: "alice", enterprise: "acme"))
            let client = controller.client(token: alice.token)

            let foreign = try await rawRequest(client, "GET", "/api/v1/explain?from=\(mine.path)&to=\(theirs.path)&port=80", body: nil)
            let missing = try await rawRequest(client, "GET", "/api/v1/explain?from=\(mine.path)&to=globex/app1/web/red/nothing&port=80",
                                               body: nil)
            #expect(foreign.status == 404 && missing.status == 404 && foreign.error?.field == "to")
            #expect(foreign.error?.error.replacingOccurrences(of: "secret", with: "nothing") == missing.error?.error,
                    "another enterprise's endpoint is refused exactly as one that does not exist")
            // The address both enterprises use is alice's own endpoint to alice.
            let own = try await explain(client, "from=\(theirs.ip)&to=\(mine.path)&port=80")
            #expect(own.from.endpoint == mine.path && own.verdict == .allow)
            // The admin sees both, and must say which one.
            let ambiguous = try await rawRequest(admin, "GET", "/api/v1/explain?from=\(mine.ip)&to=203.0.113.1&port=80", body: nil)
            #expect(ambiguous.status == 400 && ambiguous.error?.field == "from")
            #expect(ambiguous.error?.error.contains("several domains") == true)
            let h1 = try await HostCredentialTests.join("h1", controller)
            let host = try await rawRequest(h1, "GET", "/api/v1/explain?from=\(mine.path)&to=\(mine.path)&port=80", body: nil)
            #expect(host.status == 403)
        }
    }
}
