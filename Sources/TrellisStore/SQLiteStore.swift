import Foundation
import GRDB
import Synchronization
import TrellisModel

/// A count shared with the database's write closures.
final class CommitCount: Sendable {
    private let count = Atomic<Int>(0)
    var value: Int { count.load(ordering: .relaxed) }
    func add() { count.add(1, ordering: .relaxed) }
}

/// The embedded store: one SQLite file in WAL mode, migrated on open.
public final class SQLiteStore: Store {
    private let pool: DatabasePool
    private let decoded = DecodedObjects()
    private let committed = CommitCount()
    public var commits: Int { committed.value }

    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    public init(path: String) throws {
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        }
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        configuration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = NORMAL")
        }
        do {
            pool = try DatabasePool(path: path, configuration: configuration)
            try SQLiteStore.migrator.migrate(pool)
        } catch let error as DatabaseError {
            throw TrellisError(.unavailable, "cannot open the store at \(path): \(error.message ?? "\(error)")")
        }
    }

    /// Schema versions, oldest first. Never edit a shipped migration: add the next one.
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.execute(sql: """
                CREATE TABLE meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
                INSERT INTO meta(key, value) VALUES ('revision', 0);
                CREATE TABLE objects(
                    kind TEXT NOT NULL, path TEXT NOT NULL, enterprise TEXT, host TEXT,
                    revision INTEGER NOT NULL, body BLOB NOT NULL,
                    PRIMARY KEY(kind, path)) WITHOUT ROWID;
                CREATE INDEX objects_by_host ON objects(kind, host) WHERE host IS NOT NULL;
                CREATE TABLE claims(
                    namespace TEXT NOT NULL, value TEXT NOT NULL, owner TEXT NOT NULL,
                    PRIMARY KEY(namespace, value)) WITHOUT ROWID;
                CREATE INDEX claims_by_owner ON claims(owner, namespace);
                CREATE TABLE events(
                    id INTEGER PRIMARY KEY AUTOINCREMENT, revision INTEGER NOT NULL, time REAL NOT NULL,
                    actor TEXT NOT NULL, action TEXT NOT NULL, kind TEXT NOT NULL, path TEXT NOT NULL,
                    enterprise TEXT, object BLOB);
                CREATE INDEX events_by_enterprise ON events(enterprise, id);
                CREATE TABLE heartbeats(host TEXT PRIMARY KEY, time REAL NOT NULL, applied_revision INTEGER) WITHOUT ROWID;
                """)
        }
        return migrator
    }

    public func read<T: Sendable>(_ body: @escaping @Sendable (any StoreReader) throws -> T) async throws -> T {
        try await mapErrors {
            try await pool.read { db in try body(SQLiteTransaction(db: db, pendingRevision: 0, decoded: decoded)) }
        }
    }

    public func write<T: Sendable>(actor: String,
                                   _ body: @escaping @Sendable (any StoreWriter) throws -> T) async throws -> WriteResult<T> {
        try await mapErrors {
            try await pool.write { [committed] db in
                let current = try Int.fetchOne(db.cachedStatement(sql: "SELECT value FROM meta WHERE key = 'revision'")) ?? 0
                let transaction = SQLiteTransaction(db: db, pendingRevision: current + 1, actor: actor, decoded: decoded)
                let value = try body(transaction)
                guard transaction.changed else {
                    if transaction.wroteHeartbeat { committed.add() }
                    return WriteResult(value: value, revision: current, events: [])
                }
                try db.cachedStatement(sql: "UPDATE meta SET value = ? WHERE key = 'revision'").execute(arguments: [current + 1])
                committed.add()
                return WriteResult(value: value, revision: current + 1, events: transaction.recorded)
            }
        }
    }

    public func trimHistory(keepingEvents count: Int, recordedAfter cutoff: Date) async throws -> HistoryTrim {
        try await mapErrors {
            try await pool.write { db in
                try db.execute(sql: "DELETE FROM events WHERE id <= (SELECT MAX(id) FROM events) - ? OR time < ?",
                               arguments: [count, cutoff.timeIntervalSince1970])
                return HistoryTrim(events: db.changesCount)
            }
        }
    }

    /// Copies the whole store, as of one committed revision, to a new file at `path` (mode 0600: it holds
    /// token digests), while the store goes on serving; returns that revision. The copy is made beside
    /// `path` and renamed into place, so a failed backup leaves nothing that looks like one.
    public func backup(to path: String) async throws -> Int {
        let temporary = path + ".partial"
        unlink(temporary)
        guard FileManager.default.createFile(atPath: temporary, contents: nil, attributes: [.posixPermissions: 0o600]) else {
            throw TrellisError(.unavailable, "cannot create \(temporary): \(String(cString: strerror(errno)))")
        }
        do {
            let copy = try DatabaseQueue(path: temporary)
            try pool.backup(to: copy)
            let revision = try await copy.read { db in try Int.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'revision'") ?? 0 }
            try copy.close()
            guard rename(temporary, path) == 0 else {
                throw TrellisError(.unavailable, "cannot move the backup to \(path): \(String(cString: strerror(errno)))")
            }
            return revision
        } catch {
            unlink(temporary)
            if let error = error as? DatabaseError { throw TrellisError(.unavailable, "backup failed: \(error.message ?? "\(error)")") }
            throw error
        }
    }

    private func mapErrors<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as DatabaseError {
            throw TrellisError(.unavailable, "store error: \(error.message ?? "\(error)")")
        }
    }
}

