import Foundation
import Synchronization
import TrellisEtcd
import TrellisModel

/// A write transaction's commit, ready to go to etcd alone or merged with others' (`GroupCommit`): what it read
/// (compared at the commit), what it writes, and its events, which are numbered only once its place in the
/// etcd transaction is known.
struct PreparedCommit: Sendable {
    /// The revision of the mirror the transaction read.
    var readRevision: Int
    /// The mod revision of each key read (0: it did not exist).
    var readKeys: [String: Int]
    /// Prefixes read whole: nothing under them may change after `readRevision`.
    var readPrefixes: [String]
    /// The writes in order (nil deletes), events excluded.
    var writes: [(key: String, value: Data?)]
    /// The events, each under a key of its own; `index` counts from 0 within this transaction.
    var events: [(key: String, event: StoredEvent)]

    var writtenKeys: Set<String> { Set(writes.map(\.key)) }

    /// Bytes of keys and values this commit puts, for the request size limit.
    var size: Int {
        writes.reduce(0) { $0 + $1.key.utf8.count + ($1.value?.count ?? 0) } + events.reduce(0) { $0 + $1.key.utf8.count + 400 }
    }

    /// The compares that make the commit fail if anything read changed since `readRevision`.
    var compare: [EtcdCompare] {
        readKeys.sorted { $0.key < $1.key }.map { key, revision in
            revision == 0 ? EtcdCompare.absent(EtcdBytes(key)) : EtcdCompare(EtcdBytes(key), .modRevision(revision))
        } + readPrefixes.map { start in
            EtcdCompare(EtcdBytes(start), .modRevision(readRevision + 1), .less, rangeEnd: EtcdBytes(start).prefixEnd)
        }
    }

    /// The puts and deletes, with the events numbered from `eventBase` (their place among the events of one etcd
    /// transaction: an event's id is its revision times 1,000 plus that number).
    func operations(eventBase: Int) throws -> [EtcdOperation] {
        let encoder = JSONCoding.encoder()
        let puts = writes.map { key, value in
            value.map { EtcdOperation.put(EtcdBytes(key), EtcdBytes(Array($0))) } ?? .delete(key: EtcdBytes(key), rangeEnd: nil)
        }
        return try puts + events.map { key, event in
            var event = event
            event.index += eventBase
            return .put(EtcdBytes(key), EtcdBytes(Array(try encoder.encode(event))))
        }
    }

    /// Whether everything this commit read is unchanged in `mirror`: when a merged transaction fails, the members
    /// for which this holds were not its cause and go again as they are.
    func holds(in mirror: Mirror) -> Bool {
        for (key, revision) in readKeys where (mirror.keys[key]?.modRevision ?? 0) != revision { return false }
        guard !readPrefixes.isEmpty else { return true }
        return !mirror.keys.contains { key, stored in
            stored.modRevision > readRevision && readPrefixes.contains { key.hasPrefix($0) }
        }
    }

    /// Whether this commit and `other` can go in one etcd transaction: neither writes what the other reads or
    /// writes. (Compares run before any write of the transaction, so one that read what the other writes would
    /// commit on a value that is no longer there.)
    func canJoin(_ batch: BatchFootprint) -> Bool {
        let written = writtenKeys
        return written.isDisjoint(with: batch.written) && written.isDisjoint(with: batch.read)
            && Set(readKeys.keys).isDisjoint(with: batch.written)
            && !readPrefixes.contains { prefix in batch.written.contains { $0.hasPrefix(prefix) } }
            && !batch.readPrefixes.contains { prefix in written.contains { $0.hasPrefix(prefix) } }
    }
}

/// What the commits already in a batch read and write.
struct BatchFootprint {
    var read: Set<String> = []
    var readPrefixes: [String] = []
    var written: Set<String> = []
    var compares = 0
    var operations = 0
    var size = 0
    var events = 0

    mutating func add(_ commit: PreparedCommit) {
        read.formUnion(commit.readKeys.keys)
        readPrefixes += commit.readPrefixes
        written.formUnion(commit.writtenKeys)
        compares += commit.readKeys.count + commit.readPrefixes.count
        operations += commit.writes.count + commit.events.count
        size += commit.size
        events += commit.events.count
    }
}

/// Merges the commits of concurrent writes into few etcd transactions. Every etcd request costs each member a raft
/// round and the JSON gateway's work, whatever it carries, so on a busy cluster the request count, not the keys,
/// bounds the creates per second. A commit that finds no transaction under way goes at once, alone; those that
/// arrive while `concurrency` transactions are under way wait and go together in the next, as many as fit etcd's
/// limits and do not touch each other's keys. Each member's compares stay in the merged transaction, so it
/// commits only if every member would have committed alone. When etcd is slow to answer (a starved machine:
/// seconds per request), waiting for a free place would add those seconds again and again: once the oldest
/// waiting commit has waited `patience`, the next arrival starts another transaction, up to `maxConcurrency`.
final class GroupCommit: Sendable {
    /// What became of a commit.
    enum Outcome: Sendable, Hashable {
        /// Committed at `revision`; its events were numbered from `eventBase`.
        case committed(revision: Int, eventBase: Int)
        /// What it read changed (etcd's revision was `revision`): the transaction runs again.
        case conflicted(revision: Int)
        /// A merged transaction failed at `revision`; this member may not be the cause (`PreparedCommit.holds`).
        case undecided(revision: Int)
    }

