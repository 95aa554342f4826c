import ArgumentParser
import Foundation
import TrellisClient
import TrellisModel

extension FloatingIPPool: Presentable {
    static let columns = ["PATH", "CIDR", "DESCRIPTION"]
    var row: [String] { [path, cidr.description, text(description)] }
}

struct FloatingIPCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fip", abstract: "Floating IPs: external addresses that reach an endpoint from outside.",
        subcommands: [Pool.self, Bind.self, Unbind.self, Move.self, List.self])

    static let columns = ["ADDRESS", "POOL", "ENDPOINT", "ENDPOINT-IP", "HOST"]
    static func row(_ binding: FloatingIPBinding) -> [String] {
        [binding.address.description, binding.pool, binding.endpoint, binding.endpointIP.description, text(binding.host)]
    }

    struct Pool: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "pool", abstract: "Manage pools of floating IPs.",
            subcommands: [Create.self, ListCommand<FloatingIPPool>.self, ShowCommand<FloatingIPPool>.self,
                          DeleteCommand<FloatingIPPool>.self])

        struct Create: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Create a pool for an enterprise (admin): trellis fip pool create acme/public --cidr 203.0.113.0/28.")
            @OptionGroup var connection: ConnectionOptions
            @OptionGroup var output: OutputOptions
            @Argument(help: ArgumentHelp("Its path.", valueName: "ENTERPRISE/POOL")) var path: String
            @Option(help: "The pool's addresses.") var cidr: String
            @Option(help: "A description.") var description: String?

            func run() async throws {
                let (enterprise, name) = try parentAndName(path, .fippool)
                let made: FloatingIPPool = try await connection.client().post("/api/v1/fip-pools", FloatingIPPoolCreate(
                    enterprise: enterprise, name: name, cidr: cidr, description: description))
                try output.show(made, fields: made.fields)
            }
        }
    }

    struct Bind: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Bind an address of a pool to an endpoint; prints the address.")
        @OptionGroup var connection: ConnectionOptions
        @OptionGroup var output: OutputOptions
        @Argument(help: ArgumentHelp("The pool.", valueName: "ENTERPRISE/POOL")) var pool: String
        @Argument(help: ArgumentHelp("The endpoint: its path or numeric id.", valueName: "ENDPOINT")) var endpoint: String
        @Option(help: "This address of the pool rather than the next free one.") var address: String?

        func run() async throws {
            let requested = try address.map { try IPv4Address.parse($0, field: "address") }
            let bound: FloatingIPBinding = try await connection.client().post(try apiPath(.fippool, pool) + "/bind",
                                                                              FloatingIPBind(endpoint: endpoint, address: requested))
            if output.output == .json { return try output.show(bound, fields: []) }
            print(bound.address)
        }
    }

    struct Unbind: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Unbind a floating IP; it returns to its pool.")
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "The floating IP.") var address: String

        func run() async throws {
            _ = try await connection.client().send(.DELETE, "/api/v1/fips/\(try IPv4Address.parse(address, field: "address"))")
        }
    }

    struct Move: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Move a floating IP to another endpoint.")
        @OptionGroup var connection: ConnectionOptions
        @OptionGroup var output: OutputOptions
        @Argument(help: "The floating IP.") var address: String
        @Argument(help: ArgumentHelp("The endpoint: its path or numeric id.", valueName: "ENDPOINT")) var endpoint: String

        func run() async throws {
            let moved: FloatingIPBinding = try await connection.client().put(
                "/api/v1/fips/\(try IPv4Address.parse(address, field: "address"))", FloatingIPMove(endpoint: endpoint))
            try output.list([moved], columns: FloatingIPCommand.columns, row: FloatingIPCommand.row)
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List bound floating IPs.")
        @OptionGroup var connection: ConnectionOptions
        @OptionGroup var output: OutputOptions

        func run() async throws {
            let list: FloatingIPList = try await connection.client().get("/api/v1/fips")
            try output.list(list.items, columns: FloatingIPCommand.columns, row: FloatingIPCommand.row)
        }
    }
}