/// Objects decoded from committed rows, by kind and path with the revision they were read at: every create
/// reads its subnet, and decoding one takes about 30 µs here (Foundation's JSONDecoder, release build).
final class DecodedObjects: Sendable {
    private let objects = Mutex<[String: (revision: Int, object: any Resource)]>([:])

    func object<R: Resource>(_ type: R.Type, _ path: String, revision: Int) -> R? {
        objects.withLock { $0[R.kind.rawValue + " " + path] }.flatMap { $0.revision == revision ? $0.object as? R : nil }
    }

    func keep<R: Resource>(_ object: R, revision: Int) {
        objects.withLock { objects in
            if objects.count >= 4096 { objects.removeAll(keepingCapacity: true) }
            objects[R.kind.rawValue + " " + object.path] = (revision, object)
        }
    }
}

/// One SQLite transaction seen through the store protocols. Lives only inside a GRDB access block.
final class SQLiteTransaction: StoreWriter {
    let db: Database
    let pendingRevision: Int
    let actor: String
    private(set) var changed = false
    /// A heartbeat is written without changing the revision.
    private(set) var wroteHeartbeat = false
    private(set) var recorded: [Event] = []
    /// The object written last and its bytes, which its change event records without encoding it again.
    private var lastWritten: (object: any Resource, body: Data)?
    private let encoder = JSONCoding.encoder()
    private let decoder = JSONCoding.decoder()

    private let decoded: DecodedObjects

    init(db: Database, pendingRevision: Int, actor: String = "", decoded: DecodedObjects) {
        self.db = db
        self.pendingRevision = pendingRevision
        self.actor = actor
        self.decoded = decoded
    }

    /// Runs one statement, compiled once per connection rather than on every call.
    private func run(_ sql: String, _ arguments: StatementArguments) throws {
        try db.cachedStatement(sql: sql).execute(arguments: arguments)
    }

    func currentRevision() throws -> Int {
        try Int.fetchOne(db.cachedStatement(sql: "SELECT value FROM meta WHERE key = 'revision'")) ?? 0
    }

    private func decode<R: Resource>(_ type: R.Type, _ data: Data) throws -> R {
        do {
            return try decoder.decode(R.self, from: data)
        } catch {
            throw TrellisError(.internalError, "stored \(R.kind.rawValue) could not be read: \(error)")
        }
    }

