import Foundation
import Synchronization
import TrellisModel

/// An entry of a `Journal`, found by its key.
public protocol JournalEntry: Codable, Sendable, Equatable {
    var key: Int { get }
}

/// Host-local records (how ports are plugged, what a Docker engine calls its endpoints) kept in a
/// journal beside the agent's socket, so that an agent restart finds them. A change appends one JSON
/// line (an attach must not rewrite every other record); opening the journal replays it and writes it
/// afresh, one line per entry, renamed over the old. A line torn by a crash can only be the last, and
/// is dropped.
///
/// It lives in /run by default, and takes no fsync: a reboot empties /run along with the namespaces and
/// links the records describe, and a record kept past a reboot could name a reused PID's namespace.
public final class Journal<Entry: JournalEntry>: Sendable {
    /// The file, nil for records kept in memory only (tests, benchmarks).
    public let path: String?
    private struct State: ~Copyable {
        var entries: [Int: Entry]
        /// The file opened for appending, -1 when in memory only.
        let file: Int32
    }
    private struct Change: Codable {
        var put: Entry?
        var remove: [Int]?
    }
    private let state: Mutex<State>

    /// The entries in the journal at `path` (none when it does not exist yet).
    public init(path: String?) throws {
        self.path = path
        guard let path else {
            state = Mutex(State(entries: [:], file: -1))
            return
        }
        let entries = try Self.replay(path)
        let compacted = try entries.values.sorted { $0.key < $1.key }.map { try Self.line(Change(put: $0)) }.reduce(Data(), +)
        let temporary = path + ".new"
        try Self.append(compacted, to: try Self.open(temporary, flags: O_TRUNC))
        guard rename(temporary, path) == 0 else { throw JournalError(call: "rename \(temporary) to \(path)") }
        state = Mutex(State(entries: entries, file: try Self.open(path, flags: O_APPEND)))
    }

    deinit {
        state.withLock { if $0.file >= 0 { close($0.file) } }
    }

    /// A snapshot of every entry, by key.
    public var entries: [Int: Entry] { state.withLock { $0.entries } }

    public func entry(_ key: Int) -> Entry? { state.withLock { $0.entries[key] } }

    /// Adds or replaces entries, each journaled before it counts.
    public func put(_ entries: [Entry]) throws {
        try state.withLock { state in
            for entry in entries where state.entries[entry.key] != entry {
                try Self.journal(Change(put: entry), in: state)
                state.entries[entry.key] = entry
            }
        }
    }

    /// Removes the entries of `keys`; journals only what it removes.
    public func remove(_ keys: [Int]) throws {
        try state.withLock { state in
            let present = keys.filter { state.entries[$0] != nil }
            guard !present.isEmpty else { return }
            try Self.journal(Change(remove: present), in: state)
            for key in present { state.entries[key] = nil }
        }
    }

    private static func journal(_ change: Change, in state: borrowing State) throws {
        guard state.file >= 0 else { return }
        try append(try line(change), to: state.file, closing: false)
    }

    private static func line(_ change: Change) throws -> Data { try JSONEncoder().encode(change) + Data("\n".utf8) }

    /// The entries the journal at `path` leaves.
    private static func replay(_ path: String) throws -> [Int: Entry] {
        var entries: [Int: Entry] = [:]
        guard let data = FileManager.default.contents(atPath: path) else { return entries }
        let lines = data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: true)
        for (number, line) in lines.enumerated() {
            guard let change = try? JSONDecoder().decode(Change.self, from: Data(line)) else {
                if number == lines.count - 1 && data.last != UInt8(ascii: "\n") { break }
                throw JournalError(description: "line \(number + 1) of \(path) cannot be read;"
                                   + " move the file away to start afresh: what it recorded is then forgotten")
            }
            if let entry = change.put { entries[entry.key] = entry }
            for key in change.remove ?? [] { entries[key] = nil }
        }
        return entries
    }

    private static func open(_ path: String, flags: Int32) throws -> Int32 {
        let file = Glibc.open(path, O_WRONLY | O_CREAT | O_CLOEXEC | flags, 0o600)
        guard file >= 0 else { throw JournalError(call: "open \(path)") }
        return file
    }

    private static func append(_ data: Data, to file: Int32, closing: Bool = true) throws {
        defer { if closing { close(file) } }
        let written = data.withUnsafeBytes { write(file, $0.baseAddress, $0.count) }
        guard written == data.count else { throw JournalError(call: "write to a journal") }
    }
}

/// A journal could not be read or written.
public struct JournalError: Error, CustomStringConvertible {
    public var description: String

    init(description: String) { self.description = description }

    /// A system call that failed, with its errno.
    init(call: String) { description = "\(call): \(String(cString: strerror(errno)))" }
}

extension LocalBinding: JournalEntry {
    public var key: Int { endpointID }
}

/// This host's local bindings: how each port is plugged.
public typealias LocalBindingStore = Journal<LocalBinding>

extension Journal where Entry == LocalBinding {
    /// Every binding, with the planner's decisions.
    public var current: LocalBindingTable { LocalBindingTable(byEndpoint: entries) }
    public func binding(of endpointID: Int) -> LocalBinding? { entry(endpointID) }
    public func bind(_ bindings: LocalBinding...) throws { try put(bindings) }
    public func unbind(_ endpointIDs: [Int]) throws { try remove(endpointIDs) }
}
