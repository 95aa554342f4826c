import ArgumentParser
import Foundation
import TrellisClient
import TrellisModel

struct StatsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "stats",
                                                    abstract: "Show an endpoint's traffic counters, as its host last reported them.")
    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions
    @Argument(help: ArgumentHelp("The endpoint: its path or numeric id.", valueName: "ENDPOINT")) var endpoint: String

    func run() async throws {
        let client = try await connection.client()
        let found: Endpoint = try await client.get(try objectPath(.endpoint, endpoint))
        let stats: EndpointStats = try await client.get("/api/v1/endpoints/\(found.id)/stats")
        try output.show(stats, fields: [
            ("endpoint", stats.endpoint), ("host", stats.host),
            ("sent", "\(stats.sent.bytes) bytes, \(stats.sent.packets) packets"),
            ("received", "\(stats.received.bytes) bytes, \(stats.received.packets) packets"),
            ("counted-by", stats.source), ("collected-at", ISO8601DateFormatter().string(from: stats.collectedAt)),
        ])
    }
}

struct FlowsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "flows",
                                                    abstract: "List the current flows of a subnet's addresses, from every host.")
    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions
    @Option(help: ArgumentHelp("The subnet.", valueName: "ENTERPRISE/DOMAIN/ZONE/SUBNET")) var subnet: String

    static let columns = ["HOST", "PROTO", "SOURCE", "DESTINATION", "STATE", "PACKETS", "BYTES", "DECIDED-BY"]

    static func row(_ flow: Flow) -> [String] {
        func end(_ address: IPv4Address, _ port: Int?) -> String { port.map { "\(address):\($0)" } ?? address.description }
        var destination = end(flow.destination, flow.destinationPort)
        if let translated = flow.translatedDestination { destination += " (→ \(translated))" }
        return [flow.host, flow.protocol, end(flow.source, flow.sourcePort), destination, flow.state ?? "-",
                "\(flow.original.packets)/\(flow.reply.packets)", "\(flow.original.bytes)/\(flow.reply.bytes)",
                flow.decidedBy.map(Self.decision) ?? "-"]
    }

    /// The deciding stage, its profile or policy, and the rule's number: `network-policy acme/app1/db-in #2`.
    static func decision(_ step: PolicyStep) -> String {
        ([step.stage.rawValue, step.object ?? ""].filter { !$0.isEmpty } + [step.ruleNumber.map { "#\($0)" } ?? ""])
            .filter { !$0.isEmpty }.joined(separator: " ")
    }

    func run() async throws {
        try Names.split(subnet, kind: .subnet, field: "subnet")
        let flows: FlowList = try await connection.client().get("/api/v1/flows" + ControllerClient.query([("subnet", subnet)]))
        try output.list(flows.items, columns: Self.columns, row: Self.row)
    }
}
