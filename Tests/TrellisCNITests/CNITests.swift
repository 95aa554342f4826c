import Foundation
import Testing
import TrellisCNI

@Suite struct CNIWireTests {
    let base = ["CNI_COMMAND": "ADD", "CNI_CONTAINERID": "4f1c", "CNI_NETNS": "/run/netns/c1", "CNI_IFNAME": "eth0"]

    func error(_ body: () throws -> Void) -> CNIError? {
        do { try body() } catch { return error as? CNIError }
        return nil
    }

    @Test func theEnvironmentNamesWhatIsMissing() throws {
        let arguments = "IgnoreUnknown=1;K8S_POD_NAME=Web_1;K8S_POD_NAMESPACE=shop;IP=192.168.10.9"
        let call = try CNIEnvironment(base.merging(["CNI_ARGS": arguments]) { $1 })
        #expect(call.command == .add && call.arguments["IP"] == "192.168.10.9" && call.endpointName == "web-1-shop")
        #expect(call.owner == "cni:4f1c/eth0")
        #expect(try CNIEnvironment(base.merging(["CNI_ARGS": "K8S_POD_NAME=api;K8S_POD_NAMESPACE=default"]) { $1 }).endpointName == "api")
        let id = String(repeating: "ab", count: 40)
        #expect(try CNIEnvironment(base.merging(["CNI_CONTAINERID": id]) { $1 }).endpointName == String(id.prefix(63)),
                "a label has 63 bytes at most")
        #expect(error { _ = try CNIEnvironment(base.filter { $0.key != "CNI_NETNS" }) }?.msg == "CNI_NETNS is not set")
        #expect(error { _ = try CNIEnvironment(base.merging(["CNI_IFNAME": "a-name-longer-than-15"]) { $1 }) }?.code == 4)
        #expect(error { _ = try CNIEnvironment(["CNI_COMMAND": "FROB"]) }?.code == 4)
        let delete = try CNIEnvironment(["CNI_COMMAND": "DEL", "CNI_CONTAINERID": "4f1c", "CNI_IFNAME": "eth0"])
        #expect(delete.netns.isEmpty, "DEL comes without a namespace from containerd")
        #expect(try CNIEnvironment(["CNI_COMMAND": "VERSION"]).command == .version)
    }

    @Test func configurationsAreReadWithTheKeysRuntimesAdd() throws {
        let text = """
            {"cniVersion": "0.4.0", "name": "red", "type": "trellis", "subnet": "acme/app1/web/red", "capabilities": {"ips": true},
             "runtimeConfig": {"ips": ["192.168.10.7/24"], "portMappings": [], "bandwidth": {"ingressRate": 20000000,
             "ingressBurst": 2147483647, "egressRate": 10000000}}, "prevResult": {"cniVersion": "0.4.0",
             "interfaces": [], "ips": [], "routes": [], "dns": {}}, "cni.dev/attachments": [{"containerID": "a", "ifname": "eth0"}]}
            """
        let configuration = try CNINetworkConfiguration.parse(Array(text.utf8), needsSubnet: true)
        #expect(configuration.subnet == "acme/app1/web/red" && configuration.validAttachments?.first?.owner == "cni:a/eth0")
        #expect(configuration.runtimeConfig?.bandwidth == CNIBandwidth(ingressRate: 20_000_000, ingressBurst: 2_147_483_647,
                                                                        egressRate: 10_000_000))
        #expect(configuration.requestedAddress(try CNIEnvironment(base)) == "192.168.10.7")
        #expect(configuration.requestedAddress(try CNIEnvironment(base.merging(["CNI_ARGS": "IP=192.168.10.8"]) { $1 })) == "192.168.10.8")
    }

    @Test func badConfigurationsGetTheSpecsCodes() {
        func code(_ text: String) -> CNIError? { error { _ = try CNINetworkConfiguration.parse(Array(text.utf8), needsSubnet: true) } }
        #expect(code("not json")?.code == 6)
        let noSubnet = code(#"{"cniVersion": "1.0.0", "name": "red", "type": "trellis"}"#)
        #expect(noSubnet?.code == 7 && noSubnet?.msg.contains("'subnet'") == true)
        #expect(code(#"{"cniVersion": "1.0.0", "name": 3, "type": "trellis", "subnet": "a/b/c/d"}"#)?.msg.contains("'name'") == true)
        #expect(code(#"{"cniVersion": "0.3.1", "name": "red", "type": "trellis", "subnet": "a/b/c/d"}"#)?.code == 1)
        #expect(code(#"{"name": "red", "type": "trellis", "subnet": "a/b/c/d"}"#)?.msg.contains("'cniVersion'") == true)
        let negative = code(#"{"cniVersion": "1.0.0", "name": "red", "type": "trellis", "subnet": "a/b/c/d", "runtimeConfig":"#
                            + #" {"bandwidth": {"egressRate": 1000000, "egressBurst": -8}}}"#)
        #expect(negative?.code == 7 && negative?.msg.contains("'runtimeConfig.bandwidth.egressBurst'") == true,
                "\(String(describing: negative))")
    }

    @Test func resultsFollowTheConfigurationsVersion() throws {
        let attached = CNIAttachmentResult(endpoint: "acme/app1/web/red/web", ip: "192.168.10.2", prefixLength: 24, gateway: "192.168.10.1",
                                           mac: "02:7e:00:00:00:01", nameserver: "169.254.169.253", search: ["red.app1", "app1"])
        for version in ["0.4.0", "1.0.0"] {
            let data = try JSONEncoder().encode(CNIResult(version: version, attachment: attached, ifname: "eth0", netns: "/run/netns/c1"))
            let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
            let ips = try #require(object["ips"] as? [[String: Any]])
            #expect(object["cniVersion"] as? String == version)
            #expect(ips.first?["address"] as? String == "192.168.10.2/24" && ips.first?["interface"] as? Int == 0)
            #expect((ips.first?["version"] as? String) == (version == "0.4.0" ? "4" : nil), "only 0.x names the IP version")
            let interface = try #require((object["interfaces"] as? [[String: Any]])?.first)
            #expect(interface["mac"] as? String == "02:7e:00:00:00:01" && interface["sandbox"] as? String == "/run/netns/c1")
        }
    }

    @Test func agentAnswersAreReadWithALengthOrInChunks() {
        let plain = Array("HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 4\r\n\r\n{}xx".utf8)
        #expect(HTTPMessage.response(plain).map { $0.status == 201 && $0.body == Array("{}xx".utf8) } == true)
        let chunked = Array("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n".utf8)
        #expect(HTTPMessage.response(chunked).map { $0.body == Array("abcde".utf8) } == true)
        #expect(HTTPMessage.response(Array("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort".utf8)) == nil, "cut short")
        #expect(HTTPMessage.response(Array("garbage".utf8)) == nil)
        let request = String(decoding: HTTPMessage.request("POST", "/v1/cni/add", body: Array("{}".utf8)), as: UTF8.self)
        #expect(request.hasPrefix("POST /v1/cni/add HTTP/1.1\r\n") && request.contains("Content-Length: 2\r\n"))
        #expect(request.hasSuffix("\r\n\r\n{}"))
    }
}
