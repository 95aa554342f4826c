import Foundation
import Logging
import ServiceLifecycle
import TrellisStore

/// How much event history the store keeps (`--event-retention`, `--event-max-age`) and how often it is trimmed.
public struct HistoryRetention: Sendable, Equatable {
    /// The newest events kept, whatever their age.
    public var events: Int
    /// Events older than this are removed even when fewer than `events` remain.
    public var maxAge: Duration
    /// How often the trim runs; in etcd each run also compacts the history up to the previous run's revision.
    public var interval: Duration

    public init(events: Int = 100_000, maxAge: Duration = .seconds(30 * 86_400), interval: Duration = .seconds(300)) {
        self.events = events
        self.maxAge = maxAge
        self.interval = interval
    }
}

/// Keeps the store's event log within its retention, so neither SQLite nor etcd (whose full quota stops every
/// write) grows without bound. Every controller of a cluster runs one; trims are idempotent.
struct HistoryTrimmer: Service {
    let store: any Store
    let retention: HistoryRetention
    let logger: Logger

    func run() async throws {
        // The first trim waits an interval too: starting a controller does no work for it.
        while (try? await cancelWhenGracefulShutdown { try await Task.sleep(for: retention.interval) }) != nil {
            do {
                let cutoff = Date().addingTimeInterval(-Double(retention.maxAge.components.seconds))
                let trim = try await store.trimHistory(keepingEvents: retention.events, recordedAfter: cutoff)
                if trim.events > 0 || trim.chunks > 0 || trim.compactedTo != nil {
                    logger.info("trimmed history", metadata: ["events": "\(trim.events)", "chunks": "\(trim.chunks)",
                                                              "compacted-to": "\(trim.compactedTo ?? 0)"])
                }
            } catch {
                logger.warning("history trim failed; tried again at the next interval", metadata: ["error": "\(error)"])
            }
        }
    }
}
