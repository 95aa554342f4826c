import Foundation
import Synchronization
import TrellisModel

/// One line of the bindings journal: a binding made or replaced, or bindings removed.
struct LocalBindingChange: Codable {
    var bind: LocalBinding?
    var unbind: [Int]?
}

/// This host's local bindings, kept in a journal beside the agent's socket so that an agent restart
/// finds how each port was plugged. A change appends one JSON line (an attach must not rewrite every
/// other port's binding); opening the store replays the journal and writes it afresh, one line per
/// binding, renamed over the old. A line torn by a crash can only be the last, and is dropped.
///
/// It lives in /run by default, and takes no fsync: a reboot empties /run along with the namespaces and
/// links the bindings describe, and a binding kept past a reboot could name a reused PID's namespace.
public final class LocalBindingStore: Sendable {
    /// The journal, nil for bindings kept in memory only (tests, benchmarks).
    public let path: String?
    private struct State {
        var table: LocalBindingTable
        /// The journal opened for appending, -1 when in memory only.
        var journal: Int32
    }
    private let state: Mutex<State>

    /// The bindings in the journal at `path` (none when it does not exist yet).
    public init(path: String?) throws {
        self.path = path
        guard let path else {
            state = Mutex(State(table: LocalBindingTable(), journal: -1))
            return
        }
        let table = try Self.replay(path)
        let compacted = try table.byEndpoint.values.sorted { $0.endpointID < $1.endpointID }
            .map { try Self.line(LocalBindingChange(bind: $0)) }.reduce(Data(), +)
        let temporary = path + ".new"
        try Self.append(compacted, to: try Self.open(temporary, flags: O_TRUNC))
        guard rename(temporary, path) == 0 else { throw LocalBindingError(call: "rename \(temporary) to \(path)") }
        state = Mutex(State(table: table, journal: try Self.open(path, flags: O_APPEND)))
    }

    deinit {
        state.withLock { if $0.journal >= 0 { close($0.journal) } }
    }

    /// A snapshot of every binding.
    public var current: LocalBindingTable { state.withLock { $0.table } }

    public func binding(of endpointID: Int) -> LocalBinding? { state.withLock { $0.table.byEndpoint[endpointID] } }

    /// Adds or replaces bindings, each journaled before it counts.
    public func bind(_ bindings: LocalBinding...) throws {
        try state.withLock { state in
            for binding in bindings where state.table.byEndpoint[binding.endpointID] != binding {
                try journal(LocalBindingChange(bind: binding), in: state)
                state.table.byEndpoint[binding.endpointID] = binding
            }
        }
    }

    /// Removes the bindings of `endpointIDs`; journals only what it removes.
    public func unbind(_ endpointIDs: [Int]) throws {
        try state.withLock { state in
            let bound = endpointIDs.filter { state.table.byEndpoint[$0] != nil }
            guard !bound.isEmpty else { return }
            try journal(LocalBindingChange(unbind: bound), in: state)
            for id in bound { state.table.byEndpoint[id] = nil }
        }
    }

    private func journal(_ change: LocalBindingChange, in state: State) throws {
        guard state.journal >= 0 else { return }
        try Self.append(try Self.line(change), to: state.journal, closing: false)
    }

    private static func line(_ change: LocalBindingChange) throws -> Data { try JSONEncoder().encode(change) + Data("\n".utf8) }

    /// The bindings the journal at `path` leaves.
    private static func replay(_ path: String) throws -> LocalBindingTable {
        var table = LocalBindingTable()
        guard let data = FileManager.default.contents(atPath: path) else { return table }
        let lines = data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: true)
        for (number, line) in lines.enumerated() {
            guard let change = try? JSONDecoder().decode(LocalBindingChange.self, from: Data(line)) else {
                if number == lines.count - 1 && data.last != UInt8(ascii: "\n") { break }
                throw LocalBindingError(description: "line \(number + 1) of the local bindings in \(path) cannot be read;"
                                        + " move the file away to start afresh: ports are then kept but not remade")
            }
            if let binding = change.bind { table.byEndpoint[binding.endpointID] = binding }
            for id in change.unbind ?? [] { table.byEndpoint[id] = nil }
        }
        return table
    }

    private static func open(_ path: String, flags: Int32) throws -> Int32 {
        let fd = Glibc.open(path, O_WRONLY | O_CREAT | O_CLOEXEC | flags, 0o600)
        guard fd >= 0 else { throw LocalBindingError(call: "open \(path)") }
        return fd
    }

    private static func append(_ data: Data, to fd: Int32, closing: Bool = true) throws {
        defer { if closing { close(fd) } }
        let written = data.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard written == data.count else { throw LocalBindingError(call: "write to the local bindings") }
    }
}

/// The bindings journal could not be read or written.
public struct LocalBindingError: Error, CustomStringConvertible {
    public var description: String

    init(description: String) { self.description = description }

    /// A system call that failed, with its errno.
    init(call: String) { description = "\(call): \(String(cString: strerror(errno)))" }
}
