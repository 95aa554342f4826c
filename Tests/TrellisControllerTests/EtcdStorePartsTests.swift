import Foundation
import Testing
import TrellisEtcd
@testable import TrellisStore

/// A controller's blocks of ids: the next block is wanted once the current one is half used, and ids run on from
/// one block into the next without a gap the controller could have avoided.
@Suite struct ClusterAllocationTests {
    @Test func theNextBlockIsWantedAtHalfAndTakenOverInOrder() {
        let allocation = ClusterAllocation()
        #expect(allocation.takeID("endpoint") == nil && allocation.needsBlock("endpoint"))
        allocation.grant("endpoint", 1...100)
        let firstHalf = (1...49).compactMap { _ in allocation.takeID("endpoint") }
        #expect(firstHalf == Array(1...49) && allocation.takeWanted().isEmpty && !allocation.needsBlock("endpoint"))
        #expect(allocation.takeID("endpoint") == 50)
        #expect(allocation.takeWanted() == ["endpoint"] && allocation.takeWanted().isEmpty, "asked for once")
        #expect(allocation.needsBlock("endpoint"))
        allocation.grant("endpoint", 301...400)
        #expect(!allocation.needsBlock("endpoint"))
        let rest = (51...150).compactMap { _ in allocation.takeID("endpoint") }
        #expect(rest == Array(51...100) + Array(301...350))
        #expect(allocation.takeWanted() == ["endpoint"], "the block taken over is half used again")
    }
}

/// The runs that catch a cluster's reads up: callers that arrive while a run is under way wait for the next one
/// (it may have begun before what they must see), and one run serves everyone who joined it.
@Suite struct SharedRunsTests {
    actor Log {
        var runs = 0
        var gate: CheckedContinuation<Void, Never>?
        func begin() async {
            runs += 1
            if runs == 1 { await withCheckedContinuation { gate = $0 } }
        }
        func open() { gate?.resume(); gate = nil }
        func waitingAtGate() -> Bool { gate != nil }
    }

    @Test func callersArrivingDuringARunShareTheNextOne() async throws {
        let shared = SharedRuns(), log = Log()
        let first = Task { try await shared.join { await log.begin() } }
        while await !log.waitingAtGate() { try await Task.sleep(for: .milliseconds(1)) }
        // Ten callers arrive while the first run is held open: none of them may be served by it.
        let later = (0..<10).map { _ in Task { try await shared.join { await log.begin() } } }
        try await Task.sleep(for: .milliseconds(50))
        #expect(await log.runs == 1)
        await log.open()
        try await first.value
        for task in later { try await task.value }
        #expect(await log.runs == 2, "the ten shared one run after the first")
    }

    @Test func aFailedRunFailsEveryoneWhoJoinedIt() async {
        struct Refused: Error {}
        let shared = SharedRuns()
        await #expect(throws: Refused.self) { try await shared.join { throw Refused() } }
        await #expect(throws: Never.self) { try await shared.join {} }
    }
}

/// The group commit of an etcd store: which commits may share one etcd transaction, and what each learns when the
/// shared transaction commits or fails. The etcd here is a recording stand-in; the stores' suites run it on etcd.
@Suite struct GroupCommitTests {
    static func commit(reads: [String: Int] = [:], prefixes: [String] = [], writes: [String], events: Int = 1) -> PreparedCommit {
        let event = StoredEvent(origin: "o", index: 0, time: Date(), actor: "t", action: .created, kind: .endpoint, path: "p",
                                enterprise: nil, object: nil)
        return PreparedCommit(readRevision: 10, readKeys: reads, readPrefixes: prefixes, writes: writes.map { ($0, Data("v".utf8)) },
                              events: (0..<events).map { index in
                                  var numbered = event
                                  numbered.index = index
                                  return ("e/\(UUID().uuidString)", numbered)
                              })
    }

