import Foundation
import Synchronization
import TrellisModel

/// This host's local bindings, kept in a JSON file beside the agent's socket so that an agent restart
/// finds how each port was plugged. Every change is written whole (a new file renamed over the old), so
/// a crash leaves the old bindings or the new, never half of them.
public final class LocalBindingStore: Sendable {
    /// The file, nil for bindings kept in memory only (tests, benchmarks).
    public let path: String?
    private let table: Mutex<LocalBindingTable>

    /// Bindings read from `path` (none when the file does not exist yet).
    public init(path: String?) throws {
        self.path = path
        var bindings: [LocalBinding] = []
        if let path, let data = FileManager.default.contents(atPath: path) {
            do {
                bindings = try JSONDecoder().decode([LocalBinding].self, from: data)
            } catch {
                throw LocalBindingError(description: "the local bindings in \(path) cannot be read (\(error));"
                                        + " move the file away to start afresh: ports are then kept but not remade")
            }
        }
        table = Mutex(LocalBindingTable(bindings))
    }

    /// A snapshot of every binding.
    public var current: LocalBindingTable { table.withLock { $0 } }

    public func binding(of endpointID: Int) -> LocalBinding? { table.withLock { $0.byEndpoint[endpointID] } }

    /// Adds or replaces bindings, and writes the file.
    public func bind(_ bindings: LocalBinding...) throws {
        try change { table in for binding in bindings { table.byEndpoint[binding.endpointID] = binding } }
    }

    /// Removes the bindings of `endpointIDs`, and writes the file if that changed it.
    public func unbind(_ endpointIDs: [Int]) throws {
        try change { table in for id in endpointIDs { table.byEndpoint[id] = nil } }
    }

    private func change(_ body: (inout LocalBindingTable) -> Void) throws {
        try table.withLock { table in
            let before = table
            body(&table)
            guard let path, table != before else { return }
            let sorted = table.byEndpoint.values.sorted { $0.endpointID < $1.endpointID }
            do {
                try JSONEncoder().encode(sorted).write(to: URL(fileURLWithPath: path), options: .atomic)
            } catch {
                table = before
                throw LocalBindingError(description: "cannot write the local bindings to \(path): \(error)")
            }
        }
    }
}

/// The bindings file could not be read or written.
public struct LocalBindingError: Error, CustomStringConvertible {
    public var description: String
}
