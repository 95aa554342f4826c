import Foundation
import Glibc
import Testing
import TrellisEtcd
import TrellisTestSupport

func withEtcd(_ body: (RunningEtcd, EtcdClient) async throws -> Void) async throws {
    let etcd = try await RunningEtcd()
    defer { etcd.stop() }
    try await withClient(members: [etcd.clientURL]) { try await body(etcd, $0) }
}

func withClient(members: [String], timeout: Duration = .seconds(5), _ body: (EtcdClient) async throws -> Void) async throws {
    let client = try EtcdClient(members: members, timeout: .nanoseconds(Int64(timeout.components.seconds) * 1_000_000_000))
    do {
        try await body(client)
    } catch {
        try? await client.shutdown()
        throw error
    }
    try await client.shutdown()
}

/// The JSON gateway as a real etcd 3.4 speaks it: what we send is understood, what it answers is read right.
@Suite(.enabled(if: FileManager.default.fileExists(atPath: "/usr/bin/etcd"), "needs etcd-server"), .serialized)
struct EtcdClientTests {
    @Test func writesAndReadsKeysWithTheirRevisions() async throws {
        try await withEtcd { _, client in
            let put = try await client.txn(EtcdTxnRequest(compare: [], success: [
                .put(EtcdBytes("/t/a"), EtcdBytes([0, 1, 0xFF])), .put(EtcdBytes("/t/b"), EtcdBytes("β")),
                .put(EtcdBytes("/u"), EtcdBytes("x")),
            ]))
            #expect(put.succeeded)
            let one = try await client.range(EtcdRangeRequest(key: EtcdBytes("/t/a")))
            #expect(one.kvs.map(\.value) == [EtcdBytes([0, 1, 0xFF])])
            #expect(one.kvs.first?.createRevision == put.header.revision && one.kvs.first?.modRevision == put.header.revision)
            #expect(one.count == 1 && one.header.revision == put.header.revision)

            let prefix = try await client.range(.prefix(EtcdBytes("/t/")))
            #expect(prefix.kvs.map(\.key.text) == ["/t/a", "/t/b"] && prefix.kvs[1].value.text == "β")
            var counting = EtcdRangeRequest.prefix(EtcdBytes("/"))
            counting.countOnly = true
            let counted = try await client.range(counting)
            #expect(counted.count == 3 && counted.kvs.isEmpty)
            var limited = EtcdRangeRequest.prefix(EtcdBytes("/"))
            limited.limit = 2
            #expect(try await client.range(limited).more)
            #expect(try await client.range(EtcdRangeRequest(key: EtcdBytes("/none"))).kvs.isEmpty)
        }
    }

    /// Keys created later come after `min_create_revision`, sorted by creation (how the event log is paged).
    @Test func pagesByCreationRevision() async throws {
        try await withEtcd { _, client in
            var revisions: [Int] = []
            for name in ["z", "m", "a"] {
                revisions.append(try await client.put(EtcdBytes("/e/" + name), EtcdBytes(name)))
            }
            var page = EtcdRangeRequest.prefix(EtcdBytes("/e/"))
            page.sortTarget = .create
            page.sortOrder = .ascend
            page.minCreateRevision = revisions[1]
            #expect(try await client.range(page).kvs.map(\.value.text) == ["m", "a"])
        }
    }

    /// A key created only if absent: of two transactions for it only one succeeds; a compare on the
    /// mod revision fails once another write changed the key.
    @Test func comparesDecideTransactions() async throws {
        try await withEtcd { _, client in
            let key = EtcdBytes("/claims/10.0.0.5")
            let (a, b) = (EtcdBytes("a"), EtcdBytes("b"))
            let read = EtcdOperation.range(EtcdRangeRequest(key: key))
            async let first = client.txn(EtcdTxnRequest(compare: [.absent(key)], success: [.put(key, a)], failure: [read]))
            async let second = client.txn(EtcdTxnRequest(compare: [.absent(key)], success: [.put(key, b)], failure: [read]))
            let answers = try await [first, second]
            #expect(answers.filter(\.succeeded).count == 1)
            let loser = try #require(answers.first { !$0.succeeded })
            let winner = try await client.range(EtcdRangeRequest(key: key)).kvs[0]
            #expect(loser.responses.first?.range?.kvs.first?.value == winner.value)

            let seen = winner.modRevision
            _ = try await client.put(key, EtcdBytes("c"))
            let delete = EtcdOperation.delete(key: key, rangeEnd: nil)
            let stale = try await client.txn(EtcdTxnRequest(compare: [EtcdCompare(key, .modRevision(seen))], success: [delete]))
            #expect(!stale.succeeded)
            let current = try await client.range(EtcdRangeRequest(key: key)).kvs[0].modRevision
            let fresh = try await client.txn(EtcdTxnRequest(compare: [EtcdCompare(key, .modRevision(current))], success: [delete]))
            #expect(fresh.succeeded)
            #expect(try await client.range(EtcdRangeRequest(key: key)).kvs.isEmpty)
        }
    }

