import Foundation
import TrellisModel

/// A transactional object store with a global revision, uniqueness claims and an event log.
///
/// Business rules run inside `write` as synchronous code over a `StoreWriter`, so any backend
/// that offers serializable transactions (SQLite here; etcd's software transactional memory
/// later) can carry them without the API layer changing.
public protocol Store: Sendable {
    /// Runs `body` against a consistent read-only view.
    func read<T: Sendable>(_ body: @escaping @Sendable (any StoreReader) throws -> T) async throws -> T
    /// Runs `body` in one serializable transaction on behalf of `actor`. If it changed anything, the
    /// store's revision goes up by one and every object it wrote carries the new revision. Throwing rolls back.
    func write<T: Sendable>(actor: String, _ body: @escaping @Sendable (any StoreWriter) throws -> T) async throws -> WriteResult<T>
    /// Lets go of the store's connections and background work; nothing is read or written after.
    func close() async
    /// Calls `handler` with the events of each change that other processes sharing the store committed,
    /// in revision order (a store only this process writes never calls it).
    func followChanges(madeElsewhere handler: @escaping @Sendable (_ revision: Int, _ events: [Event]) async -> Void)
    /// Keeps the newest `count` events and none older than `cutoff`; in etcd, also compacts the history up to
    /// the revision the trim started from, so the store does not grow without bound.
    func trimHistory(keepingEvents count: Int, recordedAfter cutoff: Date) async throws -> HistoryTrim
    /// Write transactions this process committed that wrote something (a heartbeat included).
    var commits: Int { get }
    /// Write transactions run again because another write changed what they read (0 for a store only this
    /// process writes).
    var conflictRetries: Int { get }
    /// Requests that carried those commits to the store: fewer than the commits where concurrent ones are merged.
    var commitRequests: Int { get }
}

extension Store {
    public var conflictRetries: Int { 0 }
    public var commitRequests: Int { commits }
    public func close() async {}
    public func followChanges(madeElsewhere handler: @escaping @Sendable (_ revision: Int, _ events: [Event]) async -> Void) {}
}

/// What one trim of the store's history removed.
public struct HistoryTrim: Sendable, Equatable {
    /// Events removed.
    public var events: Int
    /// Chunks of large values that nothing refers to any more (etcd).
    public var chunks: Int
    /// The revision etcd's history was compacted to, if it was.
    public var compactedTo: Int?

    public init(events: Int, chunks: Int = 0, compactedTo: Int? = nil) {
        self.events = events
        self.chunks = chunks
        self.compactedTo = compactedTo
    }
}

/// What a write transaction returned, the revision it committed at and the events it recorded.
public struct WriteResult<T: Sendable>: Sendable {
    public var value: T
    public var revision: Int
    public var events: [Event]
}

/// Reads inside a transaction.
public protocol StoreReader {
    /// The revision of the last committed change.
    func currentRevision() throws -> Int
    func get<R: Resource>(_ type: R.Type, _ path: String) throws -> R?
    /// Objects of a kind whose path is below `prefix` (`acme/app1` matches `acme/app1/…`), or all of them.
    func list<R: Resource>(_ type: R.Type, under prefix: String?) throws -> [R]
    /// Objects of a kind bound to `host`.
    func list<R: Resource>(_ type: R.Type, boundTo host: String) throws -> [R]
    /// How many objects of a kind are below `prefix`.
    func count(_ kind: ResourceKind, under prefix: String) throws -> Int
    /// Who holds `value` in a uniqueness namespace (an address in a subnet, a MAC, a VNI, a token hash).
    func claimOwner(_ namespace: String, _ value: String) throws -> String?
    func claimCount(_ namespace: String) throws -> Int
    /// A named counter (allocation hints, id sequences); 0 when never set.
    func counter(_ name: String) throws -> Int
    /// Events with an id above `afterID`, oldest first; only those of `enterprise` when it is given.
    func events(afterID: Int, limit: Int, enterprise: String?) throws -> [Event]
    /// The id of the newest event, 0 when there is none.
    func lastEventID() throws -> Int
    /// The last heartbeat of a host and the revision it reported as applied.
    func heartbeat(_ host: String) throws -> (time: Date, appliedRevision: Int?)?
}

/// Writes inside a transaction.
public protocol StoreWriter: StoreReader {
    /// The revision this transaction commits at if it changes anything.
    var pendingRevision: Int { get }
    /// Adds a new object; a conflict error if its path is taken.
    func insert<R: Resource>(_ object: R) throws -> R
    /// Replaces an existing object.
    func update<R: Resource>(_ object: R) throws -> R
    func delete<R: Resource>(_ type: R.Type, _ path: String) throws
    /// Takes `value` in `namespace` for `owner`; false when someone holds it already.
    func claim(_ namespace: String, _ value: String, owner: String) throws -> Bool
    func release(_ namespace: String, _ value: String) throws
    /// Releases every claim `owner` holds in `namespace`.
    func releaseAll(_ namespace: String, ownedBy owner: String) throws
    func setCounter(_ name: String, _ value: Int) throws
    /// The next number of a sequence (domain ids, endpoint ids): unique, never reused, and increasing in the
    /// order one controller hands them out (the controllers of a cluster each draw from blocks of their own).
    func nextID(_ sequence: String) throws -> Int
    /// Where the last search of `name` (a subnet's addresses) ended; nil before the first.
    func allocationHint(_ name: String) throws -> Int?
    /// Records where a search of `name` ended; `range` is what the search covers.
    func setAllocationHint(_ name: String, _ value: Int, range: ClosedRange<Int>) throws
    /// Appends an event at `pendingRevision`.
    func record(_ action: EventAction, kind: ResourceKind, path: String, enterprise: String?, object: JSONValue?) throws
    /// Records that `object` was created, updated or deleted (for deletions, as it was).
    func recordChange<R: Resource>(_ action: EventAction, _ object: R) throws
    /// Records a heartbeat; not a change, so it does not move the revision.
    func setHeartbeat(_ host: String, time: Date, appliedRevision: Int?) throws
}

extension StoreWriter {
    /// A counter of the store, in the transaction: one controller's writes take turns anyway.
    public func nextID(_ sequence: String) throws -> Int {
        let next = try counter(sequence) + 1
        try setCounter(sequence, next)
        return next
    }

    public func allocationHint(_ name: String) throws -> Int? {
        let hint = try counter(name)
        return hint > 0 ? hint : nil
    }

    public func setAllocationHint(_ name: String, _ value: Int, range: ClosedRange<Int>) throws {
        try setCounter(name, value)
    }
}

extension StoreReader {
    /// The object at `path`, or a not-found error that names it.
    public func require<R: Resource>(_ type: R.Type, _ path: String, field: String? = nil) throws -> R {
        guard let object = try get(type, path) else {
            throw TrellisError.notFound("no \(R.kind.rawValue) '\(path)'", field: field)
        }
        return object
    }
}
