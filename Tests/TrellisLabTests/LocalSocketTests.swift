import Foundation
import Glibc
import Testing
import TrellisClient
import TrellisModel
import TrellisNetlink
import TrellisTestSupport

extension LabTests {
    /// The agent's two local sockets (its API and the Docker plugin's) are root's alone, and thousands of
    /// generated requests on them (malformed, oversized, half-written, JSON of every wrong shape) get
    /// answers, never a 5xx, never a stopped agent: a TCP flow across hosts keeps going through it all,
    /// and nothing is left in the controller or the kernel. No process of the lab shows a token in its
    /// command line, and no log holds one. The agents' own link to the controller is HTTPS, verified by curl.
    @Test func fuzzingTheLocalSocketsLeavesTheAgentAndItsDatapathIntact() async throws {
        let lab = try await RunningLab(hosts: 2, docker: true)
        try await lab.makeSubnet("acme/app1/web/red", cidr: "10.7.2.0/24")
        let a = try await lab.member("a", on: "h1", subnet: "acme/app1/web/red", ip: "10.7.2.11")
        let b = try await lab.member("b", on: "h2", subnet: "acme/app1/web/red", ip: "10.7.2.12")
        try await lab.settle(hosts: 2)
        let flow = try lab.flow(from: a, to: b, port: 7200)
        #expect(flow.carries("before"))
        let agentPID = lab.pid("h1")
        let host = try NetworkNamespace(path: "/run/netns/trellis-lab-h1")
        let linksBefore = try RouteNetlink(in: host).links().map(\.name).sorted()

        let agentSocket = lab.directory.appendingPathComponent("h1.sock").path
        let pluginSocket = lab.directory.appendingPathComponent("h1-docker/plugins/trellis.sock").path
        for socket in [agentSocket, pluginSocket] {
            var info = stat()
            #expect(stat(socket, &info) == 0 && info.st_mode & 0o777 == 0o600, "\(socket): mode \(String(info.st_mode & 0o777, radix: 8))")
        }
        // A body over 1 MiB, sent whole by curl, is a 413 that says so, not a 500 that names a NIO error.
        let big = lab.directory.appendingPathComponent("big.json")
        try Data("[\(String(repeating: "1,", count: 1 << 20))1]".utf8).write(to: big)
        let oversized = try runProgram(["/usr/bin/curl", "-s", "--unix-socket", agentSocket, "-H", "Content-Type: application/json",
                                        "--data-binary", "@\(big.path)", "-w", " %{http_code}", "http://localhost/v1/attach"]).output
        #expect(oversized.hasSuffix(" 413") && oversized.contains("larger than 1 MiB"), "\(oversized)")
        let fuzzer = repositoryRoot.appendingPathComponent("Tests/TrellisLabTests/socket-fuzz.py").path
        let targets: [(String, [String])] = [
            (agentSocket, ["/v1/attach", "/v1/detach", "/v1/cni/add", "/v1/cni/del", "/v1/cni/check", "/v1/cni/gc", "/v1/status"]),
            (pluginSocket, ["/Plugin.Activate"]
                + ["CreateNetwork", "DeleteNetwork", "CreateEndpoint", "Join", "Leave", "DeleteEndpoint", "EndpointOperInfo"]
                    .map { "/NetworkDriver." + $0 }
                + ["RequestPool", "RequestAddress", "ReleaseAddress", "ReleasePool"].map { "/IpamDriver." + $0 }),
        ]
        for (socket, paths) in targets {
            let run = try runProgram(["/usr/bin/python3", fuzzer, socket, "7", "600"] + paths)
            #expect(run.status == 0, "fuzzer: \(run.output)")
            let summary = try JSONSerialization.jsonObject(with: Data(run.output.utf8)) as? [String: Any]
            #expect(summary?["firstServerError"] is NSNull, "\(socket): \(run.output)")
            let answered = (summary?["classes"] as? [String: Int] ?? [:]).values.reduce(0, +)
            #expect(answered >= 600, "\(socket): \(run.output)")
            #expect(flow.carries("during \(socket)"))
        }
        #expect(kill(agentPID, 0) == 0 && lab.pid("h1") == agentPID, "the agent stopped")
        let agent = ControllerClient(baseURL: ControllerClient.baseURL(socket: agentSocket), token: nil)
        let status: AgentStatus = try await agent.get("/v1/status")
        #expect(status.connected)
        #expect(flow.carries("after"))
        #expect(try ping(from: a.namespace, b.ip).status == 0)
        #expect(Set(try await lab.endpoints().map(\.name)) == ["a", "b"], "the fuzz made or removed endpoints")
        #expect(try RouteNetlink(in: host).links().map(\.name).sorted() == linksBefore, "the fuzz left links in h1")

        // The agents reach the controller over HTTPS on the underlay: curl trusts it with the CA h1 keeps, and
        // neither plain HTTP nor an unverified connection gets an answer.
        func curl(_ arguments: String...) throws -> (status: Int32, output: String) {
            try runProgram(["/usr/bin/nsenter", "--net=/run/netns/trellis-lab-h1", "/usr/bin/curl", "-s", "-m", "3"] + arguments)
        }
        let caFile = lab.directory.appendingPathComponent("h1.state/ca.pem").path
        let verified = try curl("--cacert", caFile, "https://10.255.0.254:7443/healthz")
        #expect(verified.status == 0 && verified.output.contains("\"status\":\"ok\""), "\(verified)")
        #expect(try curl("http://10.255.0.254:7443/healthz").status != 0)
        #expect(try curl("https://10.255.0.254:7443/healthz").status != 0)

        let secret = try Regex("tr[lhj]_[0-9a-f]{40}")
        for name in ["controller", "h1", "h2"] {
            let commandLine = try String(contentsOfFile: "/proc/\(lab.pid(name))/cmdline", encoding: .utf8)
            #expect(commandLine.contains(secret) == false, "\(name)'s command line holds a token")
        }
        let logs = try FileManager.default.contentsOfDirectory(atPath: lab.directory.path).filter { $0.hasSuffix(".log") }
        #expect(logs.count >= 3)
        for log in logs {
            let text = try String(contentsOf: lab.directory.appendingPathComponent(log), encoding: .isoLatin1)
            #expect(text.contains(secret) == false, "\(log) holds a token")
        }
    }
}
