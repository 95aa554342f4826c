import Foundation
import HashTreeCollections
import Synchronization
import TrellisEtcd
import TrellisModel

/// The clustered store: every key under a prefix of an etcd cluster, mirrored in memory from one watch.
///
/// Transactions run synchronously against the mirror at one revision, as SQLite's do, and record what they
/// read; the commit is one etcd transaction that compares the mod revision of every key read (absent keys:
/// create revision 0, ranges: nothing in them changed since) and applies the writes, retried against a newer
/// mirror on conflict (etcd's own STM does the same). Claims are one key each, so two controllers can never
/// hand out the same address. The store's revision is etcd's.
public final class EtcdStore: Store {
    let client: EtcdClient
    let prefix: String
    private let state: Mutex<MirrorState>
    private let decoded = DecodedObjects()
    private let conflicts = Atomic<Int>(0)
    private let committed = Atomic<Int>(0)
    /// The revision the previous history trim started from: the next one compacts up to it.
    private let previousTrim = Atomic<Int>(0)
    private let follower: Mutex<Task<Void, Never>?> = Mutex(nil)
    private let catchingUp = SharedRuns()
    /// Revisions of etcd's history kept behind the newest this store committed; a controller whose watch lags
    /// further starts over from a snapshot.
    let historyKept: Int
    /// The revision this store last compacted etcd's history to (or found it compacted to), and whether it is at it.
    private let compactedTo = Atomic<Int>(0)
    private let compacting = Atomic<Bool>(false)
    /// This controller's blocks of ids and its address hints: what keeps concurrent creates from meeting on a key.
    let allocation = ClusterAllocation()
    /// Leases of id blocks take turns: one lease serves every write that waited for it.
    private let leases = Turns()
    /// Marks the events this store records, so the watch can tell them from other controllers'.
    let origin: String
    /// Merges the commits of concurrent writes into few etcd transactions.
    let groupCommit: GroupCommit
    private let elsewhere = Mutex<(@Sendable (Int, [Event]) async -> Void)?>(nil)

    public func followChanges(madeElsewhere handler: @escaping @Sendable (_ revision: Int, _ events: [Event]) async -> Void) {
        elsewhere.withLock { $0 = handler }
    }

    /// Connects to `members`, reads everything under `prefix` and starts following it.
    public convenience init(members: [String], prefix: String = "/trellis", historyKept: Int = 10_000) async throws {
        try await self.init(members: members, prefix: prefix, following: true, historyKept: historyKept)
    }

    /// A store that follows the changes of others only once `startFollowing()` is called (tests make it fall behind).
    init(members: [String], prefix: String, following: Bool, historyKept: Int = 10_000) async throws {
        client = try EtcdClient(members: members)
        self.historyKept = historyKept
        self.prefix = prefix.hasSuffix("/") ? prefix : prefix + "/"
        origin = UUID().uuidString
        groupCommit = GroupCommit(lastChange: EtcdTransaction.lastChange(self.prefix, origin: origin)) { [client] in
            try await client.txn($0)
        }
        state = Mutex(MirrorState(mirror: Mirror(revision: 0, keys: [:])))
        do {
            let snapshot = try await load()
            state.withLock { $0.mirror = snapshot }
        } catch {
            try? await client.shutdown()
            throw Self.unavailable(error)
        }
        if following { startFollowing() }
    }

    /// Follows the prefix from the mirror's revision on.
    func startFollowing() {
        let task = Task { [weak self] in _ = await self?.follow() }
        follower.withLock { $0 = task }
    }

    /// Stops following etcd and closes the connections.
    public func close() async {
        follower.withLock { $0 }?.cancel()
        try? await client.shutdown()
    }

    /// Transactions that had to run again because another write changed what they read.
    public var conflictRetries: Int { conflicts.load(ordering: .relaxed) }
    public var commits: Int { committed.load(ordering: .relaxed) }
    public var commitRequests: Int { groupCommit.transactionsSent }

    /// The revision the mirror has reached.
    public var mirroredRevision: Int { state.withLock { $0.mirror.revision } }

    /// Reads are linearizable across the controllers of a cluster: before reading the mirror, a read asks etcd
    /// (a linearizable range, no write) for the revision of the last change under the prefix, which every write
    /// marks on one key, and waits until the mirror has it. So what was written through another controller before
    /// a read began is in it. With etcd unreachable, reads are answered from the mirror as it is (what the
    /// controller last saw), as etcd's own serializable reads would: the API stays readable while writes get 503.
    /// Concurrent reads share one such round trip: those that arrive while one runs wait for the next.
    public func read<T: Sendable>(_ body: @escaping @Sendable (any StoreReader) throws -> T) async throws -> T {
        try await catchingUp.join { try await self.catchUp() }
        let mirror = state.withLock { $0.mirror }
        return try body(EtcdTransaction(mirror: mirror, prefix: prefix, actor: "", decoded: decoded, origin: origin,
                                        allocation: allocation))
    }

