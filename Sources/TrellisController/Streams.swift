import Foundation
import ServiceLifecycle
import TrellisModel
import TrellisStore

extension Registry {
    /// Streams `host`'s desired state: a snapshot (or, when the watcher is already at the current
    /// revision, a bookmark), then a delta whenever the state changes, and a bookmark every
    /// `keepalive` seconds so that both ends notice a dead connection. Deltas keep the cost of a
    /// change proportional to what changed, not to the size of the host's state.
    ///
    /// Every wake-up compiles the state afresh, a keepalive's too: the hub keeps only the newest
    /// signal, so a keepalive may stand in for a change it replaced. A bookmark answering a keepalive
    /// names the revision the state was compiled at, never one whose changes it has not compared.
    ///
    /// A watcher that names the `digest` of the state it has (as another controller sent it) gets a bookmark
    /// instead of the snapshot when its state is still this one's, whatever revision it has.
    func streamDesiredState(host: String, since: Int, digest: String? = nil,
                            send: (any Encodable & Sendable) async throws -> Void) async throws {
        let (id, signals) = await hub.watch(host: host)
        let hub = self.hub, keepalive = watchKeepalive
        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    while !Task.isCancelled {
                        try await Task.sleep(for: keepalive)
                        await hub.poke(host: host, id: id)
                    }
                }
                var last = try await hub.state(for: host)
                // Only a watcher at exactly this revision can skip the snapshot: one ahead of it saw a store
                // that has since gone back (restored from a backup) and holds objects this one never had.
                if since == last.revision || (digest != nil && digest == last.contentDigest) {
                    try await send(WatchMessage(type: .bookmark, revision: last.revision))
                } else {
                    try await send(WatchMessage(type: .snapshot, revision: last.revision, state: last))
                }
                // Ends on graceful shutdown: an open watch would otherwise keep a stopping controller
                // alive, with its agents still listening to it instead of to its successor.
                for await signal in signals.cancelOnGracefulShutdown() {
                    let state = try await hub.state(for: host)
                    let delta = state.delta(from: last)
                    if !delta.isEmpty {
                        last = state
                        try await send(WatchMessage(type: .delta, revision: state.revision, delta: delta))
                    } else if signal == .keepalive {
                        try await send(WatchMessage(type: .bookmark, revision: state.revision))
                    }
                }
                group.cancelAll()
            }
        } catch {
            await hub.unwatch(host: host, id: id)
            throw error
        }
        await hub.unwatch(host: host, id: id)
    }

    /// The id of the newest event.
    func lastEventID() async throws -> Int {
        try await store.read { try $0.lastEventID() }
    }

    /// Streams the caller's events after `afterID`, then each new one as it is committed.
    func followEvents(afterID: Int, _ caller: Caller, send: (any Encodable & Sendable) async throws -> Void) async throws {
        let (id, signals) = await hub.follow()
        var last = afterID
        func drain() async throws {
            while true {
                let batch = try await events(afterID: last, limit: 500, caller)
                for event in batch { try await send(event) }
                last = batch.last?.id ?? last
                if batch.count < 500 { return }
            }
        }
        do {
            try await drain()
            for await _ in signals.cancelOnGracefulShutdown() { try await drain() }
        } catch {
            await hub.unfollow(id: id)
            throw error
        }
        await hub.unfollow(id: id)
    }
}
