import Foundation
import TrellisModel

/// Failed authentications per client address: after `limit` failures within `window`, the client's
/// further attempts are refused with 429 until the window ends, so that tokens cannot be guessed at the
/// speed of the API. Each window's first failure and the start of a lock-out go to the event log.
///
/// Clients of the unix sockets are not counted: who may connect there is decided by the socket's mode,
/// and every local client shares one (empty) address, so a lock-out would stop the host's own agents.
actor AuthenticationGuard {
    struct Window {
        var start: Date
        var failures: Int
    }

    /// What a failure led to: whether to record it in the event log, and with how many failures so far.
    struct Failure {
        var record: Bool
        var failures: Int
    }

    let limit: Int
    let window: TimeInterval
    private var windows: [String: Window] = [:]

    init(limit: Int = 20, window: TimeInterval = 60) {
        self.limit = limit
        self.window = window
    }

    /// Refuses a client that is locked out, with when it may try again.
    func check(_ client: String, now: Date = Date()) throws {
        guard let current = windows[client], current.failures >= limit else { return }
        let wait = current.start.addingTimeInterval(window).timeIntervalSince(now)
        guard wait > 0 else {
            windows[client] = nil
            return
        }
        throw TrellisError(.tooManyRequests, "too many failed authentications from \(client); try again in \(Int(wait.rounded(.up))) s")
    }

    /// Counts a failure of `client`.
    func fail(_ client: String, now: Date = Date()) -> Failure {
        var current = windows[client].flatMap { now.timeIntervalSince($0.start) < window ? $0 : nil } ?? Window(start: now, failures: 0)
        current.failures += 1
        windows[client] = current
        if windows.count > 10_000 { windows = windows.filter { now.timeIntervalSince($0.value.start) < window } }
        return Failure(record: current.failures == 1 || current.failures == limit, failures: current.failures)
    }
}

extension Registry {
    /// Records failed authentications of a client in the event log (visible to admins only).
    func recordUnauthenticated(client: String, failures: Int, lockedOut: Bool) async {
        let object: JSONValue = .object(["client": .string(client), "failures": .number(Double(failures)), "lockedOut": .bool(lockedOut)])
        _ = try? await mutate(.system) { tx in
            try tx.record(.unauthenticated, kind: .user, path: client, enterprise: nil, object: object)
        }
    }
}