    /// Writes run concurrently, in this controller as in others: nothing every create touches is one key. Ids
    /// come from blocks each controller leases (`ClusterAllocation`), address searches start from hints kept in
    /// memory, and what a transaction read is compared at commit, so a conflict is two writes on one object or
    /// one claim; it runs again against the newer mirror.
    public func write<T: Sendable>(actor: String,
                                   _ body: @escaping @Sendable (any StoreWriter) throws -> T) async throws -> WriteResult<T> {
        var attempt = 0
        while attempt < 50 {
            if attempt > 0 { try await Task.sleep(for: .microseconds(Int.random(in: 0...(500 << min(attempt, 6))))) }
            let mirror = state.withLock { $0.mirror }
            let transaction = EtcdTransaction(mirror: mirror, prefix: prefix, actor: actor, decoded: decoded, origin: origin,
                                              allocation: allocation)
            let value: T
            do {
                value = try body(transaction)
            } catch let needed as IDBlockNeeded {
                allocation.restore(transaction.hintsSet)
                try await lease(needed.sequence)
                continue
            } catch {
                allocation.restore(transaction.hintsSet)
                throw error
            }
            leaseAhead()
            guard transaction.changed else { return WriteResult(value: value, revision: mirror.revision, events: []) }
            let outcome: (revision: Int, eventBase: Int)?
            do {
                // A large object's chunks go first, each in a request of its own, under keys no other write uses.
                for chunk in transaction.chunks {
                    _ = try await client.txn(EtcdTxnRequest(compare: [], success: [.put(chunk.key, chunk.value)]))
                }
                outcome = try await commit(transaction.prepared())
            } catch {
                throw Self.unavailable(error)
            }
            guard let outcome else {
                conflicts.add(1, ordering: .relaxed)
                allocation.scatter(transaction.hintsSet.map(\.name))
                attempt += 1
                continue
            }
            committed.add(1, ordering: .relaxed)
            compact(behind: outcome.revision)
            return WriteResult(value: Self.stamped(value, guess: transaction.pendingRevision, outcome.revision), revision: outcome.revision,
                               events: transaction.events(committedAt: outcome.revision, eventBase: outcome.eventBase))
        }
        throw TrellisError(.unavailable, "store error: a write conflicted with others 50 times in a row; try again")
    }

    /// Commits `prepared` with the writes that go with it (`GroupCommit`) and waits until the mirror has the result;
    /// nil when something it read changed. When a merged transaction fails and what this one read still holds,
    /// another member was the cause: it goes again as it is (alone after two such failures).
    private func commit(_ prepared: PreparedCommit) async throws -> (revision: Int, eventBase: Int)? {
        var undecided = 0
        while true {
            switch try await groupCommit.commit(prepared, alone: undecided >= 2) {
            case .committed(let revision, let eventBase):
                try await waitForMirror(revision)
                return (revision, eventBase)
            case .conflicted(let revision):
                try await waitForMirror(revision)
                return nil
            case .undecided(let revision):
                try await waitForMirror(revision)
                guard prepared.holds(in: state.withLock { $0.mirror }) else { return nil }
                undecided += 1
            }
        }
    }

    /// Waits until the mirror has every change committed under the prefix before this call.
    private func catchUp() async throws {
        guard let answer = try? await client.range(EtcdRangeRequest(key: EtcdTransaction.lastChangeKey(prefix))) else { return }
        try await waitForMirror(answer.kvs.first?.modRevision ?? 0)
    }

    /// The put that marks a change under the prefix (see `read`).
    private var lastChange: EtcdOperation { EtcdTransaction.lastChange(prefix, origin: origin) }

    /// Leases the blocks that transactions found half used, in the background.
    private func leaseAhead() {
        for sequence in allocation.takeWanted() { Task { try? await self.lease(sequence) } }
    }

    /// Leases this controller a block of `sequence`'s ids: the sequence's counter moves on by a block in a
    /// transaction of its own, so the ids are this controller's whatever becomes of the write that asked.
    private func lease(_ sequence: String) async throws {
        await leases.acquire()
        defer { leases.release() }
        guard allocation.needsBlock(sequence) else { return }
        let key = prefix + "n/" + sequence
        for _ in 0..<50 {
            let stored = state.withLock { $0.mirror.keys[key] }
            let last = stored.flatMap { Int(String(decoding: $0.value.bytes, as: UTF8.self)) } ?? 0
            let end = last + ClusterAllocation.blockSize
            let compare = stored.map { EtcdCompare(EtcdBytes(key), .modRevision($0.modRevision)) } ?? .absent(EtcdBytes(key))
            let answer: EtcdTxnResponse
            do {
                answer = try await client.txn(EtcdTxnRequest(compare: [compare], success: [.put(EtcdBytes(key), EtcdBytes(String(end))),
                                                                                                  lastChange]))
            } catch {
                throw Self.unavailable(error)
            }
            try await waitForMirror(answer.header.revision)
            if answer.succeeded {
                allocation.grant(sequence, last + 1...end)
                return
            }
            conflicts.add(1, ordering: .relaxed)
        }
        throw TrellisError(.unavailable, "store error: leasing ids of '\(sequence)' conflicted 50 times in a row; try again")
    }

    /// Compacts etcd's history to `historyKept` revisions behind `revision` once twice that has piled up, in the
    /// background. etcd slows as its uncompacted history grows (here, 3,000 create-shaped transactions and their
    /// deletion halved the rate of the next 3,000; a compaction restored it), so waiting for the history trim's
    /// interval would let a busy cluster slow down for minutes. Several controllers may race: whichever
    /// compacts first wins, the others find it done.
    private func compact(behind revision: Int) {
        let target = revision - historyKept
        guard target - compactedTo.load(ordering: .relaxed) >= historyKept,
              compacting.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged else { return }
        Task {
            defer { compacting.store(false, ordering: .releasing) }
            do {
                try await client.compact(revision: target)
            } catch EtcdError.failed(let failure) where failure.compacted {
            } catch {
                return
            }
            compactedTo.store(target, ordering: .relaxed)
        }
    }

