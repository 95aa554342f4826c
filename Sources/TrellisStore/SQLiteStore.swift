import Foundation
import GRDB
import TrellisModel

/// The embedded store: one SQLite file in WAL mode, migrated on open.
public final class SQLiteStore: Store {
    private let pool: DatabasePool

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
            try await pool.read { db in try body(SQLiteTransaction(db: db, pendingRevision: 0)) }
        }
    }

    public func write<T: Sendable>(actor: String, _ body: @escaping @Sendable (any StoreWriter) throws -> T) async throws -> WriteResult<T> {
        try await mapErrors {
            try await pool.write { db in
                let current = try Int.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'revision'") ?? 0
                let transaction = SQLiteTransaction(db: db, pendingRevision: current + 1, actor: actor)
                let value = try body(transaction)
                guard transaction.changed else { return WriteResult(value: value, revision: current, events: []) }
                try db.execute(sql: "UPDATE meta SET value = ? WHERE key = 'revision'", arguments: [current + 1])
                return WriteResult(value: value, revision: current + 1, events: transaction.recorded)
            }
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

/// One SQLite transaction seen through the store protocols. Lives only inside a GRDB access block.
final class SQLiteTransaction: StoreWriter {
    let db: Database
    let pendingRevision: Int
    let actor: String
    private(set) var changed = false
    private(set) var recorded: [Event] = []
    private let encoder = JSONCoding.encoder()
    private let decoder = JSONCoding.decoder()

    init(db: Database, pendingRevision: Int, actor: String = "") {
        self.db = db
        self.pendingRevision = pendingRevision
        self.actor = actor
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
        let statement = try db.cachedStatement(sql: "SELECT body FROM objects WHERE kind = ? AND path = ?")
        return try Data.fetchOne(statement, arguments: [R.kind.rawValue, path]).map { try decode(R.self, $0) }
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
        return try rows.map { row in
            let object: Data? = row["object"]
            return Event(id: row["id"], revision: row["revision"], time: Date(timeIntervalSince1970: row["time"]),
                         actor: row["actor"], action: EventAction(rawValue: row["action"]) ?? .updated,
                         kind: ResourceKind(rawValue: row["kind"]) ?? .enterprise, path: row["path"],
                         enterprise: row["enterprise"], object: try object.map { try decoder.decode(JSONValue.self, from: $0) })
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
        try db.execute(sql: sql, arguments: [R.kind.rawValue, object.path, object.enterprise, object.boundHost, pendingRevision, body])
        changed = true
        return object
    }

    func insert<R: Resource>(_ object: R) throws -> R {
        if try get(R.self, object.path) != nil {
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
        try db.execute(sql: "DELETE FROM objects WHERE kind = ? AND path = ?", arguments: [R.kind.rawValue, path])
        guard db.changesCount == 1 else { throw TrellisError.notFound("no \(R.kind.rawValue) '\(path)'") }
        changed = true
    }

    func claim(_ namespace: String, _ value: String, owner: String) throws -> Bool {
        try db.execute(sql: "INSERT OR IGNORE INTO claims(namespace, value, owner) VALUES (?, ?, ?)", arguments: [namespace, value, owner])
        return db.changesCount == 1
    }

    func release(_ namespace: String, _ value: String) throws {
        try db.execute(sql: "DELETE FROM claims WHERE namespace = ? AND value = ?", arguments: [namespace, value])
    }

    func releaseAll(_ namespace: String, ownedBy owner: String) throws {
        try db.execute(sql: "DELETE FROM claims WHERE namespace = ? AND owner = ?", arguments: [namespace, owner])
    }

    func setCounter(_ name: String, _ value: Int) throws {
        try db.execute(sql: "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", arguments: ["counter:" + name, value])
    }

    func record(_ action: EventAction, kind: ResourceKind, path: String, enterprise: String?, object: JSONValue?) throws {
        let time = Date()
        let body = try object.map { try encoder.encode($0) }
        try db.execute(sql: """
            INSERT INTO events(revision, time, actor, action, kind, path, enterprise, object) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
            """, arguments: [pendingRevision, time.timeIntervalSince1970, actor, action.rawValue, kind.rawValue, path, enterprise, body])
        recorded.append(Event(id: Int(db.lastInsertedRowID), revision: pendingRevision, time: time, actor: actor,
                              action: action, kind: kind, path: path, enterprise: enterprise, object: object))
        changed = true
    }

    func setHeartbeat(_ host: String, time: Date, appliedRevision: Int?) throws {
        try db.execute(sql: "INSERT OR REPLACE INTO heartbeats(host, time, applied_revision) VALUES (?, ?, ?)",
                       arguments: [host, time.timeIntervalSince1970, appliedRevision])
    }
}