    /// etcd's default `--max-txn-ops`: the most compares, and the most operations, one transaction may carry.
    static let maxOperations = 128
    /// Well under etcd's 1.5 MiB request limit once keys and values are base64.
    static let maxBytes = 768 << 10
    /// Event ids are revision × 1,000 + index: the events of one transaction must stay below 1,000.
    static let maxEvents = 999

    private struct Waiting {
        var commit: PreparedCommit
        var alone: Bool
        var arrived: ContinuousClock.Instant
        var continuation: CheckedContinuation<Outcome, any Error>
    }
    private let state = Mutex<(running: Int, waiting: [Waiting])>((0, []))
    private let concurrency: Int
    private let maxConcurrency: Int
    private let patience: Duration
    private let lastChange: EtcdOperation
    private let send: @Sendable (EtcdTxnRequest) async throws -> EtcdTxnResponse
    private let transactions = Atomic<Int>(0)

    /// Commits through `send`; every transaction also carries `lastChange`, once.
    init(concurrency: Int = 2, maxConcurrency: Int = 8, patience: Duration = .milliseconds(100), lastChange: EtcdOperation,
         send: @escaping @Sendable (EtcdTxnRequest) async throws -> EtcdTxnResponse) {
        self.concurrency = concurrency
        self.maxConcurrency = max(concurrency, maxConcurrency)
        self.patience = patience
        self.lastChange = lastChange
        self.send = send
    }

    /// etcd transactions sent so far (merged ones count once).
    var transactionsSent: Int { transactions.load(ordering: .relaxed) }

    /// Commits waiting for a transaction.
    var waitingCount: Int { state.withLock { $0.waiting.count } }

    /// Commits `commit`, merged with others unless `alone`.
    func commit(_ commit: PreparedCommit, alone: Bool = false) async throws -> Outcome {
        try await withCheckedThrowingContinuation { continuation in
            let now = ContinuousClock.now
            let starts = state.withLock { state in
                state.waiting.append(Waiting(commit: commit, alone: alone, arrived: now, continuation: continuation))
                let overdue = now - state.waiting[0].arrived >= patience
                guard state.running < concurrency || (overdue && state.running < maxConcurrency) else { return false }
                state.running += 1
                return true
            }
            if starts { Task { await self.drive() } }
        }
    }

    private func drive() async {
        while let batch = state.withLock({ state -> [Waiting]? in
            let batch = Self.takeBatch(from: &state.waiting)
            if batch.isEmpty { state.running -= 1 }
            return batch.isEmpty ? nil : batch
        }) {
            await run(batch)
        }
    }

    /// The next transaction's members, in order of arrival: the first waiting commit, then every later one that fits.
    private static func takeBatch(from waiting: inout [Waiting]) -> [Waiting] {
        let chosen = chooseBatch(waiting.map { ($0.commit, $0.alone) })
        let taken = chosen.map { waiting[$0] }
        for index in chosen.reversed() { waiting.remove(at: index) }
        return taken
    }

    /// The indices of the commits that go together: the first, then each that fits the limits and touches no key of
    /// those chosen; a commit that must go alone goes only first and takes no company.
    static func chooseBatch(_ waiting: [(commit: PreparedCommit, alone: Bool)]) -> [Int] {
        guard let first = waiting.first else { return [] }
        if first.alone { return [0] }
        var footprint = BatchFootprint()
        footprint.add(first.commit)
        var chosen = [0]
        for (index, candidate) in waiting.enumerated().dropFirst() where !candidate.alone {
            let commit = candidate.commit
            guard footprint.compares + commit.readKeys.count + commit.readPrefixes.count <= maxOperations,
                  footprint.operations + commit.writes.count + commit.events.count < maxOperations,
                  footprint.size + commit.size <= maxBytes, footprint.events + commit.events.count <= maxEvents,
                  commit.canJoin(footprint) else { continue }
            footprint.add(commit)
            chosen.append(index)
        }
        return chosen
    }

    private func run(_ batch: [Waiting]) async {
        var compare: [EtcdCompare] = [], success: [EtcdOperation] = [], bases: [Int] = []
        do {
            var base = 0
            for member in batch {
                bases.append(base)
                compare += member.commit.compare
                success += try member.commit.operations(eventBase: base)
                base += member.commit.events.count
            }
        } catch {
            batch.forEach { $0.continuation.resume(throwing: error) }
            return
        }
        let answer: EtcdTxnResponse
        do {
            transactions.add(1, ordering: .relaxed)
            answer = try await send(EtcdTxnRequest(compare: compare, success: success + [lastChange]))
        } catch {
            batch.forEach { $0.continuation.resume(throwing: error) }
            return
        }
        let revision = answer.header.revision
        for (member, base) in zip(batch, bases) {
            let outcome: Outcome = answer.succeeded ? .committed(revision: revision, eventBase: base)
                : batch.count == 1 ? .conflicted(revision: revision) : .undecided(revision: revision)
            member.continuation.resume(returning: outcome)
        }
    }
}