    /// `value` with the commit's revision when it is an object the transaction wrote: the transaction could only
    /// guess the revision (`guess`, the mirror's plus one), and other writes may have come between.
    static func stamped<T>(_ value: T, guess: Int, _ revision: Int) -> T {
        guard var object = value as? any Resource, object.revision == guess else { return value }
        object.revision = revision
        return object as? T ?? value
    }

    static func unavailable(_ error: any Error) -> any Error {
        if error is TrellisError { return error }
        return TrellisError(.unavailable, "store error: \(error)")
    }

    // MARK: The mirror

    private func load() async throws -> Mirror {
        let answer = try await client.range(.prefix(EtcdBytes(prefix)))
        return Mirror(revision: answer.header.revision, keys: TreeDictionary(uniqueKeysWithValues: answer.kvs.map { ($0.key.text, $0) }))
    }

    /// Follows the prefix from the mirror's revision on; after a compaction or a lost stream, from a new snapshot
    /// or the last revision seen.
    private func follow() async {
        while !Task.isCancelled {
            let from = state.withLock { $0.mirror.revision } + 1
            do {
                let request = EtcdWatchRequest(key: EtcdBytes(prefix), rangeEnd: EtcdBytes(prefix).prefixEnd, startRevision: from)
                try await client.watch(request) { message in
                    if message.canceled {
                        // Behind a compaction: what changed meanwhile is found by comparing the mirror with a snapshot.
                        let snapshot = try await self.load()
                        var previous = snapshot
                        self.apply { swap(&$0, &previous) }
                        if let handler = self.elsewhere.withLock({ $0 }) {
                            let changes = Self.changes(from: previous, to: snapshot, prefix: self.prefix)
                            if !changes.isEmpty { await handler(snapshot.revision, changes) }
                        }
                        return false
                    }
                    if !message.events.isEmpty {
                        self.apply(message.events)
                        try await self.announce(message.events)
                    }
                    return !Task.isCancelled
                }
            } catch {
                try? await Task.sleep(for: .milliseconds(200))
            }
        }
    }

    /// The objects that differ between two mirrors, as events at `new`'s revision (deletions carry the object
    /// as it was): what a controller that missed the history between them must take in.
    static func changes(from old: Mirror, to new: Mirror, prefix: String) -> [Event] {
        let objects = prefix + "o/"
        var events: [Event] = []
        for key in Set(old.keys.keys).union(new.keys.keys).sorted() where key.hasPrefix(objects) {
            let before = old.keys[key], after = new.keys[key]
            guard before?.value != after?.value || before?.modRevision != after?.modRevision else { continue }
            let name = key.dropFirst(objects.count)
            guard let slash = name.firstIndex(of: "/"), let kind = ResourceKind(rawValue: String(name[..<slash])) else { continue }
            let path = String(name[name.index(after: slash)...])
            let action: EventAction = after == nil ? .deleted : before == nil ? .created : .updated
            let bytes = after.map { new.resolved($0.value.bytes) } ?? before.map { old.resolved($0.value.bytes) } ?? nil
            events.append(Event(id: new.revision * 1000 + events.count, revision: new.revision, time: Date(), actor: "etcd", action: action,
                                kind: kind, path: path, enterprise: Names.prefix(path, 1), encodedObject: bytes))
        }
        return events
    }

    // MARK: History

    /// Events go in transactions of at most this many deletes: etcd refuses more than 128 operations in one.
    static let deletesPerTransaction = 100

    public func trimHistory(keepingEvents count: Int, recordedAfter cutoff: Date) async throws -> HistoryTrim {
        let mirror = state.withLock { $0.mirror }
        // Compacting only up to where the previous trim started leaves a controller whose watch lags by less than
        // one interval the history it still needs; one further behind starts over from a snapshot.
        let previous = previousTrim.exchange(mirror.revision, ordering: .relaxed)
        let decoder = JSONCoding.decoder()
        let events = mirror.keys.filter { $0.key.hasPrefix(prefix + "e/") }.compactMap {
            key, stored -> (key: String, id: Int, event: StoredEvent)? in
            guard let event = try? decoder.decode(StoredEvent.self, from: Data(stored.value.bytes)) else { return nil }
            return (key, stored.createRevision * 1000 + event.index, event)
        }.sorted { $0.id < $1.id }
        let doomed = events.enumerated().filter { index, event in index < events.count - count || event.event.time < cutoff }
        let doomedKeys = Set(doomed.map(\.element.key))
        // Chunks no object or kept event refers to, written before the previous trim (so no write still in flight).
        var referenced = Set(mirror.keys.filter { $0.key.hasPrefix(prefix + "o/") }.compactMap {
            ChunkedValue(manifest: $0.value.value.bytes)?.keyPrefix
        })
        for event in events where !doomedKeys.contains(event.key) {
            if let object = event.event.object, let chunked = ChunkedValue(manifest: Array(object)) { referenced.insert(chunked.keyPrefix) }
        }
        let unreferenced = mirror.keys.filter { key, stored in
            key.hasPrefix(prefix + "x/") && stored.createRevision <= previous
                && !referenced.contains(String(key[...key.lastIndex(of: "/")!]))
        }.map(\.key)
        let deletions = doomed.map(\.element.key) + unreferenced
        do {
            var revision = 0
            for start in stride(from: 0, to: deletions.count, by: Self.deletesPerTransaction) {
                let batch = deletions[start..<min(start + Self.deletesPerTransaction, deletions.count)]
                let deletes = batch.map { EtcdOperation.delete(key: EtcdBytes($0), rangeEnd: nil) } + [lastChange]
                let answer = try await client.txn(EtcdTxnRequest(compare: [], success: deletes))
                revision = answer.header.revision
            }
            try await waitForMirror(revision)
            guard previous > 0 else { return HistoryTrim(events: doomed.count, chunks: unreferenced.count) }
            try await client.compact(revision: previous)
            return HistoryTrim(events: doomed.count, chunks: unreferenced.count, compactedTo: previous)
        } catch EtcdError.failed(let failure) where failure.compacted {
            return HistoryTrim(events: doomed.count, chunks: unreferenced.count)
        } catch {
            throw Self.unavailable(error)
        }
    }

