import Foundation
import Testing
@testable import TrellisController
import TrellisModel
import TrellisStore
import TrellisTestSupport

/// A desired-state watch whose agent is slow to take each message, with keepalives due all the time.
@Suite struct WatchKeepaliveTests {
    actor Received {
        var messages: [WatchMessage] = []
        func append(_ message: WatchMessage) { messages.append(message) }
        func remotePaths() -> Set<String> {
            var state: DesiredState?
            for message in messages {
                switch message.type {
                case .snapshot: state = message.state
                case .delta: if let delta = message.delta { state = state?.applying(delta, revision: message.revision) }
                case .bookmark: break
                }
            }
            return Set(state?.remoteEndpoints.map(\.path) ?? [])
        }
    }

    /// The hub keeps only a watcher's newest signal, so a keepalive can replace a change's: the watch
    /// must still deliver the change, not answer with a bookmark that claims the agent is current.
    @Test func aKeepaliveNeverSwallowsAChange() async throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let registry = Registry(store: try SQLiteStore(path: directory.appendingPathComponent("t.db").path),
                                watchKeepalive: .milliseconds(1))
        let admin = Caller(name: "admin", enterprise: nil, admin: true)
        _ = try await registry.createEnterprise(EnterpriseCreate(name: "acme"), admin)
        _ = try await registry.createDomain(DomainCreate(enterprise: "acme", name: "app1"), admin)
        _ = try await registry.createZone(ZoneCreate(domain: "acme/app1", name: "web"), admin)
        let subnet = try await registry.createSubnet(SubnetCreate(zone: "acme/app1/web", name: "red", cidr: "10.5.0.0/24"), admin)
        for (host, ip) in [("h1", "10.99.0.1"), ("h2", "10.99.0.2")] {
            _ = try await registry.registerHost(host, HostRegistration(underlayIP: ip), admin)
        }
        _ = try await registry.createEndpoint(EndpointCreate(subnet: subnet.path, name: "anchor", host: "h1"), admin)

        let received = Received()
        let watch = Task {
            try await registry.streamDesiredState(host: "h1", since: -1) { message in
                if let message = message as? WatchMessage { await received.append(message) }
                // A slow reader: pokes arrive while each message is being sent.
                try await Task.sleep(for: .milliseconds(20))
            }
        }
        defer { watch.cancel() }
        try await Task.sleep(for: .milliseconds(100))
        var made: [String] = []
        for index in 0..<5 {
            made.append(try await registry.createEndpoint(EndpointCreate(subnet: subnet.path, name: "r\(index)", host: "h2"), admin).path)
            try await Task.sleep(for: .milliseconds(30))
        }
        let deadline = ContinuousClock.now + .seconds(5)
        while await received.remotePaths() != Set(made), ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(await received.remotePaths() == Set(made), "every endpoint made on h2 reaches h1's watch")
    }
}