    func get<R: Resource>(_ type: R.Type, _ path: String) throws -> R? {
        let statement = try db.cachedStatement(sql: "SELECT revision, body FROM objects WHERE kind = ? AND path = ?")
        guard let row = try Row.fetchOne(statement, arguments: [R.kind.rawValue, path]) else { return nil }
        let revision: Int = row[0]
        if let object = decoded.object(R.self, path, revision: revision) { return object }
        let object = try decode(R.self, row[1])
        // A row this transaction wrote is not committed: a rollback could reuse its revision for other content.
        if pendingRevision == 0 || revision < pendingRevision { decoded.keep(object, revision: revision) }
        return object
    }

    func list<R: Resource>(_ type: R.Type, under prefix: String?) throws -> [R] {
        let rows: [Data]
        if let prefix {
            // Paths below `prefix` sort between "prefix/" and "prefix0" ('0' follows '/').
            let statement = try db.cachedStatement(
                sql: "SELECT body FROM objects WHERE kind = ? AND path > ? AND path < ? ORDER BY path")
            rows = try Data.fetchAll(statement, arguments: [R.kind.rawValue, prefix + "/", prefix + "0"])
        } else {
            let statement = try db.cachedStatement(sql: "SELECT body FROM objects WHERE kind = ? ORDER BY path")
            rows = try Data.fetchAll(statement, arguments: [R.kind.rawValue])
        }
        return try rows.map { try decode(R.self, $0) }
    }

    func list<R: Resource>(_ type: R.Type, boundTo host: String) throws -> [R] {
        let statement = try db.cachedStatement(sql: "SELECT body FROM objects WHERE kind = ? AND host = ? ORDER BY path")
        return try Data.fetchAll(statement, arguments: [R.kind.rawValue, host]).map { try decode(R.self, $0) }
    }

    func count(_ kind: ResourceKind, under prefix: String) throws -> Int {
        let statement = try db.cachedStatement(sql: "SELECT COUNT(*) FROM objects WHERE kind = ? AND path > ? AND path < ?")
        return try Int.fetchOne(statement, arguments: [kind.rawValue, prefix + "/", prefix + "0"]) ?? 0
    }

    func claimOwner(_ namespace: String, _ value: String) throws -> String? {
        let statement = try db.cachedStatement(sql: "SELECT owner FROM claims WHERE namespace = ? AND value = ?")
        return try String.fetchOne(statement, arguments: [namespace, value])
    }

    func claimCount(_ namespace: String) throws -> Int {
        try Int.fetchOne(db.cachedStatement(sql: "SELECT COUNT(*) FROM claims WHERE namespace = ?"), arguments: [namespace]) ?? 0
    }

    func counter(_ name: String) throws -> Int {
        try Int.fetchOne(db.cachedStatement(sql: "SELECT value FROM meta WHERE key = ?"), arguments: ["counter:" + name]) ?? 0
    }

    func events(afterID: Int, limit: Int, enterprise: String?) throws -> [Event] {
        let rows: [Row]
        if let enterprise {
            rows = try Row.fetchAll(db.cachedStatement(
                sql: "SELECT * FROM events WHERE enterprise = ? AND id > ? ORDER BY id LIMIT ?"),
                arguments: [enterprise, afterID, limit])
        } else {
            rows = try Row.fetchAll(db.cachedStatement(sql: "SELECT * FROM events WHERE id > ? ORDER BY id LIMIT ?"),
                                    arguments: [afterID, limit])
        }
        return rows.map { row in
            let object: Data? = row["object"]
            return Event(id: row["id"], revision: row["revision"], time: Date(timeIntervalSince1970: row["time"]),
                         actor: row["actor"], action: EventAction(rawValue: row["action"]) ?? .updated,
                         kind: ResourceKind(rawValue: row["kind"]) ?? .enterprise, path: row["path"],
                         enterprise: row["enterprise"], encodedObject: object)
        }
    }

    func lastEventID() throws -> Int {
        try Int.fetchOne(db.cachedStatement(sql: "SELECT MAX(id) FROM events")) ?? 0
    }

    func heartbeat(_ host: String) throws -> (time: Date, appliedRevision: Int?)? {
        guard let row = try Row.fetchOne(db.cachedStatement(sql: "SELECT time, applied_revision FROM heartbeats WHERE host = ?"),
                                         arguments: [host]) else { return nil }
        return (Date(timeIntervalSince1970: row["time"]), row["applied_revision"])
    }