    /// Hands the events other controllers recorded to the handler, one commit (revision) at a time.
    private func announce(_ changes: [EtcdEvent]) async throws {
        guard let handler = elsewhere.withLock({ $0 }) else { return }
        let start = prefix + "e/"
        let mirror = state.withLock { $0.mirror }
        var byRevision: [Int: [Event]] = [:]
        for change in changes where change.kind == .put && change.keyValue.key.text.hasPrefix(start) {
            guard var stored = try? JSONCoding.decoder().decode(StoredEvent.self, from: Data(change.keyValue.value.bytes)),
                  stored.origin != origin else { continue }
            stored.object = stored.object.flatMap { mirror.resolved(Array($0)) }
            byRevision[change.keyValue.createRevision, default: []].append(stored.event(createdAt: change.keyValue.createRevision))
        }
        for (revision, events) in byRevision.sorted(by: { $0.key < $1.key }) {
            await handler(revision, events.sorted { $0.id < $1.id })
        }
    }

    private func apply(_ events: [EtcdEvent]) {
        apply { mirror in
            for event in events {
                switch event.kind {
                case .put: mirror.keys[event.keyValue.key.text] = event.keyValue
                case .delete: mirror.keys[event.keyValue.key.text] = nil
                }
                mirror.revision = max(mirror.revision, event.keyValue.modRevision)
            }
        }
    }

    private func apply(_ change: (inout Mirror) -> Void) {
        let ready = state.withLock { state in
            change(&state.mirror)
            let revision = state.mirror.revision
            let ready = state.waiters.filter { $0.revision <= revision }
            state.waiters.removeAll { $0.revision <= revision }
            return ready
        }
        ready.forEach { $0.continuation.resume() }
    }

    /// Waits until the mirror has every change up to `revision`, so what was just written is read back.
    private func waitForMirror(_ revision: Int) async throws {
        let id = UUID()
        let waited = Task {
            try await Task.sleep(for: .seconds(10))
            let late = state.withLock { state in
                let late = state.waiters.first { $0.id == id }
                state.waiters.removeAll { $0.id == id }
                return late
            }
            late?.continuation.resume()
        }
        defer { waited.cancel() }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let now = state.withLock { state in
                if state.mirror.revision >= revision { return true }
                state.waiters.append(Waiter(id: id, revision: revision, continuation: continuation))
                return false
            }
            if now { continuation.resume() }
        }
        guard mirroredRevision >= revision else {
            throw TrellisError(.unavailable, "store error: etcd's changes up to revision \(revision) did not arrive in 10 s")
        }
    }
}

/// Thrown inside a transaction that needs an id of a sequence this controller holds no block of.
struct IDBlockNeeded: Error {
    var sequence: String
}

/// What one controller of a cluster allocates from without touching a shared key on every create.
///
/// - Ids: blocks of `blockSize` leased from the sequence's counter, handed out in order. An id taken by a
///   transaction that then fails is skipped, never reused.
/// - Address hints: where this controller's last search of a subnet ended, in memory and moved at once (so
///   concurrent transactions of one controller look at different addresses). When a commit conflicts, the
///   hints it moved jump to a random place in their range: controllers whose searches meet (they all start
///   at a new subnet's first address) spread over the subnet instead of taking turns at one frontier.
final class ClusterAllocation: Sendable {
    static let blockSize = 100
    /// Per sequence: the block ids are taken from, the one leased ahead, and whether a lease ahead is wanted.
    private struct Blocks {
        var current: ClosedRange<Int>?
        var next: ClosedRange<Int>?
        var wanted = false
        /// No block is leased ahead, and the current one is half used or gone.
        var wantsNext: Bool { next == nil && (current?.count ?? 0) <= ClusterAllocation.blockSize / 2 }
    }
    private let blocks = Mutex<[String: Blocks]>([:])
    private let hints = Mutex<[String: (value: Int, range: ClosedRange<Int>)]>([:])

    /// True when `sequence` has no block to take ids from, or none ahead of a block half used.
    func needsBlock(_ sequence: String) -> Bool {
        blocks.withLock { blocks in
            guard let entry = blocks[sequence], entry.current != nil else { return true }
            return entry.wantsNext
        }
    }

