import CNFTables
import Foundation
import Synchronization
import TrellisModel

/// nftables inside a network namespace, in-process through Debian's `libnftables` (what `nft` itself
/// runs): a ruleset is loaded as one batch (one kernel transaction, so a packet sees the old ruleset or
/// the new one, never a mix), and state is read back as nft's listing.
public enum NFTables {
    /// What a loaded `trellis` table says about itself.
    public struct TableState: Sendable, Equatable {
        /// The table's comment (Trellis writes its ruleset generation there).
        public var comment: String?
        /// Named counters by name.
        public var counters: [String: TrafficCounters]
        /// The comments of the table's chains that have one, by chain name.
        public var chainComments: [String: String] = [:]
    }

    /// libnftables keeps state outside its contexts (its symbol tables and parser set-up): one command at a time.
    private static let serial = Mutex(())

    /// Runs nft `commands` (a ruleset, or a command such as `list ruleset`) in the namespace at
    /// `namespacePath`, with rule handles in the listing when `handles`; nft's output.
    @discardableResult
    public static func run(_ commands: String, namespacePath: String, handles: Bool = false) throws -> String {
        let namespace = try NetworkNamespace(path: namespacePath)
        // The context is made on the namespace's thread: its netlink socket is opened there, in that namespace.
        return try namespace.run {
            try serial.withLock { _ in
                guard let context = nft_ctx_new(UInt32(NFT_CTX_DEFAULT)) else {
                    throw KernelToolError(message: "libnftables could not make a context", arguments: ["nft"])
                }
                defer { nft_ctx_free(context) }
                if handles { nft_ctx_output_set_flags(context, nft_ctx_output_get_flags(context) | UInt32(NFT_CTX_OUTPUT_HANDLE)) }
                _ = nft_ctx_buffer_output(context)
                _ = nft_ctx_buffer_error(context)
                let status = nft_run_cmd_from_buffer(context, commands)
                let output = nft_ctx_get_output_buffer(context).map { String(cString: $0) } ?? ""
                guard status == 0 else {
                    let message = nft_ctx_get_error_buffer(context).map { String(cString: $0) } ?? ""
                    throw KernelToolError(message: message.trimmingCharacters(in: .whitespacesAndNewlines),
                                          arguments: ["nft", String(commands.prefix(60))])
                }
                return output
            }
        }
    }

    /// Loads `ruleset` (nft syntax) in one transaction.
    public static func load(_ ruleset: String, namespacePath: String) throws {
        try run(ruleset, namespacePath: namespacePath)
    }

    /// The state of table `family name`, or nil when there is none. Read from nft's text listing:
    /// the JSON of nft 1.0.6 leaves out comments.
    public static func table(_ family: String, _ name: String, namespacePath: String) throws -> TableState? {
        let text: String
        do {
            text = try run("list table \(family) \(name)", namespacePath: namespacePath)
        } catch let error as KernelToolError where error.message.contains("No such file or directory") {
            return nil
        }
        return parseTable(text)
    }

    /// The table comment, chain comments and named counters of a `nft list table` listing.
    public static func parseTable(_ text: String) -> TableState {
        var state = TableState(comment: nil, counters: [:])
        let lines = text.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
        var depth = 0
        var chain: String?
        for (index, line) in lines.enumerated() {
            let comment = line.hasPrefix("comment \"") && line.hasSuffix("\"") ? String(line.dropFirst(9).dropLast()) : nil
            if depth == 1, let comment { state.comment = comment }
            if depth == 1 {
                let header = line.hasPrefix("chain ") && line.hasSuffix("{")
                chain = header ? line.dropFirst(6).dropLast().trimmingCharacters(in: .whitespaces) : nil
            }
            if depth == 2, let chain, let comment { state.chainComments[chain] = comment }
            if depth == 1, line.hasPrefix("counter "), line.hasSuffix("{"), index + 1 < lines.count {
                let name = String(line.dropFirst(8).dropLast().trimmingCharacters(in: .whitespaces))
                let words = lines[index + 1].split(separator: " ")
                if words.count == 4, words[0] == "packets", words[2] == "bytes", let packets = UInt64(words[1]),
                    let bytes = UInt64(words[3]) {
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
