import Foundation
import Testing
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
        let etcd = try await RunningEtcd()
        defer { etcd.stop() }
        let first = try await EtcdStore(members: [etcd.clientURL]), second = try await EtcdStore(members: [etcd.clientURL])
        do {
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
        } catch {
            await first.close(); await second.close()
            throw error
        }
        await first.close(); await second.close()
    }

    /// What a controller behind a compaction is told: each object that differs between its mirror and the
    /// snapshot, as created, updated or deleted at the snapshot's revision; claims, events and unchanged objects not.
    @Test func aSnapshotAfterCompactionIsTurnedIntoTheChangesMissed() throws {
        func key(_ name: String, _ value: String, _ revision: Int) -> (String, EtcdKeyValue) {
            ("/t/" + name,
             EtcdKeyValue(key: EtcdBytes("/t/" + name), value: EtcdBytes(value), createRevision: revision, modRevision: revision))
        }
        let old = Mirror(revision: 10, keys: Dictionary(uniqueKeysWithValues: [
            key("o/enterprise/same", "{}", 3), key("o/enterprise/gone", #"{"name":"gone"}"#, 4),
            key("o/domain/acme/changed", "{\"v\":1}", 5), key("c/ip/10.0.0.2", "x", 6), key("e/1", "{}", 7),
        ]))
        let new = Mirror(revision: 20, keys: Dictionary(uniqueKeysWithValues: [
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