    /// Gives `sequence` a block: the one to take ids from if it has none, else the one ahead.
    func grant(_ sequence: String, _ ids: ClosedRange<Int>) {
        blocks.withLock { blocks in
            var entry = blocks[sequence] ?? Blocks()
            if entry.current == nil { entry.current = ids } else { entry.next = ids }
            entry.wanted = false
            blocks[sequence] = entry
        }
    }

    /// The next id of `sequence`, nil when this controller holds none. Once a block is half used, the next one is
    /// wanted (`takeWanted()`), so the writes of a busy controller do not all stop at the end of each block.
    func takeID(_ sequence: String) -> Int? {
        blocks.withLock { blocks in
            guard var entry = blocks[sequence], let block = entry.current else { return nil }
            entry.current = block.count > 1 ? block.lowerBound + 1...block.upperBound : entry.next
            if block.count == 1 { entry.next = nil }
            if entry.wantsNext { entry.wanted = true }
            blocks[sequence] = entry
            return block.lowerBound
        }
    }

    /// The sequences whose next block is wanted and not yet asked for; each is named once.
    func takeWanted() -> [String] {
        blocks.withLock { blocks in
            let wanted = blocks.filter { $0.value.wanted }.map(\.key)
            for sequence in wanted { blocks[sequence]?.wanted = false }
            return wanted
        }
    }

    func hint(_ name: String) -> Int? { hints.withLock { $0[name]?.value } }

    func setHint(_ name: String, _ value: Int, range: ClosedRange<Int>) { hints.withLock { $0[name] = (value, range) } }

    /// Puts hints back as they were before a transaction that did not commit, unless another moved them since.
    func restore(_ moved: [(name: String, previous: Int?, value: Int)]) {
        hints.withLock { hints in
            for hint in moved.reversed() where hints[hint.name]?.value == hint.value {
                if let previous = hint.previous { hints[hint.name]!.value = previous } else { hints[hint.name] = nil }
            }
        }
    }

    func scatter(_ names: [String]) {
        hints.withLock { hints in
            for name in names { if let range = hints[name]?.range { hints[name]!.value = Int.random(in: range) } }
        }
    }
}

/// Runs of an async operation shared by the callers that wait for one: a caller joins the next run to start, never
/// one already under way (which may have begun before what the caller must see), and one run serves all who joined.
final class SharedRuns: Sendable {
    private struct State {
        var running = false
        var next: [CheckedContinuation<Void, any Error>] = []
    }
    private let state = Mutex(State())

    func join(_ run: @escaping @Sendable () async throws -> Void) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let starts = state.withLock { state in
                state.next.append(continuation)
                defer { state.running = true }
                return !state.running
            }
            if starts { Task { await self.drive(run) } }
        }
    }

    private func drive(_ run: @Sendable () async throws -> Void) async {
        while true {
            let batch: [CheckedContinuation<Void, any Error>]? = state.withLock { state in
                guard !state.next.isEmpty else {
                    state.running = false
                    return nil
                }
                defer { state.next = [] }
                return state.next
            }
            guard let batch else { return }
            do {
                try await run()
                batch.forEach { $0.resume() }
            } catch {
                batch.forEach { $0.resume(throwing: error) }
            }
        }
    }
}

/// A first-come, first-served lock for async code (waiters are resumed in order, never on a blocked thread).
final class Turns: Sendable {
    private let state = Mutex<(taken: Bool, waiting: [CheckedContinuation<Void, Never>])>((false, []))

    func acquire() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let now = state.withLock { state in
                if state.taken { state.waiting.append(continuation); return false }
                state.taken = true
                return true
            }
            if now { continuation.resume() }
        }
    }

    /// Hands the lock to the next waiter, or frees it.
    func release() {
        let next = state.withLock { state -> CheckedContinuation<Void, Never>? in
            if state.waiting.isEmpty { state.taken = false; return nil }
            return state.waiting.removeFirst()
        }
        next?.resume()
    }
}

/// Everything under the prefix at one revision, by key.
struct Mirror: Sendable {
    var revision: Int
    /// A persistent map: a transaction holding one revision's mirror does not make the next change copy every key.
    var keys: TreeDictionary<String, EtcdKeyValue>

    init(revision: Int, keys: TreeDictionary<String, EtcdKeyValue>) {
        self.revision = revision
        self.keys = keys
    }

    init(revision: Int, keyValues: [String: EtcdKeyValue]) {
        self.init(revision: revision, keys: TreeDictionary(keyValues))
    }

    /// A stored value as written: a large one's chunks put together again (nil if they are gone).
    func resolved(_ bytes: [UInt8]) -> Data? {
        guard let manifest = ChunkedValue(manifest: bytes) else { return Data(bytes) }
        return manifest.assemble { keys[$0]?.value.bytes }
    }
}

/// A value too large for one etcd request (1.5 MiB, and an object's event carries it again): its bytes are kept
/// in chunks under `x/ID/N`, written before the transaction that stores it, and the object's key and its event hold
/// a short manifest naming them. Chunks are never changed; the history trim removes those nothing refers to.
struct ChunkedValue: Equatable {
    /// Values larger than this are chunked, in chunks of this size.
    static let chunkBytes = 256 * 1024
    /// A manifest starts with a byte no JSON value starts with.
    static let marker: UInt8 = 1

