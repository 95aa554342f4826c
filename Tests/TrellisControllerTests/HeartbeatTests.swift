import Foundation
import Testing
@testable import TrellisController
import TrellisClient
import TrellisModel
import TrellisStore
import TrellisTestSupport

/// Heartbeats are kept in memory and reach the store once per host every `storeEvery` seconds.
@Suite struct HeartbeatTests {
    let start = Date(timeIntervalSince1970: 1_800_000_000)

    @Test func aHeartbeatIsStoredOnlyWhenTheStoredOneHasAged() {
        let book = HeartbeatBook(timeout: 15, storeEvery: 30)
        #expect(book.receive("h1", Heartbeat(time: start, appliedRevision: 1)), "a host's first heartbeat is stored")
        book.stored("h1", at: start)
        #expect(!book.receive("h1", Heartbeat(time: start + 5, appliedRevision: 2)))
        #expect(!book.receive("h1", Heartbeat(time: start + 29, appliedRevision: 3)))
        #expect(book.receive("h1", Heartbeat(time: start + 30, appliedRevision: 4)))
        #expect(book.receive("h2", Heartbeat(time: start + 30, appliedRevision: 1)), "each host has its own clock")
        #expect(book.receive("h1", Heartbeat(time: start - 60, appliedRevision: 4)), "a clock set back stores again")
    }

    @Test func statusIsTheNewerOfWhatArrivedHereAndWhatIsStored() {
        let book = HeartbeatBook(timeout: 15, storeEvery: 30)
        _ = book.receive("h1", Heartbeat(time: start + 20, appliedRevision: 9))
        let stored = Heartbeat(time: start, appliedRevision: 7)
        let fresh = book.latest("h1", stored: stored, now: start + 21)
        #expect(fresh.beat == Heartbeat(time: start + 20, appliedRevision: 9) && fresh.up)
        #expect(!book.latest("h1", stored: stored, now: start + 36).up, "the newest beat arrived here, so its timeout is 15 s")
        #expect(book.latest("h1", stored: Heartbeat(time: start + 25, appliedRevision: 10), now: start + 60).up,
                "a newer stored beat means the host moved to another controller, and counts for 45 s")
        // Another controller sees only the stored heartbeat, and allows it the storing interval on top of the timeout.
        #expect(book.latest("h9", stored: stored, now: start + 45).up)
        #expect(!book.latest("h9", stored: stored, now: start + 46).up)
        #expect(book.latest("h9", stored: nil, now: start) == (nil, false))
        book.forget("h1")
        #expect(book.latest("h1", stored: nil, now: start + 21) == (nil, false))
    }

    /// Twenty heartbeats through controller A are one store write; A shows the newest, and controller B,
    /// on the same store, the one stored.
    @Test(arguments: StoreKind.available) func manyHeartbeatsCostOneWrite(_ kind: StoreKind) async throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let etcd = kind == .etcd ? try await RunningEtcd() : nil
        defer { etcd?.stop() }
        let store = etcd.map { "etcd:\($0.clientURL)" } ?? "sqlite:\(directory.path)/trellis.db"
        try await withController(store: store) { a in
            let client = a.client()
            let _: HostRecord = try await client.put("/api/v1/hosts/h1", HostRegistration(underlayIP: "10.99.0.1"))
            let before = try await storeCommits(client)
            for revision in 1...20 {
                let beat: HostRecord = try await client.post("/api/v1/hosts/h1/heartbeat", HostHeartbeat(appliedRevision: revision))
                #expect(beat.status == .up && beat.appliedRevision == revision)
            }
            #expect(try await storeCommits(client) == before + 1, "twenty heartbeats, one write")
            let host: HostRecord = try await client.get("/api/v1/hosts/h1")
            #expect(host.status == .up && host.appliedRevision == 20)
            try await withController(store: store) { b in
                let host: HostRecord = try await b.client().get("/api/v1/hosts/h1")
                #expect(host.status == .up && host.appliedRevision == 1)
            }
        }
    }

    func storeCommits(_ client: ControllerClient) async throws -> Int {
        let metrics = String(decoding: try await client.exchange("GET", "/metrics", body: nil).body, as: UTF8.self)
        let line = metrics.split(separator: "\n").first { $0.hasPrefix("trellis_store_commits_total ") }
        return try #require(line.flatMap { Int($0.split(separator: " ")[1]) })
    }
}