    @Test func commitsThatTouchNoKeyOfAnotherGoTogether() {
        let waiting: [(commit: PreparedCommit, alone: Bool)] = [
            (Self.commit(reads: ["c/ip/1": 0], writes: ["c/ip/1", "o/a"]), false),
            (Self.commit(reads: ["c/ip/1": 0], writes: ["c/ip/1", "o/b"]), false),  // claims the same address: later
            (Self.commit(reads: ["o/a": 0], writes: ["o/c"]), false),                // read what the first writes: later
            (Self.commit(prefixes: ["o/"], writes: ["x/1"]), false),                 // read a range the first writes in: later
            (Self.commit(reads: ["c/ip/2": 0], writes: ["c/ip/2", "o/d"]), false),
            (Self.commit(writes: ["o/e"]), true),                                    // must go alone
            (Self.commit(reads: ["o/d": 0, "s/1": 4], writes: ["o/f"]), false),      // read what the fifth writes: later
            (Self.commit(reads: ["s/1": 4], writes: ["c/ip/3"]), false),             // shares only a read: joins
        ]
        #expect(GroupCommit.chooseBatch(waiting) == [0, 4, 7])
        #expect(GroupCommit.chooseBatch(Array(waiting[5...])) == [0], "a commit that must go alone takes no company")
    }

    @Test func aTransactionStaysWithinEtcdsLimits() {
        // Each commit carries 10 operations (9 writes and an event): at most 12 fit under 128 with the last-change put.
        let waiting = (0..<20).map { index in (commit: Self.commit(writes: (0..<9).map { "o/\(index)/\($0)" }), alone: false) }
        #expect(GroupCommit.chooseBatch(waiting) == Array(0..<12))
        let eventful = (0..<3).map { _ in (commit: Self.commit(writes: [], events: 400), alone: false) }
        #expect(GroupCommit.chooseBatch(eventful) == [0], "events per transaction stay below 1,000, operations below 128")
    }

    @Test func whatAMemberReadStillHoldsOrNot() throws {
        func keyValue(_ key: String, modRevision: Int) throws -> EtcdKeyValue {
            let json = #"{"key":"\#(Data(key.utf8).base64EncodedString())","value":"","create_revision":"1","#
                + #""mod_revision":"\#(modRevision)"}"#
            return try JSONDecoder().decode(EtcdKeyValue.self, from: Data(json.utf8))
        }
        let mirror = Mirror(revision: 12, keyValues: ["s/1": try keyValue("s/1", modRevision: 4),
                                                      "o/x/1": try keyValue("o/x/1", modRevision: 12)])
        #expect(Self.commit(reads: ["s/1": 4, "c/9": 0], writes: ["o/a"]).holds(in: mirror))
        #expect(!Self.commit(reads: ["s/1": 3], writes: ["o/a"]).holds(in: mirror), "changed since it was read")
        #expect(!Self.commit(reads: ["o/x/1": 0], writes: ["o/a"]).holds(in: mirror), "made since it was read as absent")
        #expect(!Self.commit(prefixes: ["o/x/"], writes: ["o/a"]).holds(in: mirror), "a key under a prefix read changed after it")
        #expect(Self.commit(prefixes: ["o/y/"], writes: ["o/a"]).holds(in: mirror))
    }

    /// A stand-in for etcd that holds the first transaction until told, records every request and answers with
    /// the outcome queued for it.
    actor Recorder {
        var requests: [EtcdTxnRequest] = []
        var outcomes: [Bool]
        var gate: CheckedContinuation<Void, Never>?
        var holdFirst = true
        init(outcomes: [Bool]) { self.outcomes = outcomes }

        func send(_ request: EtcdTxnRequest) async throws -> EtcdTxnResponse {
            requests.append(request)
            if holdFirst {
                holdFirst = false
                await withCheckedContinuation { gate = $0 }
            }
            let succeeded = outcomes.isEmpty ? true : outcomes.removeFirst()
            let json = #"{"header":{"revision":"\#(20 + requests.count)"},"succeeded":\#(succeeded)}"#
            return try JSONDecoder().decode(EtcdTxnResponse.self, from: Data(json.utf8))
        }
        func held() -> Bool { gate != nil }
        func release() { gate?.resume(); gate = nil }
    }

