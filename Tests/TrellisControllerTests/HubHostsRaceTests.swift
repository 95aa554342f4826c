import Foundation
import Testing
@testable import TrellisController
import TrellisModel
import TrellisStore
import TrellisTestSupport

/// The hub's list of hosts, read while a host registers: the read may come back without the new host, and kept, it
/// would hide that host's endpoints from every other host until the next host change (seen once in CI: h1 never got
/// the forwarding entries of an endpoint on h2 that registered during h1's first desired-state read).
@Suite struct HubHostsRaceTests {
    /// Holds the first read that lists hosts, once armed, after it has read and before it answers.
    actor Gate {
        var armed = false
        var held: CheckedContinuation<Void, Never>?
        func arm() { armed = true }
        func pass() async {
            guard armed else { return }
            armed = false
            await withCheckedContinuation { held = $0 }
        }
        func holding() -> Bool { held != nil }
        func release() { held?.resume(); held = nil }
    }

    /// A store whose gate, once armed, holds the first read that lists hosts, or the first write's return
    /// after it has committed.
    final class GatedStore: Store {
        enum Held { case readOfHosts, returnOfWrite }
        let inner: any Store
        let held: Held
        let gate = Gate()
        init(_ inner: any Store, holding held: Held = .readOfHosts) { self.inner = inner; self.held = held }
        func read<T: Sendable>(_ body: @escaping @Sendable (any StoreReader) throws -> T) async throws -> T {
            let value = try await inner.read(body)
            if held == .readOfHosts, value is [HostRecord] { await gate.pass() }
            return value
        }
        func write<T: Sendable>(actor: String, _ body: @escaping @Sendable (any StoreWriter) throws -> T) async throws -> WriteResult<T> {
            let result = try await inner.write(actor: actor, body)
            if held == .returnOfWrite { await gate.pass() }
            return result
        }
        func trimHistory(keepingEvents count: Int, recordedAfter cutoff: Date) async throws -> HistoryTrim {
            try await inner.trimHistory(keepingEvents: count, recordedAfter: cutoff)
        }
        var commits: Int { inner.commits }
    }

    @Test func aHostThatRegistersDuringAReadOfTheHostsIsNotLeftOut() async throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = GatedStore(try SQLiteStore(path: directory.appendingPathComponent("t.db").path))
        let registry = Registry(store: store)
        let admin = Caller(name: "admin", enterprise: nil, admin: true)
        _ = try await registry.createEnterprise(EnterpriseCreate(name: "acme"), admin)
        _ = try await registry.createDomain(DomainCreate(enterprise: "acme", name: "app1"), admin)
        _ = try await registry.createZone(ZoneCreate(domain: "acme/app1", name: "web"), admin)
        _ = try await registry.createSubnet(SubnetCreate(zone: "acme/app1/web", name: "red", cidr: "10.5.0.0/24"), admin)
        _ = try await registry.registerHost("h1", HostRegistration(underlayIP: "10.99.0.1"), admin)
        _ = try await registry.createEndpoint(EndpointCreate(subnet: "acme/app1/web/red", name: "a", host: "h1"), admin)

        await store.gate.arm()
        let first = Task { try await registry.hub.state(for: "h1") }
        while await !store.gate.holding() { try await Task.sleep(for: .milliseconds(1)) }
        // h2 registers and gets an endpoint while h1's read of the hosts is held, its answer already made.
        _ = try await registry.registerHost("h2", HostRegistration(underlayIP: "10.99.0.2"), admin)
        _ = try await registry.createEndpoint(EndpointCreate(subnet: "acme/app1/web/red", name: "b", host: "h2"), admin)
        await store.gate.release()
        _ = try await first.value

        let state = try await registry.hub.state(for: "h1")
        #expect(state.remoteEndpoints.map(\.path) == ["acme/app1/web/red/b"])
    }
}
