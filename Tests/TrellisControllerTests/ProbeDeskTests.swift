import Foundation
import Testing
@testable import TrellisController
import TrellisClient
import TrellisModel
import TrellisTestSupport

/// `POST /api/v1/explain/verify` hands a probe to the agent of the source's host through that host's long poll and
/// answers with its report; no other host sees or answers it, and a caller learns nothing of another enterprise.
/// (The lab test `explainVerifyHoldsTheComputedVerdictAgainstTheKernel` runs the real agents and kernel.)
@Suite struct ProbeDeskTests {
    @Test func aVerifyReachesOnlyTheSourceHostsAgentAndReturnsItsReport() async throws {
        try await withController { controller in
            let admin = controller.client()
            let red = try await makeSubnet(admin, zone: "web", subnet: "red", cidr: "10.1.1.0/24")
            let green = try await makeSubnet(admin, zone: "db", subnet: "green", cidr: "10.1.2.0/24")
            try await makeSubnet(admin, enterprise: "globex", cidr: "10.20.0.0/24")
            let h1 = try await HostCredentialTests.join("h1", controller)
            let h2 = try await HostCredentialTests.join("h2", controller)
            let _: HostRecord = try await h1.put("/api/v1/hosts/h1", HostRegistration(underlayIP: "10.255.0.1"))
            let _: HostRecord = try await h2.put("/api/v1/hosts/h2", HostRegistration(underlayIP: "10.255.0.2"))
            let web: Endpoint = try await admin.post("/api/v1/endpoints", EndpointCreate(subnet: red, name: "web1", host: "h1"))
            let db: Endpoint = try await admin.post("/api/v1/endpoints", EndpointCreate(subnet: green, name: "db1", host: "h2"))
            let alice: UserWithToken = try await admin.post("/api/v1/users", UserCreate(name: "alice", enterprise: "acme"))
            let intruder: UserWithToken = try await admin.post("/api/v1/users", UserCreate(name: "mallory", enterprise: "globex"))
            let body = #"{"from": "\#(web.path)", "to": "\#(db.path)", "protocol": "tcp", "port": 5432}"#

            // Nobody polls for h1 yet: a clear refusal at once, not a wait.
            let early = try await rawRequest(admin, "POST", "/api/v1/explain/verify", body: body)
            #expect(early.status == 409 && early.error?.error.contains("host 'h1' is not taking probes") == true, "\(early)")
            // Another host may not take h1's probes; another enterprise may not name acme's endpoints.
            let stolen = try await rawRequest(h2, "GET", "/api/v1/hosts/h1/probes", body: nil)
            #expect(stolen.status == 403, "\(stolen)")
            let foreign = try await rawRequest(admin, "POST", "/api/v1/explain/verify", body: body, token: intruder.token)
            #expect(foreign.status == 404 && foreign.error?.error == "no endpoint '\(web.path)'", "\(String(describing: foreign.error))")

            async let polled: ListBody<HostProbe> = h1.get("/api/v1/hosts/h1/probes?wait=20")
            try await Task.sleep(for: .milliseconds(300))
            async let verified: VerifiedExplanation = controller.client(token: alice.token).post(
                "/api/v1/explain/verify", FlowQuery(from: web.path, to: db.path, protocol: "tcp", port: 5432))
            let probes = try await polled
            #expect(probes.items.map(\.request) == [ProbeRequest(from: web.path, to: db.ip, protocol: .tcp, port: 5432)])
            let id = try #require(probes.items.first?.id)
            let kernel = ProbeResult(verdict: .deny, steps: [
                ProbeStep(family: "inet", table: "trellis", chain: "forward", handle: 7, rule: "drop", kind: "rule", verdict: "drop"),
            ], answered: false)
            let report = try String(decoding: JSONCoding.encoder().encode(ProbeReport(result: kernel)), as: UTF8.self)
            // Only h1 reports on its probe; a report must carry a result or an error, not both.
            #expect(try await rawRequest(h2, "POST", "/api/v1/hosts/h1/probes/\(id)", body: report).status == 403)
            #expect(try await rawRequest(admin, "POST", "/api/v1/hosts/h2/probes/\(id)", body: report).status == 404)
            let both = try await rawRequest(h1, "POST", "/api/v1/hosts/h1/probes/\(id)",
                                            body: #"{"error": "x", "result": {"verdict": "allow", "steps": []}}"#)
            #expect(both.status == 400 && both.error?.field == "result")
            #expect(try await rawRequest(h1, "POST", "/api/v1/hosts/h1/probes/\(id)", body: report).status == 204)
            let answer = try await verified
            #expect(answer.kernel == kernel && answer.agrees == true && answer.explanation.verdict == .deny)
            #expect(try await rawRequest(h1, "POST", "/api/v1/hosts/h1/probes/\(id)", body: report).status == 404, "answered once")

            // The agent's error comes back as a 409 that says so; a VM or a CIDR cannot send a probe.
            async let again: ListBody<HostProbe> = h1.get("/api/v1/hosts/h1/probes?wait=20")
            try await Task.sleep(for: .milliseconds(300))
            async let failing = rawRequest(admin, "POST", "/api/v1/explain/verify", body: body)
            let second = try #require(try await again.items.first)
            let _ = try await h1.send(.POST, "/api/v1/hosts/h1/probes/\(second.id)",
                                      body: try JSONCoding.encoder().encode(ProbeReport(error: "no such namespace")))
            let failed = try await failing
            #expect(failed.status == 409 && failed.error?.error == "host 'h1' could not send the probe: no such namespace")
            let fromNetwork = try await rawRequest(admin, "POST", "/api/v1/explain/verify",
                                                   body: #"{"from": "10.9.0.0/16", "to": "\#(db.path)", "port": 5432}"#)
            #expect(fromNetwork.status == 400 && fromNetwork.error?.field == "from")
        }
    }

    /// A probe nobody reports on ends its caller's wait with a 503 naming the host, and leaves the queue empty.
    @Test func anUnansweredProbeTimesOut() async throws {
        let desk = ProbeDesk(answerWithin: .milliseconds(300), pollGrace: .seconds(5))
        #expect(await desk.take(host: "h1", wait: .zero).isEmpty)
        let request = ProbeRequest(from: "acme/app1/web/red/web1", to: IPv4Address("10.1.1.2")!, protocol: .icmp, port: nil)
        for (host, code, words) in [("h1", TrellisError.Code.unavailable, "did not report the probe within"),
                                    ("h9", .conflict, "is not taking probes")] {
            do {
                _ = try await desk.submit(host: host, request)
                Issue.record("a probe nobody took was answered")
            } catch let error as TrellisError {
                #expect(error.code == code && error.message.contains("host '\(host)' \(words)"), "\(error.message)")
            }
        }
        #expect(await desk.take(host: "h1", wait: .zero).isEmpty, "the abandoned probe is no longer queued")
    }
}