    var chunkKeys: [String]
    var byteCount: Int

    init(keyPrefix: String, byteCount: Int) {
        let count = (byteCount + Self.chunkBytes - 1) / Self.chunkBytes
        self.chunkKeys = (0..<count).map { keyPrefix + String($0) }
        self.byteCount = byteCount
    }

    init?(manifest bytes: [UInt8]) {
        guard bytes.first == Self.marker else { return nil }
        let fields = String(decoding: bytes.dropFirst(), as: UTF8.self).split(separator: " ")
        guard fields.count == 3, let count = Int(fields[1]), let byteCount = Int(fields[2]), count > 0 else { return nil }
        chunkKeys = (0..<count).map { String(fields[0]) + String($0) }
        self.byteCount = byteCount
    }

    /// The manifest: the marker, the chunks' common key prefix, their count and the value's size.
    var manifest: Data { Data([Self.marker]) + Data("\(keyPrefix) \(chunkKeys.count) \(byteCount)".utf8) }

    /// The chunks' key prefix (`…x/ID/`).
    var keyPrefix: String { String(chunkKeys[0].dropLast(1)) }

    func chunks(of value: Data) -> [(key: EtcdBytes, value: EtcdBytes)] {
        chunkKeys.enumerated().map { index, key in
            let start = value.startIndex + index * Self.chunkBytes
            return (EtcdBytes(key), EtcdBytes(Array(value[start..<min(start + Self.chunkBytes, value.endIndex)])))
        }
    }

    func assemble(_ chunk: (String) -> [UInt8]?) -> Data? {
        var data = Data(capacity: byteCount)
        for key in chunkKeys {
            guard let bytes = chunk(key) else { return nil }
            data.append(contentsOf: bytes)
        }
        return data.count == byteCount ? data : nil
    }
}

struct Waiter: Sendable {
    var id: UUID
    var revision: Int
    var continuation: CheckedContinuation<Void, Never>
}

struct MirrorState: Sendable {
    var mirror: Mirror
    var waiters: [Waiter] = []
}

/// An event as the store keeps it: under its own key, its id made from the revision that created that key.
struct StoredEvent: Codable, Sendable {
    /// The store (controller process) that recorded it.
    var origin: String?
    var index: Int
    var time: Date
    var actor: String
    var action: EventAction
    var kind: ResourceKind
    var path: String
    var enterprise: String?
    var object: Data?

    /// The event as committed in the revision that created its key.
    func event(createdAt revision: Int) -> Event {
        Event(id: revision * 1000 + index, revision: revision, time: time, actor: actor, action: action, kind: kind, path: path,
              enterprise: enterprise, encodedObject: object)
    }
}

/// One transaction over a mirror: reads from the mirror (and its own writes), records what it read, and
/// buffers its writes for the commit.
final class EtcdTransaction: StoreWriter {
    let mirror: Mirror
    let prefix: String
    let actor: String
    let decoded: DecodedObjects
    let origin: String
    let allocation: ClusterAllocation
    var pendingRevision: Int { mirror.revision + 1 }
    /// The address hints this transaction moved on, with the value each had before: scattered if the commit
    /// conflicts, put back if the transaction fails or runs again for an id block.
    private(set) var hintsSet: [(name: String, previous: Int?, value: Int)] = []
    /// The mod revision of each key read (0: it did not exist).
    private var readKeys: [String: Int] = [:]
    /// Prefixes read whole: nothing under them may change before the commit.
    private var readPrefixes: [String] = []
    /// Writes in order; nil deletes.
    private var written: [String: Data?] = [:]
    private var order: [String] = []
    private var recorded: [(event: StoredEvent, resource: (any Resource)?)] = []
    /// The events as they are stored, each under a key of its own, numbered when the commit is sent.
    private var storedEvents: [(key: String, event: StoredEvent)] = []
    /// The chunks of this transaction's large values by key, to be written before it commits.
    private var pendingChunks: [String: [UInt8]] = [:]
    var chunks: [(key: EtcdBytes, value: EtcdBytes)] { pendingChunks.map { (EtcdBytes($0.key), EtcdBytes($0.value)) } }
    /// The manifest of the last large value stored, reused when its event stores the same bytes.
    private var lastChunked: (value: Data, manifest: Data)?
    private let encoder = JSONCoding.encoder()
    private let decoder = JSONCoding.decoder()

    init(mirror: Mirror, prefix: String, actor: String, decoded: DecodedObjects, origin: String, allocation: ClusterAllocation) {
        (self.mirror, self.prefix, self.actor, self.decoded, self.origin) = (mirror, prefix, actor, decoded, origin)
        self.allocation = allocation
    }

    var changed: Bool { !order.isEmpty || !storedEvents.isEmpty }

    // MARK: Keys

    private func objectKey(_ kind: ResourceKind, _ path: String) -> String { prefix + "o/" + kind.rawValue + "/" + path }
    private func claimKey(_ namespace: String, _ value: String) -> String { prefix + "c/" + namespace + "/" + value }

