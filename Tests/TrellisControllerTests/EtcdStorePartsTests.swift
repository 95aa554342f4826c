import Foundation
import Testing
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
