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
