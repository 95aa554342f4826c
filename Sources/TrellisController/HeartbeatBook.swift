import Foundation
import Synchronization

/// A host's last heartbeat: when, and the revision of desired state its agent had applied.
struct Heartbeat: Sendable, Equatable {
    var time: Date
    var appliedRevision: Int?
}

/// The heartbeats this controller received, in memory. The store gets a host's heartbeat only when this
/// controller has not stored one for it in `storeEvery` seconds, so 100 hosts beating every 5 s cost
/// about 3 writes a second instead of 20; another controller, which sees only the stored heartbeat,
/// allows it `storeEvery` more before it calls the host down.
final class HeartbeatBook: Sendable {
    let timeout: TimeInterval
    let storeEvery: TimeInterval
    private struct Entry {
        var received: Heartbeat
        var stored: Date?
    }
    private let entries = Mutex<[String: Entry]>([:])

    init(timeout: TimeInterval, storeEvery: TimeInterval) {
        self.timeout = timeout
        self.storeEvery = storeEvery
    }

    /// Notes a heartbeat; true when it should also be stored (then `stored(_:at:)` once it is).
    func receive(_ host: String, _ beat: Heartbeat) -> Bool {
        entries.withLock { entries in
            let last = entries[host]?.stored
            entries[host, default: Entry(received: beat)].received = beat
            return last.map { beat.time.timeIntervalSince($0) >= storeEvery || beat.time < $0 } ?? true
        }
    }

    /// Notes that the heartbeat of `time` is in the store.
    func stored(_ host: String, at time: Date) {
        entries.withLock { $0[host]?.stored = time }
    }

    /// Forgets a host (deleted, so a host registered later under its name starts down).
    func forget(_ host: String) {
        _ = entries.withLock { $0.removeValue(forKey: host) }
    }

    /// The newer of the heartbeat this controller received and the one in the store, and whether it makes the host up:
    /// one received here counts for `timeout`, one only stored (the host's agent talks to another controller) for
    /// `timeout + storeEvery`, since the other controller stores only every `storeEvery`.
    func latest(_ host: String, stored: Heartbeat?, now: Date = Date()) -> (beat: Heartbeat?, up: Bool) {
        let received = entries.withLock { $0[host]?.received }
        if let received, stored.map({ received.time >= $0.time }) ?? true {
            return (received, now.timeIntervalSince(received.time) <= timeout)
        }
        guard let stored else { return (nil, false) }
        return (stored, now.timeIntervalSince(stored.time) <= timeout + storeEvery)
    }
}
