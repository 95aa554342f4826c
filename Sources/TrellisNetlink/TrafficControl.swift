import Foundation

/// Traffic control inside a network namespace through the `tc` program: one `tc -batch` per change,
/// as nftables rulesets go through one `nft -f`.
public enum TrafficControl {
    static let program = ["/usr/sbin/tc", "/sbin/tc"].first { FileManager.default.isExecutableFile(atPath: $0) } ?? "tc"

    /// The kind of root qdisc and whether an ingress qdisc is present, by device, from `tc qdisc show`.
    public struct Qdiscs: Sendable, Equatable {
        public var root: [String: String] = [:]
        public var ingress: Set<String> = []
        /// Every device listed (each has at least a root qdisc, if only `noqueue`).
        public var devices: Set<String> = []
    }

    /// Runs `commands` (tc batch syntax, one per line); with `force`, a failing line does not stop the rest.
    public static func batch(_ commands: [String], force: Bool = false, namespacePath: String) throws {
        guard !commands.isEmpty else { return }
        try runProgram(program, (force ? ["-force"] : []) + ["-batch", "-"], input: commands.joined(separator: "\n") + "\n",
                       namespacePath: namespacePath)
    }

    public static func qdiscs(namespacePath: String) throws -> Qdiscs {
        let text = String(decoding: try runProgram(program, ["qdisc", "show"], namespacePath: namespacePath), as: UTF8.self)
        var result = Qdiscs()
        for line in text.split(separator: "\n") {
            let words = line.split(separator: " ").map(String.init)
            guard words.count > 4, words[0] == "qdisc", let dev = words.firstIndex(of: "dev"), dev + 1 < words.count else { continue }
            let device = words[dev + 1]
            result.devices.insert(device)
            if words[1] == "ingress" { result.ingress.insert(device) } else if words.contains("root") { result.root[device] = words[1] }
        }
        return result
    }
}

/// Runs `program ARGUMENTS` inside the namespace at `namespacePath`, feeding it `input`; its output.
@discardableResult
func runProgram(_ program: String, _ arguments: [String], input: String? = nil, namespacePath: String) throws -> Data {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/nsenter")
    process.arguments = ["--net=\(namespacePath)", program] + arguments
    let output = Pipe(), errors = Pipe(), feed = Pipe()
    process.standardOutput = output
    process.standardError = errors
    process.standardInput = input == nil ? FileHandle.nullDevice : feed
    do {
        try process.run()
    } catch {
        throw NetlinkError(code: ENOENT, operation: "run \(program): \(error)")
    }
    if let input {
        feed.fileHandleForWriting.write(Data(input.utf8))
        try? feed.fileHandleForWriting.close()
    }
    // Both pipes are drained before waiting, so that a large output cannot block the child.
    nonisolated(unsafe) var message = Data()
    let reader = DispatchGroup()
    DispatchQueue.global().async(group: reader) { message = errors.fileHandleForReading.readDataToEndOfFile() }
    let data = output.fileHandleForReading.readDataToEndOfFile()
    reader.wait()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
        throw KernelToolError(message: String(decoding: message, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines),
                            arguments: [program] + arguments)
    }
    return data
}