    /// The value of `key` as this transaction sees it, recording the read.
    private func value(_ key: String) -> (bytes: [UInt8], modRevision: Int)? {
        if let pending = written[key] { return pending.map { (Array($0), pendingRevision) } }
        let stored = mirror.keys[key]
        if readKeys[key] == nil { readKeys[key] = stored?.modRevision ?? 0 }
        return stored.map { ($0.value.bytes, $0.modRevision) }
    }

    /// Every key that starts with `start`, as this transaction sees them, sorted; records the range.
    private func keys(startingWith start: String) -> [(key: String, bytes: [UInt8], modRevision: Int)] {
        readPrefixes.append(start)
        var found: [String: (bytes: [UInt8], modRevision: Int)] = [:]
        for (key, stored) in mirror.keys where key.hasPrefix(start) { found[key] = (stored.value.bytes, stored.modRevision) }
        for (key, pending) in written where key.hasPrefix(start) {
            found[key] = pending.map { (Array($0), pendingRevision) }
        }
        return found.sorted { $0.key < $1.key }.map { ($0.key, $0.value.bytes, $0.value.modRevision) }
    }

    private func put(_ key: String, _ value: Data?) {
        if written.updateValue(value, forKey: key) == nil { order.append(key) }
    }

    /// What is put under a key for `value`: the value, or if it is large the manifest of its new chunks.
    private func storable(_ value: Data) -> Data {
        guard value.count > ChunkedValue.chunkBytes else { return value }
        if let lastChunked, lastChunked.value == value { return lastChunked.manifest }
        let chunked = ChunkedValue(keyPrefix: prefix + "x/" + UUID().uuidString + "/", byteCount: value.count)
        for chunk in chunked.chunks(of: value) { pendingChunks[chunk.key.text] = chunk.value.bytes }
        lastChunked = (value, chunked.manifest)
        return chunked.manifest
    }

    /// A stored value as written, its chunks found among this transaction's or the mirror's.
    private func resolved(_ bytes: [UInt8]) -> Data? {
        guard let manifest = ChunkedValue(manifest: bytes) else { return Data(bytes) }
        return manifest.assemble { pendingChunks[$0] ?? mirror.keys[$0]?.value.bytes }
    }

    private func decode<R: Resource>(_ type: R.Type, _ path: String, _ bytes: [UInt8], modRevision: Int) throws -> R {
        if modRevision <= mirror.revision, let object = decoded.object(R.self, path, revision: modRevision) { return object }
        do {
            guard let data = resolved(bytes) else { throw TrellisError(.internalError, "its chunks are missing") }
            var object = try decoder.decode(R.self, from: data)
            object.revision = modRevision
            if modRevision <= mirror.revision { decoded.keep(object, revision: modRevision) }
            return object
        } catch {
            throw TrellisError(.internalError, "stored \(R.kind.rawValue) could not be read: \(error)")
        }
    }

    // MARK: StoreReader

    func currentRevision() throws -> Int { mirror.revision }

    func get<R: Resource>(_ type: R.Type, _ path: String) throws -> R? {
        try value(objectKey(R.kind, path)).map { try decode(R.self, path, $0.bytes, modRevision: $0.modRevision) }
    }

    func list<R: Resource>(_ type: R.Type, under prefix: String?) throws -> [R] {
        let start = objectKey(R.kind, prefix.map { $0 + "/" } ?? "")
        return try keys(startingWith: start).map { entry in
            try decode(R.self, String(entry.key.dropFirst(objectKey(R.kind, "").count)), entry.bytes, modRevision: entry.modRevision)
        }
    }

    func list<R: Resource>(_ type: R.Type, boundTo host: String) throws -> [R] {
        try list(R.self, under: nil).filter { $0.boundHost == host }
    }

    func count(_ kind: ResourceKind, under prefix: String) throws -> Int {
        keys(startingWith: objectKey(kind, prefix + "/")).count
    }

    func claimOwner(_ namespace: String, _ value: String) throws -> String? {
        self.value(claimKey(namespace, value)).map { String(decoding: $0.bytes, as: UTF8.self) }
    }

    func claimCount(_ namespace: String) throws -> Int {
        keys(startingWith: claimKey(namespace, "")).count
    }

    func counter(_ name: String) throws -> Int {
        value(prefix + "n/" + name).flatMap { Int(String(decoding: $0.bytes, as: UTF8.self)) } ?? 0
    }

    func events(afterID: Int, limit: Int, enterprise: String?) throws -> [Event] {
        let start = prefix + "e/"
        var events: [Event] = []
        for (key, stored) in mirror.keys where key.hasPrefix(start) {
            guard let event = try? decoder.decode(StoredEvent.self, from: Data(stored.value.bytes)),
                  stored.createRevision * 1000 + event.index > afterID,
                  enterprise == nil || event.enterprise == enterprise else { continue }
            events.append(event.event(createdAt: stored.createRevision))
        }
        return events.sorted { $0.id < $1.id }.prefix(limit).map { event in
            var event = event
            event.encodedObject = event.encodedObject.flatMap { resolved(Array($0)) }
            return event
        }
    }

    func lastEventID() throws -> Int {
        let start = prefix + "e/"
        return mirror.keys.filter { $0.key.hasPrefix(start) }.compactMap { key, stored in
            (try? decoder.decode(StoredEvent.self, from: Data(stored.value.bytes))).map { stored.createRevision * 1000 + $0.index }
        }.max() ?? 0
    }

    /// A host's heartbeat as the store keeps it.
    private struct Heartbeat: Codable {
        var time: Date
        var appliedRevision: Int?
    }

