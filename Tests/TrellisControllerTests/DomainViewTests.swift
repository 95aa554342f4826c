import Foundation
import Testing
@testable import TrellisController
import TrellisModel

@Suite struct DomainViewTests {
    func endpoint(_ name: String, host: String?, revision: Int) -> Endpoint {
        Endpoint(id: 1, path: "acme/app1/web/red/\(name)", name: name, subnet: "acme/app1/web/red", domain: "acme/app1",
                 enterprise: "acme", kind: .container, host: host, ip: IPv4Address("10.0.0.2")!, mac: .endpoint(sequence: 1),
                 state: .pending, externalIds: [:], revision: revision, createdAt: Date(timeIntervalSince1970: 0))
    }

    func event(_ action: EventAction, _ endpoint: Endpoint) throws -> Event {
        Event(id: endpoint.revision, revision: endpoint.revision, time: Date(), actor: "t", action: action, kind: .endpoint,
              path: endpoint.path, enterprise: "acme", object: try JSONCoding.value(of: endpoint))
    }

    func view(_ endpoints: [Endpoint], revision: Int) -> DesiredStateHub.DomainView {
        let domain = Domain(path: "acme/app1", name: "app1", enterprise: "acme", id: 1, revision: 1, createdAt: Date())
        return DesiredStateHub.DomainView(domain: domain, subnets: [], policies: [], endpoints: endpoints, revision: revision)
    }

    @Test func keepsOnlyPlacedEndpointsByHost() {
        let view = view([endpoint("a", host: "h1", revision: 3), endpoint("b", host: nil, revision: 4)], revision: 10)
        #expect(view.placed.keys.sorted() == ["h1"] && view.placed["h1"]?.count == 1)
    }

    @Test func appliesChangesInRevisionOrderAndIgnoresLateOnes() throws {
        var view = view([endpoint("a", host: "h1", revision: 3)], revision: 10)
        // Already in the loaded data.
        let applied1 = view.apply(try event(.updated, endpoint("a", host: "h9", revision: 9)))
        #expect(applied1)
        #expect(view.placed["h1"]?["acme/app1/web/red/a"] != nil && view.placed["h9"] == nil)
        // A move to h2 at 12, then a late change from 11 that must not undo it.
        let applied2 = view.apply(try event(.updated, endpoint("a", host: "h2", revision: 12)))
        #expect(applied2)
        let applied3 = view.apply(try event(.updated, endpoint("a", host: "h3", revision: 11)))
        #expect(applied3)
        #expect(view.placed.keys.sorted() == ["h2"])
        // Deleted at 14; a late create from 13 must not bring it back.
        let applied4 = view.apply(try event(.deleted, endpoint("a", host: "h2", revision: 14)))
        #expect(applied4)
        let applied5 = view.apply(try event(.created, endpoint("a", host: "h2", revision: 13)))
        #expect(applied5)
        #expect(view.placed.isEmpty && view.hostOf.isEmpty)
        // Unplacing an endpoint takes it out of the view.
        let applied6 = view.apply(try event(.created, endpoint("b", host: "h1", revision: 15)))
        #expect(applied6)
        let applied7 = view.apply(try event(.updated, endpoint("b", host: nil, revision: 16)))
        #expect(applied7)
        #expect(view.placed.isEmpty)
    }

    @Test func asksForARereadWhenAChangeCannotBeFollowed() {
        var view = view([], revision: 1)
        let broken = Event(id: 2, revision: 2, time: Date(), actor: "t", action: .created, kind: .endpoint,
                           path: "acme/app1/web/red/x", enterprise: "acme", object: .string("not an endpoint"))
        let applied8 = view.apply(broken)
        #expect(!applied8)
    }
}
