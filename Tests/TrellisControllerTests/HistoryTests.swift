import Foundation
import Testing
import TrellisClient
import TrellisEtcd
import TrellisModel
@testable import TrellisStore
import TrellisTestSupport

/// The event log's retention: trimmed by count and by age on both stores, etcd's history compacted behind it,
/// and a controller that missed compacted history told what changed.
@Suite struct HistoryTests {
    private func updates(_ store: any Store, _ count: Int) async throws {
        for _ in 0..<count {
            _ = try await store.write(actor: "t") { tx in
                var enterprise = try tx.get(Enterprise.self, "acme") ?? Enterprise(name: "acme", description: "0")
                enterprise.description = String((Int(enterprise.description ?? "") ?? 0) + 1)
                let written = enterprise.revision == 0 ? try tx.insert(enterprise) : try tx.update(enterprise)
                try tx.recordChange(enterprise.revision == 0 ? .created : .updated, written)
            }
        }
    }

    private func logged(_ store: any Store) async throws -> [Event] {
        try await store.read { try $0.events(afterID: 0, limit: 1000, enterprise: nil) }
    }

    /// The newest events are kept up to the count, none older than the cutoff; ids go on rising after a trim,
    /// the objects are untouched, and in etcd the second trim compacts up to where the first started.
    @Test(arguments: StoreKind.available) func historyIsTrimmedByCountAndAge(_ kind: StoreKind) async throws {
        try await StoreContractTests().withStore(kind) { store in
            try await updates(store, 10)
            // etcd keeps an event's time to the second.
            try await Task.sleep(for: .milliseconds(1100))
            let cutoff = Date(timeIntervalSince1970: Date().timeIntervalSince1970.rounded(.down))
            try await updates(store, 20)
            let all = try await logged(store)
            #expect(all.count == 30)

            let byAge = try await store.trimHistory(keepingEvents: 25, recordedAfter: cutoff)
            #expect(byAge.events == 10 && byAge.compactedTo == nil)
            #expect(try await logged(store).map(\.id) == all.suffix(20).map(\.id))

            let byCount = try await store.trimHistory(keepingEvents: 5, recordedAfter: .distantPast)
            #expect(byCount.events == 15)
            #expect(try await logged(store).map(\.id) == all.suffix(5).map(\.id))
            if kind == .etcd { #expect(byCount.compactedTo ?? 0 >= all.last?.revision ?? .max) }

            try await updates(store, 1)
            let after = try await logged(store)
            #expect(after.count == 6 && after.last!.id > all.last!.id)
            #expect(try await store.read { try $0.get(Enterprise.self, "acme") }?.description == "31")
            #expect(try await store.trimHistory(keepingEvents: 100, recordedAfter: .distantPast).events == 0)
        }
    }

    /// A second controller keeps following after the first has trimmed and compacted the history.
    @Test(.enabled(if: etcdInstalled, "needs etcd-server")) func aFollowerGoesOnAfterCompaction() async throws {
        try await withTwoEtcdStores { first, second in
            for _ in 0..<3 {
                try await updates(first, 10)
                _ = try await first.trimHistory(keepingEvents: 1, recordedAfter: .distantPast)
            }
            try await updates(first, 1)
            let revision = try await first.read { try $0.currentRevision() }
            let deadline = ContinuousClock.now + .seconds(10)
            while second.mirroredRevision < revision && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
            #expect(second.mirroredRevision >= revision)
            #expect(try await second.read { try $0.get(Enterprise.self, "acme") }?.description == "31")
        }
    }

    /// A busy store compacts etcd's history behind it without waiting for the trim: with 10 revisions kept, 30
    /// writes leave the early revisions unreadable, and another store following it still ends at the newest state.
    @Test(.enabled(if: etcdInstalled, "needs etcd-server")) func aBusyStoreCompactsBehindItself() async throws {
        let etcd = try await RunningEtcd()
        defer { etcd.stop() }
        let client = try EtcdClient(members: [etcd.clientURL])
        let first = try await EtcdStore(members: [etcd.clientURL], prefix: "/trellis", following: true, historyKept: 10)
        let second = try await EtcdStore(members: [etcd.clientURL])
        do {
            var early = EtcdRangeRequest(key: EtcdBytes("/trellis/o/enterprise/acme"))
            try await updates(first, 5)
            early.revision = try await first.read { try $0.currentRevision() }
            _ = try await client.range(early)
            try await updates(first, 25)
            let deadline = ContinuousClock.now + .seconds(10)
            var compacted = false
            while !compacted && ContinuousClock.now < deadline {
                do {
                    _ = try await client.range(early)
                    try await Task.sleep(for: .milliseconds(20))
                } catch EtcdError.failed(let failure) where failure.compacted {
                    compacted = true
                }
            }
            #expect(compacted, "revision \(early.revision) is still readable after 30 writes with 10 revisions kept")
            let revision = try await first.read { try $0.currentRevision() }
            while second.mirroredRevision < revision && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
            #expect(try await second.read { try $0.get(Enterprise.self, "acme") }?.description == "30")
        } catch {
            await first.close(); await second.close(); try? await client.shutdown()
            throw error
        }
        await first.close(); await second.close(); try? await client.shutdown()
    }

    /// A value over 256 KiB is kept in chunks: read back whole by this store and another, logged whole, and its
    /// chunks removed by the trim once neither the object nor a kept event refers to them.
    @Test(.enabled(if: etcdInstalled, "needs etcd-server")) func largeValuesAreChunkedAndTheirChunksCollected() async throws {
        let etcd = try await RunningEtcd()
        defer { etcd.stop() }
        let client = try EtcdClient(members: [etcd.clientURL])
        let first = try await EtcdStore(members: [etcd.clientURL]), second = try await EtcdStore(members: [etcd.clientURL])
        func chunkKeys() async throws -> Int { try await client.range(.prefix(EtcdBytes("/trellis/x/"))).kvs.count }
        do {
            @Sendable func large(_ letter: Character) -> String { String(repeating: letter, count: 600_000) }
            for letter: Character in ["a", "b", "c"] {
                _ = try await first.write(actor: "t") { tx in
                    var enterprise = try tx.get(Enterprise.self, "acme") ?? Enterprise(name: "acme", description: nil)
                    enterprise.description = large(letter)
                    let written = enterprise.revision == 0 ? try tx.insert(enterprise) : try tx.update(enterprise)
                    try tx.recordChange(.updated, written)
                }
            }
            #expect(try await chunkKeys() == 9, "three versions of three chunks; the event shares its object's")
            let revision = try await first.read { try $0.currentRevision() }
            while second.mirroredRevision < revision { try await Task.sleep(for: .milliseconds(20)) }
            #expect(try await second.read { try $0.get(Enterprise.self, "acme") }?.description == large("c"))
            let logged = try await second.read { try $0.events(afterID: 0, limit: 10, enterprise: nil) }
            #expect(logged.map { $0.decodedObject(Enterprise.self)?.description?.first } == ["a", "b", "c"])

            #expect(try await first.trimHistory(keepingEvents: 2, recordedAfter: .distantPast).chunks == 0, "too young")
            let trim = try await first.trimHistory(keepingEvents: 2, recordedAfter: .distantPast)
            #expect(trim.chunks == 3 && trim.compactedTo != nil)
            #expect(try await chunkKeys() == 6)
            #expect(try await first.read { try $0.get(Enterprise.self, "acme") }?.description == large("c"))
        } catch {
            try? await client.shutdown(); await first.close(); await second.close()
            throw error
        }
        try await client.shutdown(); await first.close(); await second.close()
    }

    /// A controller whose etcd watch falls behind a compaction starts over from a snapshot, and a host watching it
    /// ends exactly equal to a fresh read: endpoints made, changed and deleted meanwhile through another controller.
    @Test(.enabled(if: etcdInstalled, "needs etcd-server")) func aWatcherBehindACompactionEndsEqualToAFreshRead() async throws {
        let etcd = try await RunningEtcd()
        defer { etcd.stop() }
        let second = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: second) }
        let store = "etcd:\(etcd.clientURL)"
        let storeOfA = try await EtcdStore(members: [etcd.clientURL])
        try await withController(store: store, opened: storeOfA) { a in
            let throughA = a.client()
            let red = try await makeSubnet(throughA)
            for (host, ip) in [("h1", "10.99.0.1"), ("h2", "10.99.0.2")] {
                let _: HostRecord = try await throughA.put("/api/v1/hosts/\(host)", HostRegistration(underlayIP: ip))
            }
            let _: Endpoint = try await throughA.post("/api/v1/endpoints", EndpointCreate(subnet: red, name: "local", host: "h1"))
            for index in 0..<3 {
                let _: Endpoint = try await throughA.post("/api/v1/endpoints", EndpointCreate(subnet: red, name: "old\(index)", host: "h2"))
            }
            for shared in ["admin.token", "tls"] {
                try FileManager.default.copyItem(at: a.directory.appendingPathComponent(shared), to: second.appendingPathComponent(shared))
            }
            let lagging = try await EtcdStore(members: [etcd.clientURL], prefix: "/trellis", following: false)
            try await withController(directory: second, store: store, opened: lagging) { b in
                let throughB = b.client(token: a.adminToken)
                let (messages, watcher) = follow(throughB, "/api/v1/hosts/h1/desired?watch=1", as: WatchMessage.self)
                defer { watcher.cancel() }
                let first = try await messages.item(0)
                var replayed = try #require(first.state)
                #expect(replayed.remoteEndpoints.count == 3)

                // Through A, while B does not follow: new endpoints, one moved to h1, one deleted, one changed.
                for index in 0..<4 {
                    let _: Endpoint = try await throughA.post("/api/v1/endpoints",
                                                              EndpointCreate(subnet: red, name: "new\(index)", host: "h2"))
                }
                let _: Endpoint = try await throughA.patch("/api/v1/endpoints/\(red)/old0", EndpointUpdate(host: "h1"))
                try await throughA.delete("/api/v1/endpoints/\(red)/old1")
                let _: Endpoint = try await throughA.patch("/api/v1/endpoints/\(red)/old2", EndpointUpdate(hostname: "renamed"))
                _ = try await storeOfA.trimHistory(keepingEvents: 1, recordedAfter: .distantPast)
                let _: Endpoint = try await throughA.post("/api/v1/endpoints", EndpointCreate(subnet: red, name: "late", host: "h2"))
                let trim = try await storeOfA.trimHistory(keepingEvents: 1, recordedAfter: .distantPast)
                #expect((trim.compactedTo ?? 0) > replayed.revision)

                lagging.startFollowing()
                let fresh: DesiredState = try await throughA.get("/api/v1/hosts/h1/desired")
                var index = 1
                while replayed.contentDigest != fresh.contentDigest {
                    let message = try await messages.item(index)
                    index += 1
                    if message.type == .snapshot { replayed = try #require(message.state) }
                    if message.type == .delta { replayed = replayed.applying(try #require(message.delta), revision: message.revision) }
                }
                let names = replayed.remoteEndpoints.map { String($0.path.split(separator: "/").last!) }.sorted()
                #expect(names == ["late", "new0", "new1", "new2", "new3", "old2"])
                #expect(replayed == (try await throughB.get("/api/v1/hosts/h1/desired") as DesiredState))
            }
        }
    }

    /// What a controller behind a compaction is told: each object that differs between its mirror and the
    /// snapshot, as created, updated or deleted at the snapshot's revision; claims, events and unchanged objects not.
    @Test func aSnapshotAfterCompactionIsTurnedIntoTheChangesMissed() throws {
        func key(_ name: String, _ value: String, _ revision: Int) -> (String, EtcdKeyValue) {
            ("/t/" + name,
             EtcdKeyValue(key: EtcdBytes("/t/" + name), value: EtcdBytes(value), createRevision: revision, modRevision: revision))
        }
        let old = Mirror(revision: 10, keyValues: Dictionary(uniqueKeysWithValues: [
            key("o/enterprise/same", "{}", 3), key("o/enterprise/gone", #"{"name":"gone"}"#, 4),
            key("o/domain/acme/changed", "{\"v\":1}", 5), key("c/ip/10.0.0.2", "x", 6), key("e/1", "{}", 7),
        ]))
        let new = Mirror(revision: 20, keyValues: Dictionary(uniqueKeysWithValues: [
            key("o/enterprise/same", "{}", 3), key("o/domain/acme/changed", "{\"v\":2}", 15), key("o/host/h9", "{}", 16),
            key("c/ip/10.0.0.3", "x", 17), key("e/2", "{}", 18),
        ]))
        let changes = EtcdStore.changes(from: old, to: new, prefix: "/t/")
        #expect(changes.map { "\($0.action.rawValue) \($0.kind.rawValue) \($0.path)" }
                == ["updated domain acme/changed", "deleted enterprise gone", "created host h9"])
        #expect(changes.allSatisfy { $0.revision == 20 })
        #expect(changes[1].encodedObject == Data(#"{"name":"gone"}"#.utf8))
        #expect(Set(changes.map(\.id)).count == 3)
    }
}