    func heartbeat(_ host: String) throws -> (time: Date, appliedRevision: Int?)? {
        guard let stored = mirror.keys[prefix + "h/" + host],
              let beat = try? decoder.decode(Heartbeat.self, from: Data(stored.value.bytes)) else { return nil }
        return (beat.time, beat.appliedRevision)
    }

    // MARK: StoreWriter

    private func write<R: Resource>(_ object: R) throws -> R {
        var object = object
        object.revision = pendingRevision
        put(objectKey(R.kind, object.path), storable(try encoder.encode(object)))
        return object
    }

    func insert<R: Resource>(_ object: R) throws -> R {
        if value(objectKey(R.kind, object.path)) != nil {
            throw TrellisError.conflict("\(R.kind.rawValue) '\(object.path)' already exists", field: "name")
        }
        return try write(object)
    }

    func update<R: Resource>(_ object: R) throws -> R {
        guard value(objectKey(R.kind, object.path)) != nil else { throw TrellisError.notFound("no \(R.kind.rawValue) '\(object.path)'") }
        return try write(object)
    }

    func delete<R: Resource>(_ type: R.Type, _ path: String) throws {
        guard value(objectKey(R.kind, path)) != nil else { throw TrellisError.notFound("no \(R.kind.rawValue) '\(path)'") }
        put(objectKey(R.kind, path), nil)
    }

    /// A claim found taken is not compared at commit: were it released meanwhile, the caller only looked on
    /// (an address search steps over it) or said it was in use a moment late. So a search that steps over many
    /// taken addresses stays one small etcd transaction, and conflicts with nothing it stepped over.
    func claim(_ namespace: String, _ value: String, owner: String) throws -> Bool {
        let key = claimKey(namespace, value)
        if written[key] == nil, mirror.keys[key] != nil { return false }
        guard self.value(key) == nil else { return false }
        put(key, Data(owner.utf8))
        return true
    }

    func release(_ namespace: String, _ value: String) throws {
        let key = claimKey(namespace, value)
        if self.value(key) != nil { put(key, nil) }
    }

    func releaseAll(_ namespace: String, ownedBy owner: String) throws {
        for entry in keys(startingWith: claimKey(namespace, "")) where entry.bytes == Array(owner.utf8) { put(entry.key, nil) }
    }

    func setCounter(_ name: String, _ value: Int) throws {
        put(prefix + "n/" + name, Data(String(value).utf8))
    }

    func nextID(_ sequence: String) throws -> Int {
        guard let id = allocation.takeID(sequence) else { throw IDBlockNeeded(sequence: sequence) }
        return id
    }

    func allocationHint(_ name: String) throws -> Int? { allocation.hint(name) }

    func setAllocationHint(_ name: String, _ value: Int, range: ClosedRange<Int>) throws {
        hintsSet.append((name, allocation.hint(name), value))
        allocation.setHint(name, value, range: range)
    }

    func record(_ action: EventAction, kind: ResourceKind, path: String, enterprise: String?, object: JSONValue?) throws {
        try append(action, kind: kind, path: path, enterprise: enterprise, body: object.map { try encoder.encode($0) }, resource: nil)
    }

    func recordChange<R: Resource>(_ action: EventAction, _ object: R) throws {
        try append(action, kind: R.kind, path: object.path, enterprise: object.enterprise, body: try encoder.encode(object),
                   resource: object)
    }

    private func append(_ action: EventAction, kind: ResourceKind, path: String, enterprise: String?, body: Data?,
                        resource: (any Resource)?) throws {
        var event = StoredEvent(origin: origin, index: recorded.count, time: Date(), actor: actor, action: action, kind: kind,
                                path: path, enterprise: enterprise, object: body)
        recorded.append((event, resource))
        event.object = body.map(storable)
        storedEvents.append((prefix + "e/" + UUID().uuidString, event))
    }

    func setHeartbeat(_ host: String, time: Date, appliedRevision: Int?) throws {
        put(prefix + "h/" + host, try encoder.encode(Heartbeat(time: time, appliedRevision: appliedRevision)))
    }

    // MARK: Commit

    /// The commit: the writes and events, if nothing read has changed since the mirror's revision.
    func prepared() -> PreparedCommit {
        PreparedCommit(readRevision: mirror.revision, readKeys: readKeys, readPrefixes: readPrefixes,
                       writes: order.map { ($0, written[$0]!) }, events: storedEvents)
    }

    /// The key every write puts, so its mod revision is the revision of the last change under `prefix`.
    static func lastChangeKey(_ prefix: String) -> EtcdBytes { EtcdBytes(prefix + "r") }

    /// The put of that key by the store `origin`, which goes in every write.
    static func lastChange(_ prefix: String, origin: String) -> EtcdOperation { .put(lastChangeKey(prefix), EtcdBytes(origin)) }

    /// The events this transaction recorded, as committed at `revision` with the others of its etcd transaction
    /// numbered before them (`eventBase`).
    func events(committedAt revision: Int, eventBase: Int) -> [Event] {
        recorded.map { event, resource in
            var event = event
            event.index += eventBase
            var made = event.event(createdAt: revision)
            made.resource = resource.map { EtcdStore.stamped($0, guess: pendingRevision, revision) }
            return made
        }
    }
}
