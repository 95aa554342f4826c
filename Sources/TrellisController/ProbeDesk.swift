import Foundation
import Synchronization
import TrellisModel

/// Probes on their way to the agents that send them, and the callers waiting for their reports.
///
/// The controller cannot call an agent (agents reach the controller, not the other way), so each agent
/// long-polls `GET /api/v1/hosts/{host}/probes`; a verify request queues a probe for the source's host,
/// wakes that host's poll and waits for the agent's `POST …/probes/{id}`. All of it is in this controller's
/// memory: in a cluster, the verify request must reach the controller the source host's agent polls.
final class ProbeDesk: Sendable {
    /// How long a caller waits for an agent's report.
    let answerWithin: Duration
    /// How long after its last poll a host still counts as taking probes (it polls again at once after each answer).
    let pollGrace: Duration

    private struct HostDesk {
        var queued: [HostProbe] = []
        var poll: (token: UInt64, continuation: CheckedContinuation<[HostProbe], Never>)?
        var lastPoll: ContinuousClock.Instant?
    }
    private struct State {
        var hosts: [String: HostDesk] = [:]
        var waiting: [String: (host: String, continuation: CheckedContinuation<ProbeReport, any Error>)] = [:]
        var nextToken: UInt64 = 0
    }
    private let state = Mutex(State())

    init(answerWithin: Duration = .seconds(15), pollGrace: Duration = .seconds(5)) {
        self.answerWithin = answerWithin
        self.pollGrace = pollGrace
    }

    /// The probes queued for `host`, waiting up to `wait` for one when there is none.
    func take(host: String, wait: Duration) async -> [HostProbe] {
        let token = state.withLock { state in
            state.nextToken += 1
            return state.nextToken
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let waits = state.withLock { state in
                    var desk = state.hosts[host] ?? HostDesk()
                    desk.lastPoll = .now
                    defer { state.hosts[host] = desk }
                    // One poll per host: an older one (its connection probably gone) answers empty.
                    desk.poll?.continuation.resume(returning: [])
                    desk.poll = nil
                    guard desk.queued.isEmpty, wait > .zero else {
                        continuation.resume(returning: desk.queued)
                        desk.queued = []
                        return false
                    }
                    desk.poll = (token, continuation)
                    return true
                }
                guard waits else { return }
                // A cancellation that came before the poll was registered ends it now.
                if Task.isCancelled { return endPoll(host: host, token: token) }
                Task { try? await Task.sleep(for: wait); self.endPoll(host: host, token: token) }
            }
        } onCancel: {
            endPoll(host: host, token: token)
        }
    }

    private func endPoll(host: String, token: UInt64) {
        state.withLock { state in
            guard let poll = state.hosts[host]?.poll, poll.token == token else { return }
            state.hosts[host]?.poll = nil
            state.hosts[host]?.lastPoll = .now
            poll.continuation.resume(returning: [])
        }
    }

    /// Hands `request` to `host`'s agent and waits for its report.
    func submit(host: String, _ request: ProbeRequest) async throws -> ProbeReport {
        let id = UUID().uuidString.lowercased()
        return try await withTaskCancellationHandler {
            try await handOver(id: id, host: host, request)
        } onCancel: {
            abandon(id, host: host, because: "the request was cancelled (the controller is stopping, or its caller left)")
        }
    }

    private func handOver(id: String, host: String, _ request: ProbeRequest) async throws -> ProbeReport {
        let grace = pollGrace, within = answerWithin
        return try await withCheckedThrowingContinuation { continuation in
            let refusal: TrellisError? = state.withLock { state in
                var desk = state.hosts[host] ?? HostDesk()
                guard desk.poll != nil || desk.lastPoll.map({ $0.duration(to: .now) < grace }) == true else {
                    return TrellisError(.conflict, "the agent of host '\(host)' is not taking probes from this controller: it is down, "
                                        + "or connected to another controller of the cluster (ask that one)")
                }
                state.waiting[id] = (host, continuation)
                let probe = HostProbe(id: id, request: request)
                if let poll = desk.poll {
                    desk.poll = nil
                    poll.continuation.resume(returning: [probe])
                } else {
                    desk.queued.append(probe)
                }
                state.hosts[host] = desk
                return nil
            }
            if let refusal { return continuation.resume(throwing: refusal) }
            if Task.isCancelled { return abandon(id, host: host, because: "the request was cancelled") }
            Task {
                try? await Task.sleep(for: within)
                let seconds = within.components.seconds
                self.abandon(id, host: host, because: "the agent of host '\(host)' did not report the probe within \(seconds) s")
            }
        }
    }

    private func abandon(_ id: String, host: String, because reason: String) {
        state.withLock { state in
            state.hosts[host]?.queued.removeAll { $0.id == id }
            guard let waiting = state.waiting.removeValue(forKey: id) else { return }
            waiting.continuation.resume(throwing: TrellisError(.unavailable, reason))
        }
    }

    /// An agent's report on probe `id`, which must have been handed to `host`.
    func complete(host: String, id: String, _ report: ProbeReport) throws {
        let waiting: CheckedContinuation<ProbeReport, any Error>? = state.withLock { state in
            guard state.waiting[id]?.host == host else { return nil }
            return state.waiting.removeValue(forKey: id)?.continuation
        }
        guard let waiting else { throw TrellisError.notFound("no probe '\(id)' waits for a report from host '\(host)'") }
        waiting.resume(returning: report)
    }
}
