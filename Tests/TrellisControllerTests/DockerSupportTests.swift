import Foundation
import Testing
import TrellisClient
import TrellisModel
import TrellisTestSupport

/// What the controller keeps for the Docker adapters: actions on behalf of a container's user, the
/// Docker network ↔ subnet mapping, refused attachments in the event log, and DNS hostnames.
@Suite struct DockerSupportTests {
    @Test func anAdminActsWithTheRightsOfTheUserItNames() async throws {
        try await withController { controller in
            let admin = controller.client()
            try await makeSubnet(admin, enterprise: "acme")
            try await makeSubnet(admin, enterprise: "globex", cidr: "192.168.10.0/24")
            let alice: UserWithToken = try await admin.post("/api/v1/users", UserCreate(name: "alice", enterprise: "acme"))
            let _: UserWithToken = try await admin.post("/api/v1/users", UserCreate(name: "bob", enterprise: "globex"))

            let mine: Endpoint = try await admin.acting(for: "alice").post("/api/v1/endpoints", EndpointCreate(subnet: "acme/app1/web/red",
                name: "web1"))
            #expect(mine.enterprise == "acme")
            await #expect(throws: TrellisError.self) {
                let _: Endpoint = try await admin.acting(for: "bob").post("/api/v1/endpoints", EndpointCreate(subnet: "acme/app1/web/red",
                    name: "web2"))
            }
            let refused = try await rawRequest(admin.acting(for: "bob"), "POST", "/api/v1/endpoints",
                                               body: #"{"subnet": "acme/app1/web/red", "name": "web2"}"#)
            #expect(refused.status == 404)
            let ghost = try await rawRequest(admin.acting(for: "ghost"), "GET", "/api/v1/subnets", body: nil)
            #expect(ghost.status == 403 && ghost.error?.field == "user")
            // Only an admin may act for someone else.
            let escalation = try await rawRequest(controller.client(token: alice.token).acting(for: "admin"), "GET", "/api/v1/users",
                                                  body: nil)
            #expect(escalation.status == 403)
            let events: [String: [Event]] = try await admin.get("/api/v1/events?since=0&limit=1000")
            #expect(events["items"]?.contains { $0.path == "acme/app1/web/red/web1" && $0.actor == "alice (via admin)" } == true)
        }
    }

    @Test func dockerNetworksRefusalsAndHostnames() async throws {
        try await withController { controller in
            let admin = controller.client()
            try await makeSubnet(admin)
            let _: HostRecord = try await admin.put("/api/v1/hosts/h1", HostRegistration(underlayIP: "10.99.0.1"))
            let id = String(repeating: "ab", count: 32)
            let body = DockerNetworkCreate(host: "h1", networkID: id, subnet: "acme/app1/web/red", poolID: "pending:1")
            let network: DockerNetwork = try await admin.post("/api/v1/docker-networks", body)
            #expect(network.path == "h1/abababababab" && network.enterprise == "acme" && network.networkID == id)
            let again: DockerNetwork = try await admin.post("/api/v1/docker-networks", body)
            #expect(again == network, "recording a network twice is harmless")
            let other = try await rawRequest(admin, "POST", "/api/v1/docker-networks",
                                             body: #"{"host": "h1", "networkID": "\#(id)", "subnet": "acme/app1/web/red","#
                                                 + #" "poolID": "pending:2"}"#)
            #expect(other.status == 409 && other.error?.field == "networkID")
            let listed: ListBody<DockerNetwork> = try await admin.get("/api/v1/docker-networks?host=h1")
            #expect(listed.items == [network])
            try await admin.delete("/api/v1/docker-networks/h1/abababababab")
            let empty: ListBody<DockerNetwork> = try await admin.get("/api/v1/docker-networks")
            #expect(empty.items.isEmpty)

            _ = try await admin.send(.POST, "/api/v1/hosts/h1/refusals", body: try JSONCoding.encoder().encode(
                AttachRefusal(path: "acme/app1/web/red/evil", reason: "as user bob: no subnet", container: "c0ffee", user: "bob")))
            let events: [String: [Event]] = try await admin.get("/api/v1/events?since=0&limit=1000")
            let refusal = try #require(events["items"]?.last)
            #expect(refusal.action == .refused && refusal.kind == .endpoint && refusal.enterprise == "acme")
            #expect(refusal.object?["reason"]?.stringValue == "as user bob: no subnet"
                && refusal.object?["container"]?.stringValue == "c0ffee")
            let usage: [String: Int] = try await admin.get("/api/v1/subnets/acme/app1/web/red/usage")
            #expect(usage["used"] == 0, "a refusal holds no address")

            let endpoint: Endpoint = try await admin.post("/api/v1/endpoints", EndpointCreate(subnet: "acme/app1/web/red", name: "docker-1",
                                                                                              host: "h1"))
            #expect(endpoint.dnsName == "docker-1")
            let named: Endpoint = try await admin.patch("/api/v1/endpoints/\(endpoint.id)", EndpointUpdate(hostname: "db"))
            #expect(named.hostname == "db" && named.dnsName == "db")
            let cleared: Endpoint = try await admin.patch("/api/v1/endpoints/\(endpoint.id)", EndpointUpdate(hostname: ""))
            #expect(cleared.hostname == nil)
        }
    }
}