    /// A watch reports puts and deletes in revision order, with the previous value; from a compacted revision
    /// it is canceled and says where history now starts, and reads there fail as compacted.
    @Test func watchesFollowChangesAndReportCompaction() async throws {
        try await withEtcd { _, client in
            let start = try await client.put(EtcdBytes("/w/a"), EtcdBytes("1"))
            _ = try await client.put(EtcdBytes("/w/a"), EtcdBytes("2"))
            _ = try await client.txn(EtcdTxnRequest(compare: [], success: [.delete(key: EtcdBytes("/w/a"), rangeEnd: nil)]))
            var seen: [String] = []
            try await client.watch(EtcdWatchRequest(key: EtcdBytes("/w/"), rangeEnd: EtcdBytes("/w/").prefixEnd, startRevision: start,
                                                    previousKeyValue: true)) { message in
                for event in message.events {
                    let (revision, value) = (event.keyValue.modRevision - start, event.keyValue.value.text)
                    seen.append("\(event.kind) \(revision) \(value) after \(event.previous?.value.text ?? "-")")
                }
                return seen.count < 3
            }
            #expect(seen == ["put 0 1 after -", "put 1 2 after 1", "delete 2  after 2"])

            try await client.compact(revision: start + 2)
            var canceled: EtcdWatchResponse?
            let fromStart = EtcdWatchRequest(key: EtcdBytes("/w/"), rangeEnd: EtcdBytes("/w/").prefixEnd, startRevision: start)
            try await client.watch(fromStart) { message in
                if message.canceled { canceled = message }
                return !message.canceled
            }
            #expect(canceled?.compactRevision == start + 2)
            var old = EtcdRangeRequest(key: EtcdBytes("/w/a"))
            old.revision = start
            await #expect {
                _ = try await client.range(old)
            } throws: { error in
                guard case .failed(let failure) = error as? EtcdError else { return false }
                return failure.compacted
            }
        }
    }

    /// A member that cannot be reached is passed over; none reachable is an error that names etcd and each member.
    @Test func movesOnFromMembersThatDoNotAnswer() async throws {
        try await withEtcd { etcd, _ in
            let dead = "http://127.0.0.1:\(try RunningEtcd.freePort())"
            try await withClient(members: [dead, etcd.clientURL]) { (client: EtcdClient) async throws in
                #expect(client.preferredMember == dead)
                let answer = try await client.range(EtcdRangeRequest(key: EtcdBytes("k")))
                #expect(answer.header.revision >= 1)
                #expect(client.preferredMember == etcd.clientURL, "the member that answered is asked first from now on")
            }
            try await withClient(members: [dead], timeout: .seconds(2)) { nobody in
                await #expect {
                    _ = try await nobody.range(EtcdRangeRequest(key: EtcdBytes("k")))
                } throws: { error in
                    "\(error)".contains("no etcd member answered") && "\(error)".contains(dead)
                }
            }
        }
        #expect(throws: EtcdError.self) { try EtcdClient(members: ["127.0.0.1:2379"]) }
    }

    /// Pure: a stream's error line and malformed answers become errors that say what was wrong.
    @Test func badAnswersAreErrors() throws {
        let message = "etcdserver: mvcc: required revision has been compacted"
        let line = Array(#"{"error":{"grpc_code":11,"http_code":400,"message":"\#(message)","code":11}}"#.utf8)
        #expect {
            _ = try EtcdWatchResponse.parseLine(line)
        } throws: { error in
            guard case .failed(let failure) = error as? EtcdError else { return false }
            return failure.compacted && "\(error)".contains("etcd refused the request: etcdserver: mvcc")
        }
        #expect(throws: DecodingError.self) { _ = try JSONDecoder().decode(EtcdKeyValue.self, from: Data(#"{"key":"%%%"}"#.utf8)) }
        #expect(throws: DecodingError.self) {
            _ = try JSONDecoder().decode(EtcdHeader.self, from: Data(#"{"revision":"seven"}"#.utf8))
        }
        let event = try JSONDecoder().decode(EtcdEvent.self, from: Data(#"{"kv":{"key":"YQ==","mod_revision":"9"}}"#.utf8))
        #expect(event.kind == .put && event.keyValue.modRevision == 9 && event.keyValue.version == 0, "zero fields are left out")
    }

    /// Pure: the end of a prefix's range.
    @Test func prefixEnds() {
        #expect(EtcdBytes("/a/").prefixEnd == EtcdBytes("/a0"))
        #expect(EtcdBytes([0x61, 0xFF]).prefixEnd == EtcdBytes([0x62]))
        #expect(EtcdBytes([0xFF, 0xFF]).prefixEnd == EtcdBytes([0]))
    }
}
