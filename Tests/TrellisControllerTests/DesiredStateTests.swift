import Foundation
import Testing
import TrellisClient
import TrellisModel
import TrellisTestSupport

/// Reads watch lines from a stream into an async sequence the test can pull from.
actor LineCollector<T: Sendable> {
    private var items: [T] = []
    private var waiters: [CheckedContinuation<Void, Never>] = []
    /// Why the stream ended, once it has.
    private var ended: (any Error)?

    func append(_ item: T) {
        items.append(item)
        waiters.forEach { $0.resume() }
        waiters.removeAll()
    }

    func end(_ error: any Error) { ended = error }

    /// Waits up to `seconds` for item number `index`; fails at once, with the stream's error, if the stream ended before it.
    func item(_ index: Int, within seconds: Double = 10) async throws -> T {
        let deadline = ContinuousClock.now + .seconds(seconds)
        while items.count <= index {
            if let ended { throw TrellisError(.unavailable, "the stream ended before item \(index): \(ended)") }
            guard ContinuousClock.now < deadline else { throw TrellisError(.unavailable, "no item \(index) within \(seconds)s") }
            try await Task.sleep(for: .milliseconds(5))
        }
        return items[index]
    }

    var count: Int { items.count }
}

/// Follows an NDJSON stream of `path` into a collector until the returned task is cancelled.
func follow<T: Decodable & Sendable>(_ client: ControllerClient, _ path: String, as type: T.Type) -> (LineCollector<T>, Task<Void,
    any Error>) {
    let collector = LineCollector<T>()
    let task = Task {
        do {
            try await client.stream(path, as: T.self) { item in
                await collector.append(item)
                return true
            }
            await collector.end(TrellisError(.unavailable, "the server closed the stream"))
        } catch {
            await collector.end(error)
            throw error
        }
    }
    return (collector, task)
}

@Suite struct DesiredStateTests {
    @Test func desiredStateNamesLocalAndRemoteEndpoints() async throws {
        try await withController { controller in
            let client = controller.client()
            let red = try await makeSubnet(client)
            let blue = try await makeSubnet(client, zone: "db", subnet: "blue", cidr: "192.168.20.0/24")
            let other = try await makeSubnet(client, enterprise: "globex", cidr: "192.168.10.0/24")
            for (host, ip) in [("h1", "10.99.0.1"), ("h2", "10.99.0.2"), ("h3", "10.99.0.3")] {
                let _: HostRecord = try await client.put("/api/v1/hosts/\(host)", HostRegistration(underlayIP: ip))
            }
            let _: PortProfile = try await client.post("/api/v1/profiles", ProfileCreate(enterprise: "acme", name: "p"))
            let web1: Endpoint = try await client.post("/api/v1/endpoints", EndpointCreate(subnet: red, name: "web1", host: "h1",
                                                                                           profile: "acme/p"))
            let web2: Endpoint = try await client.post("/api/v1/endpoints", EndpointCreate(subnet: red, name: "web2", host: "h2"))
            let db1: Endpoint = try await client.post("/api/v1/endpoints", EndpointCreate(subnet: blue, name: "db1", host: "h2"))
            let _: Endpoint = try await client.post("/api/v1/endpoints", EndpointCreate(subnet: other, name: "x", host: "h3"))

            let state: DesiredState = try await client.get("/api/v1/hosts/h1/desired")
            #expect(state.underlayIP?.description == "10.99.0.1")
            #expect(state.endpoints.map(\.path) == [web1.path])
            #expect(state.profiles.map(\.path) == ["acme/p"])
            #expect(state.domains.map(\.path) == ["acme/app1"])
            #expect(state.domains[0].subnets.map(\.path).sorted() == [blue, red].sorted(), "every subnet of a served domain")
            #expect(state.domains[0].subnets.allSatisfy { $0.remoteVTEPs.map(\.description) == ["10.99.0.2"] })
            let remote = state.remoteEndpoints.sorted { $0.path < $1.path }
            #expect(remote.map(\.path) == [db1.path, web2.path])
            #expect(remote.allSatisfy { $0.vtep.description == "10.99.0.2" && $0.host == "h2" })
            #expect(remote.first { $0.path == web2.path }?.mac == web2.mac)

            let h3: DesiredState = try await client.get("/api/v1/hosts/h3/desired")
            #expect(h3.domains.map(\.path) == ["globex/app1"] && h3.remoteEndpoints.isEmpty, "domains never leak into each other")
            let idle: DesiredState = try await client.get("/api/v1/hosts/h9/desired")
            #expect(idle.domains.isEmpty && idle.endpoints.isEmpty && idle.underlayIP == nil)
        }
    }

