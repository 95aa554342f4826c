import Foundation
import Testing
@testable import TrellisDocker
import TrellisModel

@Suite struct ContainerVariablesTests {
    let all = ["TRELLIS_ENTERPRISE=acme", "TRELLIS_DOMAIN=app1", "TRELLIS_ZONE=web", "TRELLIS_SUBNET=red", "TRELLIS_USER=alice",
               "PATH=/bin"]

    @Test func environmentOrLabelsNameTheSubnetAndTheUser() throws {
        let fromEnv = try #require(try ContainerVariables.parse(env: all + ["TRELLIS_PROFILE=gold", "TRELLIS_IP=192.168.10.9"],
                                                                labels: [:]))
        #expect(fromEnv.subnetPath == "acme/app1/web/red" && fromEnv.user == "alice")
        #expect(fromEnv.profile == "acme/gold" && fromEnv.ip == "192.168.10.9")
        let labels = ["trellis.enterprise": "acme", "trellis.domain": "app1", "trellis.zone": "web", "trellis.subnet": "blue",
                      "trellis.user": "bob"]
        let fromLabels = try #require(try ContainerVariables.parse(env: [], labels: labels))
        #expect(fromLabels.subnetPath == "acme/app1/web/blue" && fromLabels.user == "bob")
        let mixed = try #require(try ContainerVariables.parse(env: ["TRELLIS_SUBNET=red"], labels: labels))
        #expect(mixed.subnet == "red", "the environment wins over labels")
        #expect(try ContainerVariables.parse(env: ["PATH=/bin", "TRELLISH=1"], labels: ["other": "x"]) == nil)
    }

    @Test func aMissingOrMalformedVariableIsNamed() {
        for (env, field) in [(Array(all.dropLast(2)), "TRELLIS_USER"), (all + ["TRELLIS_IP=10.1"], "TRELLIS_IP"),
                             (all.map { $0 == "TRELLIS_ZONE=web" ? "TRELLIS_ZONE=Web Zone" : $0 }, "TRELLIS_ZONE")] {
            #expect(performing: { _ = try ContainerVariables.parse(env: env, labels: [:]) },
                    throws: { ($0 as? TrellisError)?.field == field })
        }
    }

    @Test func containerNamesBecomeEndpointNames() {
        #expect(ContainerVariables.endpointName(container: "Web_1", id: "abc") == "web_1")
        #expect(ContainerVariables.endpointName(container: "my.app", id: "abc") == "my-app")
        #expect(ContainerVariables.endpointName(container: "--", id: "0123456789abcdef") == "c-0123456789ab")
    }
}

@Suite struct PluginProtocolTests {
    /// Bodies as Debian's docker.io 20.10 sent them to a logging plugin.
    @Test func decodesWhatTheEngineSends() throws {
        let create = #"{"NetworkID":"d5679e65","Options":{"com.docker.network.enable_ipv6":false,"#
            + #""com.docker.network.generic":{"trellis.subnet":"acme/app1/web/red"}},"#
            + #""IPv4Data":[{"AddressSpace":"g","Gateway":"10.99.0.1/24","Pool":"10.99.0.0/24"}],"IPv6Data":[]}"#
        let network = try JSONDecoder().decode(CreateNetworkRequest.self, from: Data(create.utf8))
        #expect(network.generic == ["trellis.subnet": "acme/app1/web/red"] && network.IPv4Data?.first?.Pool == "10.99.0.0/24")
        let address = try JSONDecoder().decode(RequestAddressRequest.self, from: Data(#"{"PoolID":"p1","Address":"","Options":null}"#.utf8))
        #expect(address.PoolID == "p1" && address.Options == nil)
        let endpoint = try JSONDecoder().decode(CreateEndpointRequest.self, from: Data(
            (#"{"NetworkID":"n","EndpointID":"e","Interface":{"Address":"10.99.0.5/24","AddressIPv6":"","MacAddress":""},"#
             + #""Options":{"com.docker.network.endpoint.exposedports":[],"com.docker.network.portmap":[]}}"#).utf8))
        #expect(endpoint.Interface?.Address == "10.99.0.5/24")
        let join = try JSONDecoder().decode(JoinRequest.self,
            from: Data(#"{"NetworkID":"n","EndpointID":"e","SandboxKey":"/var/run/docker/netns/28a959e77c36","Options":{}}"#.utf8))
        #expect(join.SandboxKey.hasSuffix("28a959e77c36"))
    }

    @Test func networkErrorsAreErrAndIPAMErrorsAreError() throws {
        #expect(String(decoding: try JSONEncoder().encode(NetworkError(Err: "no")), as: UTF8.self) == #"{"Err":"no"}"#)
        #expect(String(decoding: try JSONEncoder().encode(IPAMError(Error: "no")), as: UTF8.self) == #"{"Error":"no"}"#)
        let join = JoinResponse(InterfaceName: .init(SrcName: "trh1", DstPrefix: "eth"), Gateway: "10.0.0.1")
        let text = String(decoding: try JSONEncoder().encode(join), as: UTF8.self)
        #expect(text.contains(#""SrcName":"trh1""#) && text.contains(#""DstPrefix":"eth""#) && text.contains(#""Gateway":"10.0.0.1""#))
    }

    @Test func decodesEngineEvents() throws {
        let line = #"{"status":"start","id":"abc","from":"trellis/busybox","Type":"container","Action":"start","#
            + #""Actor":{"ID":"abc","Attributes":{"image":"trellis/busybox","name":"web1"}},"#
            + #""scope":"local","time":1795000000,"timeNano":1795000000123456789}"#
        let event = try JSONDecoder().decode(EngineEvent.self, from: Data(line.utf8))
        #expect(event.Type == "container" && event.Action == "start" && event.Actor.Attributes?["name"] == "web1"
            && event.timeNano == 1795000000123456789)
    }
}
