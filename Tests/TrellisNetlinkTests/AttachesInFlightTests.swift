import Testing
@testable import TrellisAgent

/// The reconciler lets attaches in flight go first: it waits while one is, until the last ends, and
/// never longer than its limit.
@Suite(.timeLimit(.minutes(1)))
struct AttachesInFlightTests {
    @Test func theReconcilerWaitsForTheLastAttachAndNoLongerThanItsLimit() async {
        let inFlight = AttachesInFlight()
        await inFlight.drained(within: .seconds(3600))

        let first = inFlight.begin(), second = inFlight.begin()
        let waiting = Task { await inFlight.drained(within: .seconds(3600)) }
        first.end()
        first.end()
        #expect(inFlight.count == 1, "a ticket ends once")
        second.end()
        await waiting.value

        let stuck = inFlight.begin()
        await inFlight.drained(within: .milliseconds(10))
        #expect(inFlight.count == 1)
        stuck.end()
        await inFlight.drained(within: .seconds(3600))
    }
}
