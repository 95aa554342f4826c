import Synchronization

/// The attaches whose port is not plugged yet. The controller's watch brings a new endpoint a little
/// before the answer to its create, and the reconcile it starts would take the datapath's thread just as
/// the attach needs it, although it has nothing to do for the port (the endpoint is not bound yet). So
/// the reconciler lets attaches in flight go first, for a bounded time: a stream of attaches cannot hold
/// back the forwarding entries of endpoints elsewhere for longer than that.
final class AttachesInFlight: Sendable {
    private struct State {
        var count = 0
        var nextWaiter = 0
        var waiters: [Int: CheckedContinuation<Void, Never>] = [:]
        /// Waiters whose time ran out before they were registered.
        var expired: Set<Int> = []
    }
    private let state = Mutex(State())

    /// One attach, counted until its `end()` (which may be called more than once).
    final class Ticket: Sendable {
        private let owner: AttachesInFlight
        private let ended = Mutex(false)
        fileprivate init(owner: AttachesInFlight) { self.owner = owner }

        func end() {
            guard ended.withLock({ ended in defer { ended = true }; return !ended }) else { return }
            owner.finish()
        }
    }

    /// How many attaches are in flight.
    var count: Int { state.withLock { $0.count } }

    func begin() -> Ticket {
        state.withLock { $0.count += 1 }
        return Ticket(owner: self)
    }

    private func finish() {
        let resumed = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.count -= 1
            guard state.count == 0 else { return [] }
            defer { state.waiters = [:] }
            return Array(state.waiters.values)
        }
        resumed.forEach { $0.resume() }
    }

    /// Returns once no attach is in flight, or after `limit`.
    func drained(within limit: Duration) async {
        let id = state.withLock { state in
            defer { state.nextWaiter += 1 }
            return state.count == 0 ? nil : state.nextWaiter
        }
        guard let id else { return }
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                try? await Task.sleep(for: limit)
                self.state.withLock { state -> CheckedContinuation<Void, Never>? in
                    guard let waiter = state.waiters.removeValue(forKey: id) else {
                        state.expired.insert(id)
                        return nil
                    }
                    return waiter
                }?.resume()
            }
            await withCheckedContinuation { continuation in
                let waiting = state.withLock { state in
                    guard state.count > 0, state.expired.remove(id) == nil else { return false }
                    state.waiters[id] = continuation
                    return true
                }
                if !waiting { continuation.resume() }
            }
            group.cancelAll()
        }
        state.withLock { _ = $0.expired.remove(id) }
    }
}