    @Test func watchStreamsOnlyTheChangesOfServedDomains() async throws {
        try await withController { controller in
            let client = controller.client()
            let red = try await makeSubnet(client)
            let other = try await makeSubnet(client, enterprise: "globex", cidr: "10.5.0.0/24")
            for (host, ip) in [("h1", "10.99.0.1"), ("h2", "10.99.0.2"), ("h3", "10.99.0.3")] {
                let _: HostRecord = try await client.put("/api/v1/hosts/\(host)", HostRegistration(underlayIP: ip))
            }
            let _: Endpoint = try await client.post("/api/v1/endpoints", EndpointCreate(subnet: red, name: "web1", host: "h1"))
            let (messages, watcher) = follow(client, "/api/v1/hosts/h1/desired?watch=1", as: WatchMessage.self)
            defer { watcher.cancel() }
            let first = try await messages.item(0)
            #expect(first.type == .snapshot && first.state?.endpoints.map(\.name) == ["web1"])

            // A change in another enterprise's domain wakes nobody here; one in h1's domain does.
            let _: Endpoint = try await client.post("/api/v1/endpoints", EndpointCreate(subnet: other, name: "x", host: "h3"))
            let web2: Endpoint = try await client.post("/api/v1/endpoints", EndpointCreate(subnet: red, name: "web2", host: "h2"))
            let second = try await messages.item(1)
            #expect(second.type == .delta && second.revision > first.revision)
            #expect(second.delta?.remoteEndpoints.map(\.path) == [web2.path] && second.delta?.endpoints.isEmpty == true)
            #expect(second.delta?.domains.first?.subnets.first?.remoteVTEPs.map(\.description) == ["10.99.0.2"], "h2 now serves the domain")

            // Detach on h2: its entries vanish from h1's state.
            try await client.delete("/api/v1/endpoints/\(web2.path)")
            let third = try await messages.item(2)
            #expect(third.type == .delta && third.delta?.removedRemoteEndpoints == [web2.path])
            // Snapshot plus deltas is exactly what a fresh read says.
            let replayed = try #require(first.state).applying(try #require(second.delta), revision: second.revision)
                .applying(try #require(third.delta), revision: third.revision)
            let fresh: DesiredState = try await client.get("/api/v1/hosts/h1/desired")
            #expect(replayed == fresh)
            try await Task.sleep(for: .milliseconds(200))
            #expect(await messages.count == 3, "no message for changes that leave h1's state as it was")

            // A watcher that already has the current revision gets a bookmark, not a snapshot.
            let (bookmarks, resumed) = follow(client, "/api/v1/hosts/h1/desired?watch=1&since=\(third.revision)", as: WatchMessage.self)
            defer { resumed.cancel() }
            let bookmark = try await bookmarks.item(0)
            #expect(bookmark.type == .bookmark && bookmark.revision == third.revision && bookmark.state == nil)
        }
    }

    /// Many concurrent placements, moves and deletions: snapshot plus deltas still equals a fresh read,
    /// whatever order the commits were published in.
    @Test func watchedStateStaysExactUnderConcurrentChanges() async throws {
        try await withController { controller in
            let client = controller.client()
            let red = try await makeSubnet(client, cidr: "10.40.0.0/20")
            for (host, ip) in [("h1", "10.99.0.1"), ("h2", "10.99.0.2"), ("h3", "10.99.0.3")] {
                let _: HostRecord = try await client.put("/api/v1/hosts/\(host)", HostRegistration(underlayIP: ip))
            }
            let _: Endpoint = try await client.post("/api/v1/endpoints", EndpointCreate(subnet: red, name: "anchor", host: "h1"))
            let (messages, watcher) = follow(client, "/api/v1/hosts/h1/desired?watch=1", as: WatchMessage.self)
            defer { watcher.cancel() }
            let first = try await messages.item(0)
            // As many workers as the client has connections (64): every request is in flight at once, and none
            // waits in the client's queue for a connection (over TLS, under load, past its 5 s deadline).
            try await withThrowingTaskGroup(of: Void.self) { group in
                for worker in 0..<64 {
                    group.addTask {
                        for index in stride(from: worker, to: 200, by: 64) {
                            let host = ["h1", "h2", "h3"][index % 3]
                            let made: Endpoint = try await client.post("/api/v1/endpoints",
                                                                       EndpointCreate(subnet: red, name: "e\(index)", host: host))
                            if index % 4 == 0 {
                                let _: Endpoint = try await client.patch("/api/v1/endpoints/\(made.id)",
                                                                         EndpointUpdate(host: ["h2", "h3", "h1"][index % 3]))
                            }
                            if index % 5 == 0 { try await client.delete("/api/v1/endpoints/\(made.id)") }
                        }
                    }
                }
                try await group.waitForAll()
            }
            let fresh: DesiredState = try await client.get("/api/v1/hosts/h1/desired")
            var replayed = try #require(first.state)
            var index = 1
            let deadline = ContinuousClock.now + .seconds(20)
            while replayed.endpoints != fresh.endpoints || replayed.remoteEndpoints != fresh.remoteEndpoints,
                ContinuousClock.now < deadline {
                let message = try await messages.item(index)
                if let delta = message.delta { replayed = replayed.applying(delta, revision: message.revision) }
                index += 1
            }
            #expect(replayed.endpoints == fresh.endpoints)
            #expect(replayed.remoteEndpoints == fresh.remoteEndpoints)
            #expect(replayed.domains == fresh.domains)
            #expect(fresh.endpoints.count + fresh.remoteEndpoints.count == 161, "anchor and the 160 endpoints not deleted")
        }
    }

    @Test func eventsCanBeFollowed() async throws {
        try await withController { controller in
            let client = controller.client()
            let (events, follower) = follow(client, "/api/v1/events?follow=1", as: Event.self)
            defer { follower.cancel() }
            try await Task.sleep(for: .milliseconds(100))
            try await makeSubnet(client)
            // Without `since`, following starts with the recent past (here the admin user made at first start).
            let kinds = try await (0..<5).asyncMap { try await events.item($0).kind }
            #expect(kinds == [.user, .enterprise, .domain, .zone, .subnet])
            let subnetEvent = try await events.item(4)
            #expect(subnetEvent.action == .created && subnetEvent.actor == "admin"
                && subnetEvent.object?["cidr"]?.stringValue == "192.168.10.0/24")
        }
    }
}

extension Sequence {
    func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var results: [T] = []
        for element in self { results.append(try await transform(element)) }
        return results
    }
}
