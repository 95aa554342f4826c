import Foundation
import Testing
@testable import TrellisController
import TrellisModel
import TrellisStore
import TrellisTestSupport

/// Two writes that commit in one order and return in the other: the later change must not reach the watchers
/// first. Published as it returned, it stamped a host's desired state with its revision while the earlier
/// change was missing from it, and an agent took that state for one that had both.
@Suite struct PublicationOrderTests {
    @Test func aChangeWaitsForAnEarlierWriteThatReturnsAfterIt() async throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let sqlite = try SQLiteStore(path: directory.appendingPathComponent("t.db").path)
        let store = HubHostsRaceTests.GatedStore(sqlite, holding: .returnOfWrite)
        let registry = Registry(store: store)
        let admin = Caller(name: "admin", enterprise: nil, admin: true)
        _ = try await registry.createEnterprise(EnterpriseCreate(name: "acme"), admin)
        _ = try await registry.createDomain(DomainCreate(enterprise: "acme", name: "app1"), admin)
        _ = try await registry.createZone(ZoneCreate(domain: "acme/app1", name: "web"), admin)
        _ = try await registry.createSubnet(SubnetCreate(zone: "acme/app1/web", name: "red", cidr: "10.5.0.0/24"), admin)
        _ = try await registry.registerHost("h1", HostRegistration(underlayIP: "10.99.0.1"), admin)
        _ = try await registry.createEndpoint(EndpointCreate(subnet: "acme/app1/web/red", name: "a", host: "h1"), admin)
        let before = try await registry.hub.state(for: "h1")
        #expect(before.endpoints.map(\.name) == ["a"])

        await store.gate.arm()
        let first = Task { try await registry.createEndpoint(EndpointCreate(subnet: "acme/app1/web/red", name: "b", host: "h1"), admin) }
        while await !store.gate.holding() { try await Task.sleep(for: .milliseconds(1)) }
        // "b" has committed; its write has not returned. "c" commits after it and returns first.
        let c = try await registry.createEndpoint(EndpointCreate(subnet: "acme/app1/web/red", name: "c", host: "h1"), admin)
        let during = try await registry.hub.state(for: "h1")
        #expect(during.revision < c.revision, "a state stamped with c's revision would claim b, which it lacks")
        #expect(during.endpoints.map(\.name) == ["a"])

        await store.gate.release()
        let b = try await first.value
        #expect(b.revision < c.revision)
        let after = try await registry.hub.state(for: "h1")
        #expect(after.revision >= c.revision)
        #expect(after.endpoints.map(\.name).sorted() == ["a", "b", "c"])
    }

    @Test func aFailedWriteHoldsBackNothing() async throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let registry = Registry(store: try SQLiteStore(path: directory.appendingPathComponent("t.db").path))
        let admin = Caller(name: "admin", enterprise: nil, admin: true)
        _ = try await registry.createEnterprise(EnterpriseCreate(name: "acme"), admin)
        await #expect(throws: TrellisError.self) { try await registry.createEnterprise(EnterpriseCreate(name: "acme"), admin) }
        _ = try await registry.createDomain(DomainCreate(enterprise: "acme", name: "app1"), admin)
        _ = try await registry.createZone(ZoneCreate(domain: "acme/app1", name: "web"), admin)
        _ = try await registry.createSubnet(SubnetCreate(zone: "acme/app1/web", name: "red", cidr: "10.5.0.0/24"), admin)
        _ = try await registry.registerHost("h1", HostRegistration(underlayIP: "10.99.0.1"), admin)
        let a = try await registry.createEndpoint(EndpointCreate(subnet: "acme/app1/web/red", name: "a", host: "h1"), admin)
        let state = try await registry.hub.state(for: "h1")
        #expect(state.revision >= a.revision)
        #expect(state.endpoints.map(\.name) == ["a"])
    }
}
