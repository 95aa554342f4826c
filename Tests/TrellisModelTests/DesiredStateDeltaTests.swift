import Foundation
import Testing
@testable import TrellisModel

@Suite struct DesiredStateDeltaTests {
    func endpoint(_ name: String, host: String = "h1", state: EndpointState = .pending) -> Endpoint {
        Endpoint(id: name.hashValue & 0xffff, path: "acme/app1/web/red/\(name)", name: name, subnet: "acme/app1/web/red",
                 domain: "acme/app1", enterprise: "acme", kind: .container, host: host, ip: IPv4Address("10.0.0.\(name.count + 1)")!,
                 mac: .endpoint(sequence: UInt32(name.count)), state: state, externalIds: [:], revision: 1,
                 createdAt: Date(timeIntervalSince1970: 0))
    }

    func remote(_ name: String, vtep: String) -> RemoteEndpoint {
        RemoteEndpoint(path: "acme/app1/web/red/\(name)", subnet: "acme/app1/web/red", ip: IPv4Address("10.0.1.\(name.count)")!,
                       mac: .endpoint(sequence: 99), host: "h2", vtep: IPv4Address(vtep)!)
    }

    func state(_ endpoints: [Endpoint], _ remotes: [RemoteEndpoint], vteps: [String]) -> DesiredState {
        let subnet = DesiredSubnet(path: "acme/app1/web/red", cidr: try! IPv4Network.parse("10.0.0.0/16"),
                                   gateway: IPv4Address("10.0.0.1")!,
                                   gatewayMAC: .gateway(vni: 5000), vni: 5000, dhcp: false, remoteVTEPs: vteps.map { IPv4Address($0)! })
        return DesiredState(host: "h1", revision: 1, underlayIP: IPv4Address("192.0.2.1"),
                            domains: [DesiredDomain(path: "acme/app1", id: 1, subnets: [subnet], policies: [])],
                            endpoints: endpoints, remoteEndpoints: remotes, profiles: []).canonical
    }

    @Test func deltaCarriesOnlyWhatChangedAndReplaysExactly() throws {
        let old = state([endpoint("a"), endpoint("bb")], [remote("x", vtep: "192.0.2.2"), remote("yy", vtep: "192.0.2.2")],
                        vteps: ["192.0.2.2"])
        var new = state([endpoint("a", state: .up), endpoint("ccc")], [remote("yy", vtep: "192.0.2.2")], vteps: ["192.0.2.2"])
        new.revision = 7
        let delta = new.delta(from: old)
        #expect(delta.endpoints.map(\.name) == ["a", "ccc"])
        #expect(delta.removedEndpoints == ["acme/app1/web/red/bb"])
        #expect(delta.removedRemoteEndpoints == ["acme/app1/web/red/x"] && delta.remoteEndpoints.isEmpty)
        #expect(delta.domains.isEmpty && delta.underlayIP == nil)
        #expect(old.applying(delta, revision: 7) == new)
        #expect(new.delta(from: new).isEmpty)
    }

    @Test func emptyListsAreLeftOutOfTheWireForm() throws {
        var delta = DesiredStateDelta()
        delta.removedEndpoints = ["acme/app1/web/red/a"]
        let json = String(decoding: try JSONCoding.encoder().encode(delta), as: UTF8.self)
        #expect(json == #"{"removedEndpoints":["acme/app1/web/red/a"]}"#)
        #expect(try JSONCoding.decoder().decode(DesiredStateDelta.self, from: Data(json.utf8)) == delta)
    }

    /// Deltas between random states replay exactly, whether the lists come in path order (walked side by side)
    /// or not (hashed), and a path both removed and changed ends as changed.
    @Test func randomDeltasReplayExactlyInAndOutOfOrder() throws {
        var generator = SystemRandomNumberGenerator()
        for round in 0..<200 {
            func remotes() -> [RemoteEndpoint] {
                (0..<Int.random(in: 0...30, using: &generator)).map { _ in
                    let vtep = Bool.random(using: &generator) ? "192.0.2.2" : "192.0.2.3"
                    return remote("r\(Int.random(in: 0..<40, using: &generator))", vtep: vtep)
                }
            }
            let old = state([], Dictionary(remotes().map { ($0.path, $0) }, uniquingKeysWith: { a, _ in a }).values.map { $0 }, vteps: [])
            var new = state([], Dictionary(remotes().map { ($0.path, $0) }, uniquingKeysWith: { a, _ in a }).values.map { $0 }, vteps: [])
            new.revision = 2
            #expect(old.applying(new.delta(from: old), revision: 2) == new, "round \(round)")
            var shuffled = new
            shuffled.remoteEndpoints.shuffle(using: &generator)
            let fromShuffled = shuffled.delta(from: old)
            #expect(Set(fromShuffled.remoteEndpoints.map(\.path)) == Set(new.delta(from: old).remoteEndpoints.map(\.path)))
            #expect(old.applying(fromShuffled, revision: 2) == new, "round \(round), shuffled")
        }
        let kept = remote("kept", vtep: "192.0.2.9")
        #expect(merging([remote("kept", vtep: "192.0.2.2")], [kept], [kept.path]) == [kept])
    }
}