    /// Runs `first` (held in flight), then `later` while it is held; answers in order of `outcomes`.
    func outcomes(first: PreparedCommit, later: [PreparedCommit], answers: [Bool]) async throws
        -> (first: GroupCommit.Outcome, later: [GroupCommit.Outcome], requests: [EtcdTxnRequest]) {
        let recorder = Recorder(outcomes: answers)
        let group = GroupCommit(concurrency: 1, lastChange: .put(EtcdBytes("r"), EtcdBytes("o"))) { try await recorder.send($0) }
        let head = Task { try await group.commit(first) }
        while await !recorder.held() { try await Task.sleep(for: .milliseconds(1)) }
        let rest = later.map { commit in Task { try await group.commit(commit) } }
        try await Task.sleep(for: .milliseconds(50))
        await recorder.release()
        var results: [GroupCommit.Outcome] = []
        for task in rest { results.append(try await task.value) }
        return (try await head.value, results, await recorder.requests)
    }

    @Test func commitsThatArriveDuringATransactionGoTogetherInTheNext() async throws {
        let later = [Self.commit(writes: ["o/b"], events: 2), Self.commit(writes: ["o/c"], events: 1),
                     Self.commit(writes: ["o/d"], events: 3)]
        let (first, results, requests) = try await outcomes(first: Self.commit(writes: ["o/a"]), later: later, answers: [true, true])
        #expect(first == .committed(revision: 21, eventBase: 0))
        #expect(requests.count == 2, "the three that waited shared one transaction")
        // Their events are numbered one after another within the shared revision.
        #expect(Set(results) == [.committed(revision: 22, eventBase: 0), .committed(revision: 22, eventBase: 2),
                                 .committed(revision: 22, eventBase: 3)])
        let shared = try #require(requests.last)
        #expect(shared.success.count == 3 + 6 + 1, "three writes, six events and the last-change put, once")
        #expect(shared.success.filter { $0 == .put(EtcdBytes("r"), EtcdBytes("o")) }.count == 1)
    }

    @Test(.timeLimit(.minutes(1))) func aCommitKeptWaitingPastPatienceStartsAnotherTransaction() async throws {
        let recorder = Recorder(outcomes: [])
        let group = GroupCommit(concurrency: 1, maxConcurrency: 2, patience: .milliseconds(20),
                                lastChange: .put(EtcdBytes("r"), EtcdBytes("o"))) { try await recorder.send($0) }
        let head = Task { try await group.commit(Self.commit(writes: ["o/a"])) }
        while await !recorder.held() { try await Task.sleep(for: .milliseconds(1)) }
        let waiting = Task { try await group.commit(Self.commit(writes: ["o/b"])) }
        // Under load the task may start late: the third must come once the second has waited past patience, or
        // it would wait behind the held first as well, and nothing would release them.
        while group.waitingCount < 1 { try await Task.sleep(for: .milliseconds(1)) }
        try await Task.sleep(for: .milliseconds(60))
        #expect(await recorder.requests.count == 1, "the second waits while the first is under way")
        let overdue = Task { try await group.commit(Self.commit(writes: ["o/c"])) }
        // The first is still held: the two waiting commits go in a transaction of their own meanwhile.
        #expect(try await waiting.value == .committed(revision: 22, eventBase: 0))
        #expect(try await overdue.value == .committed(revision: 22, eventBase: 1))
        await recorder.release()
        #expect(try await head.value == .committed(revision: 22, eventBase: 0))
    }

    @Test func aFailedSharedTransactionLeavesEachMemberUndecidedAndALoneOneConflicted() async throws {
        let later = [Self.commit(reads: ["s/1": 3], writes: ["o/b"]), Self.commit(writes: ["o/c"])]
        let (first, results, _) = try await outcomes(first: Self.commit(writes: ["o/a"]), later: later, answers: [false, false])
        #expect(first == .conflicted(revision: 21))
        #expect(results == [.undecided(revision: 22), .undecided(revision: 22)])
    }
}
