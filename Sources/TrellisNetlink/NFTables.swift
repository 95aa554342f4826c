import Foundation
import TrellisModel

/// nftables inside a network namespace, through the `nft` program: a ruleset is loaded with one
/// `nft -f` (one kernel transaction, so a packet sees the old ruleset or the new one, never a mix),
/// and state is read back as JSON.
public enum NFTables {
    /// What a loaded `trellis` table says about itself.
    public struct TableState: Sendable, Equatable {
        /// The table's comment (Trellis writes its ruleset generation there).
        public var comment: String?
        /// Named counters by name.
        public var counters: [String: TrafficCounters]
    }

    static let program = ["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"].first { FileManager.default.isExecutableFile(atPath: $0) } ?? "nft"

    /// Runs `nft ARGUMENTS` in the namespace at `namespacePath` with `input` on its standard input.
    @discardableResult
    public static func run(_ arguments: [String], input: String? = nil, namespacePath: String) throws -> Data {
        try runProgram(program, arguments, input: input, namespacePath: namespacePath)
    }

    /// Loads `ruleset` (nft syntax) in one transaction.
    public static func load(_ ruleset: String, namespacePath: String) throws {
        try run(["-f", "-"], input: ruleset, namespacePath: namespacePath)
    }

    /// The state of table `family name`, or nil when there is none. Read from nft's text listing:
    /// the JSON of nft 1.0.6 leaves out comments.
    public static func table(_ family: String, _ name: String, namespacePath: String) throws -> TableState? {
        let text: String
        do {
            text = String(decoding: try run(["list", "table", family, name], namespacePath: namespacePath), as: UTF8.self)
        } catch let error as KernelToolError where error.message.contains("No such file or directory") {
            return nil
        }
        return parseTable(text)
    }

    /// The table comment and named counters of a `nft list table` listing.
    public static func parseTable(_ text: String) -> TableState {
        var state = TableState(comment: nil, counters: [:])
        let lines = text.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
        var depth = 0
        for (index, line) in lines.enumerated() {
            if depth == 1, line.hasPrefix("comment \""), line.hasSuffix("\"") {
                state.comment = String(line.dropFirst(9).dropLast())
            }
            if depth == 1, line.hasPrefix("counter "), line.hasSuffix("{"), index + 1 < lines.count {
                let name = String(line.dropFirst(8).dropLast().trimmingCharacters(in: .whitespaces))
                let words = lines[index + 1].split(separator: " ")
                if words.count == 4, words[0] == "packets", words[2] == "bytes", let packets = UInt64(words[1]), let bytes = UInt64(words[3]) {
                    state.counters[name] = TrafficCounters(packets: packets, bytes: bytes)
                }
            }
            depth += line.filter { $0 == "{" }.count - line.filter { $0 == "}" }.count
        }
        return state
    }
}

/// `nft` or `tc` refused a command; the message is the program's own, which names the offending line.
public struct KernelToolError: Error, CustomStringConvertible {
    public var message: String
    public var arguments: [String]
    public var description: String { "\(arguments.joined(separator: " ")): \(message)" }
}