    private func write<R: Resource>(_ object: R, sql: String) throws -> R {
        var object = object
        object.revision = pendingRevision
        let body = try encoder.encode(object)
        try run(sql, [R.kind.rawValue, object.path, object.enterprise, object.boundHost, pendingRevision, body])
        lastWritten = (object, body)
        changed = true
        return object
    }

    func insert<R: Resource>(_ object: R) throws -> R {
        if try Bool.fetchOne(db.cachedStatement(sql: "SELECT 1 FROM objects WHERE kind = ? AND path = ?"),
                             arguments: [R.kind.rawValue, object.path]) != nil {
            throw TrellisError.conflict("\(R.kind.rawValue) '\(object.path)' already exists", field: "name")
        }
        return try write(object, sql: "INSERT INTO objects(kind, path, enterprise, host, revision, body) VALUES (?, ?, ?, ?, ?, ?)")
    }

    func update<R: Resource>(_ object: R) throws -> R {
        let written = try write(object, sql: """
            UPDATE objects SET enterprise = ?3, host = ?4, revision = ?5, body = ?6 WHERE kind = ?1 AND path = ?2
            """)
        guard db.changesCount == 1 else { throw TrellisError.notFound("no \(R.kind.rawValue) '\(object.path)'") }
        return written
    }

    func delete<R: Resource>(_ type: R.Type, _ path: String) throws {
        try run("DELETE FROM objects WHERE kind = ? AND path = ?", [R.kind.rawValue, path])
        guard db.changesCount == 1 else { throw TrellisError.notFound("no \(R.kind.rawValue) '\(path)'") }
        changed = true
    }

    func claim(_ namespace: String, _ value: String, owner: String) throws -> Bool {
        try run("INSERT OR IGNORE INTO claims(namespace, value, owner) VALUES (?, ?, ?)", [namespace, value, owner])
        return db.changesCount == 1
    }

    func release(_ namespace: String, _ value: String) throws {
        try run("DELETE FROM claims WHERE namespace = ? AND value = ?", [namespace, value])
    }

    func releaseAll(_ namespace: String, ownedBy owner: String) throws {
        try run("DELETE FROM claims WHERE namespace = ? AND owner = ?", [namespace, owner])
    }

    func setCounter(_ name: String, _ value: Int) throws {
        try run("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", ["counter:" + name, value])
    }

    func record(_ action: EventAction, kind: ResourceKind, path: String, enterprise: String?, object: JSONValue?) throws {
        try insertEvent(action, kind: kind, path: path, enterprise: enterprise, body: try object.map { try encoder.encode($0) })
    }

    func recordChange<R: Resource>(_ action: EventAction, _ object: R) throws {
        let body = try (lastWritten?.object as? R == object ? lastWritten?.body : nil) ?? encoder.encode(object)
        try insertEvent(action, kind: R.kind, path: object.path, enterprise: object.enterprise, body: body, resource: object)
    }

    private func insertEvent(_ action: EventAction, kind: ResourceKind, path: String, enterprise: String?, body: Data?,
                             resource: (any Resource)? = nil) throws {
        let time = Date()
        try run("""
            INSERT INTO events(revision, time, actor, action, kind, path, enterprise, object) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
            """, [pendingRevision, time.timeIntervalSince1970, actor, action.rawValue, kind.rawValue, path, enterprise, body])
        recorded.append(Event(id: Int(db.lastInsertedRowID), revision: pendingRevision, time: time, actor: actor,
                              action: action, kind: kind, path: path, enterprise: enterprise, encodedObject: body))
        recorded[recorded.count - 1].resource = resource
        changed = true
    }

    func setHeartbeat(_ host: String, time: Date, appliedRevision: Int?) throws {
        try run("INSERT OR REPLACE INTO heartbeats(host, time, applied_revision) VALUES (?, ?, ?)",
                [host, time.timeIntervalSince1970, appliedRevision])
        wroteHeartbeat = true
    }
}
