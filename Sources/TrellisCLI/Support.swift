import ArgumentParser
import Foundation
import TrellisClient
import TrellisModel

/// Where the controller is and who we are to it.
struct ConnectionOptions: ParsableArguments {
    @Option(help: ArgumentHelp("""
        Controller URL or unix:PATH, or several controllers of one cluster, comma-separated \
        (env TRELLIS_CONTROLLER; default http://127.0.0.1:7400).
        """))
    var controller: String?

    @Option(help: "API token (env TRELLIS_TOKEN; default: the local admin token file when readable).")
    var token: String?

    static let defaultTokenFile = "/var/lib/trellis/admin.token"

    /// The controllers' base URLs, from the option, the environment or the default.
    static func baseURLs(_ given: String?) throws -> [String] {
        let text = given ?? ProcessInfo.processInfo.environment["TRELLIS_CONTROLLER"] ?? "http://127.0.0.1:7400"
        let urls = ControllerClient.baseURLs(text)
        guard !urls.isEmpty else { throw TrellisError.invalid("controller: no controller URL in '\(text)'", field: "controller") }
        return urls
    }

    @Option(help: "The controller's CA certificate, for HTTPS (env TRELLIS_CA_FILE).")
    var caFile: String?

    @Option(help: "The SHA-256 fingerprint of the controller's CA, instead of --ca-file (env TRELLIS_CA_FINGERPRINT).")
    var caFingerprint: String?

    func client() async throws -> ControllerClient {
        let environment = ProcessInfo.processInfo.environment
        let token = token ?? environment["TRELLIS_TOKEN"] ?? FileManager.default.contents(atPath: Self.defaultTokenFile)
            .flatMap { String(data: $0, encoding: .utf8)?.trimmingCharacters(in: .whitespacesAndNewlines) }
        let baseURLs = try Self.baseURLs(controller)
        let fingerprint = try (caFingerprint ?? environment["TRELLIS_CA_FINGERPRINT"])
            .map { try CAFingerprint.parse($0, field: "ca-fingerprint") }
        let trust = try await ControllerTrust.establish(baseURLs, caFile: caFile ?? environment["TRELLIS_CA_FILE"],
                                                        fingerprint: fingerprint, keep: false)
        return ControllerClient(baseURLs: baseURLs, token: token, trust: trust)
    }
}

/// How results are printed.
enum OutputFormat: String, ExpressibleByArgument, CaseIterable { case table, json }

struct OutputOptions: ParsableArguments {
    @Option(name: .shortAndLong, help: "Output format: table or json.")
    var output: OutputFormat = .table

    /// Prints one object: JSON, or `field: value` lines.
    func show<T: Encodable>(_ value: T, fields: [(String, String)]) throws {
        if output == .json { return try printJSON(value) }
        let width = fields.map(\.0.count).max() ?? 0
        for (name, text) in fields { print(name.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + text) }
    }

    /// Prints many objects: a JSON array, or an aligned table.
    func list<T: Encodable>(_ items: [T], columns: [String], row: (T) -> [String]) throws {
        if output == .json { return try printJSON(items) }
        printTable([columns] + items.map(row))
    }
}

func printJSON(_ value: some Encodable) throws {
    let encoder = JSONCoding.encoder()
    encoder.outputFormatting.insert(.prettyPrinted)
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
}

func printTable(_ rows: [[String]]) {
    guard let header = rows.first else { return }
    let widths = header.indices.map { column in rows.map { column < $0.count ? $0[column].count : 0 }.max() ?? 0 }
    for row in rows {
        let cells = row.enumerated().map { index, cell in
            index == row.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
        }
        print(cells.joined(separator: "  "))
    }
}

/// `-` for an absent value.
func text(_ value: (any CustomStringConvertible)?) -> String { value.map(\.description) ?? "-" }

/// The REST path of an object of `kind` at `path`, after checking the path's shape.
func apiPath(_ kind: ResourceKind, _ path: String) throws -> String {
    try Names.split(path, kind: kind, field: kind.rawValue)
    return "/api/v1/\(kind.collection)/\(path)"
}

/// Splits a path into its parent path and own name, checking its shape.
func parentAndName(_ path: String, _ kind: ResourceKind) throws -> (String, String) {
    let (parent, name) = try Names.split(path, kind: kind, field: kind.rawValue)
    return (parent ?? "", name)
}

extension TrellisError: LocalizedError {
    public var errorDescription: String? { description }
}
