import Synchronization

/// Who each recently seen bearer token stands for, so that a request costs no store read to
/// authenticate. Any change of a user or a host (a new token, a rotation, a join, a deletion) empties
/// it; a lookup that raced with such a change is not kept (the generation it started at is gone).
final class CallerCache: Sendable {
    private struct State {
        var generation = 0
        var callers: [String: Caller] = [:]
    }

    private let state = Mutex(State())
    private let capacity: Int

    init(capacity: Int = 10_000) { self.capacity = capacity }

    /// The cached caller of a token digest, and the generation to pass to `store` after a lookup.
    func lookup(_ digest: String) -> (caller: Caller?, generation: Int) {
        state.withLock { ($0.callers[digest], $0.generation) }
    }

    func store(_ caller: Caller, for digest: String, generation: Int) {
        state.withLock { state in
            guard state.generation == generation else { return }
            if state.callers.count >= capacity { state.callers.removeAll(keepingCapacity: true) }
            state.callers[digest] = caller
        }
    }

    func invalidate() {
        state.withLock { state in
            state.generation += 1
            state.callers.removeAll()
        }
    }
}
