import ArgumentParser
import Foundation
import TrellisClient
import TrellisModel

/// `show PATH` for any kind of object.
struct ShowCommand<R: Presentable>: AsyncParsableCommand {
    static var configuration: CommandConfiguration { CommandConfiguration(commandName: "show", abstract: "Show one \(R.kind.rawValue).") }
    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions
    @Argument(help: ArgumentHelp("The \(R.kind.rawValue)'s path.", valueName: R.kind.pathShape)) var path: String

    func run() async throws {
        let object: R = try await connection.client().get(try objectPath(R.kind, path))
        try output.show(object, fields: object.fields)
    }
}

/// `delete PATH` for any kind of object.
struct DeleteCommand<R: Presentable>: AsyncParsableCommand {
    static var configuration: CommandConfiguration { CommandConfiguration(commandName: "delete", abstract: "Delete a \(R.kind.rawValue).") }
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: ArgumentHelp("The \(R.kind.rawValue)'s path.", valueName: R.kind.pathShape)) var path: String

    func run() async throws {
        try await connection.client().delete(try objectPath(R.kind, path))
        print("deleted \(R.kind.rawValue) \(path)")
    }
}

/// `list` with one optional filter for kinds listed under a parent.
struct ListCommand<R: Presentable>: AsyncParsableCommand {
    static var configuration: CommandConfiguration { CommandConfiguration(commandName: "list", abstract: "List \(R.kind.collection).") }
    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions
    @Option(help: "Only those below this path (an enterprise, domain, zone or subnet).") var under: String?

    func run() async throws {
        let filter: String? = switch R.kind {
        case .domain, .profile, .fippool: "enterprise"
        case .zone, .policy: "domain"
        case .subnet: under.map { $0.split(separator: "/").count == 2 ? "domain" : "zone" }
        case .endpoint: "subnet"
        default: nil
        }
        let query = ControllerClient.query([(filter ?? "", filter == nil ? nil : under)])
        let list: ListBody<R> = try await connection.client().get("/api/v1/\(R.kind.collection)" + query)
        try output.list(list.items, columns: R.columns) { $0.row }
    }
}

/// The REST path of an object; endpoints may also be named by numeric id.
func objectPath(_ kind: ResourceKind, _ path: String) throws -> String {
    if kind == .endpoint, Int(path) != nil { return "/api/v1/endpoints/\(path)" }
    return try apiPath(kind, path)
}

struct EnterpriseCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "enterprise", abstract: "Manage enterprises (tenants).",
        subcommands: [Create.self, ListCommand<Enterprise>.self, ShowCommand<Enterprise>.self, DeleteCommand<Enterprise>.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create an enterprise.")
        @OptionGroup var connection: ConnectionOptions
        @OptionGroup var output: OutputOptions
        @Argument(help: "Its name.") var name: String
        @Option(help: "A description.") var description: String?

        func run() async throws {
            let made: Enterprise = try await connection.client().post("/api/v1/enterprises", EnterpriseCreate(name: name,
                description: description))
            try output.show(made, fields: made.fields)
        }
    }
}

struct DomainCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "domain", abstract: "Manage routing domains.",
        subcommands: [Create.self, ListCommand<Domain>.self, ShowCommand<Domain>.self, DeleteCommand<Domain>.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a domain: trellis domain create ENTERPRISE/DOMAIN.")
        @OptionGroup var connection: ConnectionOptions
        @OptionGroup var output: OutputOptions
        @Argument(help: ArgumentHelp("Its path.", valueName: "ENTERPRISE/DOMAIN")) var path: String
        @Option(help: "A description.") var description: String?

        func run() async throws {
            let (enterprise, name) = try parentAndName(path, .domain)
            let made: Domain = try await connection.client().post("/api/v1/domains", DomainCreate(enterprise: enterprise, name: name,
                                                                                                  description: description))
            try output.show(made, fields: made.fields)
        }
    }
}

struct ZoneCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "zone", abstract: "Manage zones.",
        subcommands: [Create.self, ListCommand<Zone>.self, ShowCommand<Zone>.self, DeleteCommand<Zone>.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a zone: trellis zone create ENTERPRISE/DOMAIN/ZONE.")
        @OptionGroup var connection: ConnectionOptions
        @OptionGroup var output: OutputOptions
        @Argument(help: ArgumentHelp("Its path.", valueName: "ENTERPRISE/DOMAIN/ZONE")) var path: String
        @Option(help: "A description.") var description: String?

        func run() async throws {
            let (domain, name) = try parentAndName(path, .zone)
            let made: Zone = try await connection.client().post("/api/v1/zones", ZoneCreate(domain: domain, name: name,
                                                                                            description: description))
            try output.show(made, fields: made.fields)
        }
    }
}

struct SubnetCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "subnet", abstract: "Manage subnets.",
        subcommands: [Create.self, ListCommand<Subnet>.self, Show.self, Set.self, DeleteCommand<Subnet>.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a subnet: trellis subnet create E/D/Z/S --cidr 192.168.10.0/24.")
        @OptionGroup var connection: ConnectionOptions
        @OptionGroup var output: OutputOptions
        @Argument(help: ArgumentHelp("Its path.", valueName: "ENTERPRISE/DOMAIN/ZONE/SUBNET")) var path: String
        @Option(help: "IPv4 CIDR, e.g. 192.168.10.0/24.") var cidr: String
        @Option(help: "Gateway address (default: the first host address).") var gateway: String?
        @Flag(help: "Serve DHCP on its ports.") var dhcp = false
        @Option(help: "Addresses never handed out: A.B.C.D or A.B.C.D-E.F.G.H (repeatable).") var reserved: [String] = []
        @Option(help: "A description.") var description: String?

        func run() async throws {
            let (zone, name) = try parentAndName(path, .subnet)
            let body = SubnetCreate(zone: zone, name: name, cidr: cidr, gateway: gateway, dhcp: dhcp, reserved: reserved,
                                    description: description)
            let made: Subnet = try await connection.client().post("/api/v1/subnets", body)
            try output.show(made, fields: made.fields)
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show a subnet with its address usage.")
        @OptionGroup var connection: ConnectionOptions
        @OptionGroup var output: OutputOptions
        @Argument(help: ArgumentHelp("Its path.", valueName: "ENTERPRISE/DOMAIN/ZONE/SUBNET")) var path: String

        func run() async throws {
            let client = try await connection.client()
            let subnet: Subnet = try await client.get(try apiPath(.subnet, path))
            let usage: [String: Int] = try await client.get(try apiPath(.subnet, path) + "/usage")
            try output.show(subnet, fields: subnet.fields + [("addresses", "\(usage["used"] ?? 0) used of \(usage["capacity"] ?? 0)")])
        }
    }

    struct Set: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Turn DHCP on or off, or change the description.")
        @OptionGroup var connection: ConnectionOptions
        @OptionGroup var output: OutputOptions
        @Argument(help: ArgumentHelp("Its path.", valueName: "ENTERPRISE/DOMAIN/ZONE/SUBNET")) var path: String
        @Flag(inversion: .prefixedNo, help: "Serve DHCP on its ports.") var dhcp: Bool?
        @Option(help: "A description.") var description: String?

        func run() async throws {
            let made: Subnet = try await connection.client().patch(try apiPath(.subnet, path), SubnetUpdate(dhcp: dhcp,
                description: description))
            try output.show(made, fields: made.fields)
        }
    }
}
