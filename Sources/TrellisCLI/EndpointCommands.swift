import ArgumentParser
import Foundation
import TrellisClient
import TrellisModel

struct EndpointCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "endpoint", abstract: "Manage endpoints (ports of containers and VMs).",
        subcommands: [Create.self, List.self, ShowCommand<Endpoint>.self, Set.self, DeleteCommand<Endpoint>.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create an endpoint: trellis endpoint create E/D/Z/S --name web1.")
        @OptionGroup var connection: ConnectionOptions
        @OptionGroup var output: OutputOptions
        @Argument(help: ArgumentHelp("The subnet.", valueName: "ENTERPRISE/DOMAIN/ZONE/SUBNET")) var subnet: String
        @Option(help: "The endpoint's name.") var name: String
        @Option(help: "A static address (default: allocated by the controller).") var ip: String?
        @Option(help: "The host it is placed on.") var host: String?
        @Option(help: "container or vm.") var kind: EndpointKind = .container
        @Option(help: "Port profile ENTERPRISE/PROFILE.") var profile: String?
        @Option(help: "Owner: container id or VM UUID.") var owner: String?
        @Option(help: "The port's own egress rate limit, e.g. 10mbit (over its profile's).") var egressRate: String?
        @Option(help: "The port's own ingress rate limit, e.g. 10mbit (over its profile's).") var ingressRate: String?

        func run() async throws {
            try Names.split(subnet, kind: .subnet, field: "subnet")
            let body = EndpointCreate(
                subnet: subnet, name: name, kind: kind, owner: owner, host: host, ip: ip, profile: profile,
                egressRate: try egressRate.map { RateLimit(bitsPerSecond: try RateLimit.parseRate($0, field: "egress-rate")) },
                ingressRate: try ingressRate.map { RateLimit(bitsPerSecond: try RateLimit.parseRate($0, field: "ingress-rate")) })
            let made: Endpoint = try await connection.client().post("/api/v1/endpoints", body)
            try output.show(made, fields: made.fields)
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List endpoints: per port, host, interface, MAC, IP and state.")
        @OptionGroup var connection: ConnectionOptions
        @OptionGroup var output: OutputOptions
        @Option(help: "Only this subnet's.") var subnet: String?
        @Option(help: "Only those on this host.") var host: String?

        func run() async throws {
            let list: ListBody<Endpoint> = try await connection.client().get(
                "/api/v1/endpoints" + ControllerClient.query([("subnet", subnet), ("host", host)]))
            try output.list(list.items, columns: Endpoint.columns) { $0.row }
        }
    }

    struct Set: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Change an endpoint's profile, host or state.")
        @OptionGroup var connection: ConnectionOptions
        @OptionGroup var output: OutputOptions
        @Argument(help: ArgumentHelp("Its path or id.", valueName: "ENTERPRISE/DOMAIN/ZONE/SUBNET/ENDPOINT")) var path: String
        @Option(help: "Port profile ENTERPRISE/PROFILE ('' for none).") var profile: String?
        @Option(help: "Host ('' for none).") var host: String?
        @Option(help: "pending, up, down or error.") var state: EndpointState?

        func run() async throws {
            let made: Endpoint = try await connection.client().patch(try objectPath(.endpoint, path),
                                                                     EndpointUpdate(host: host, state: state, profile: profile))
            try output.show(made, fields: made.fields)
        }
    }
}

extension EndpointKind: ExpressibleByArgument {}
extension EndpointState: ExpressibleByArgument {}

struct HostCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "host", abstract: "Hosts registered by their agents, and join tokens for new ones (delete revokes a credential).",
        subcommands: [ListCommand<HostRecord>.self, ShowCommand<HostRecord>.self, DeleteCommand<HostRecord>.self, JoinTokenCommand.self])

    struct JoinTokenCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "join-token", abstract: "Tokens a new host's agent joins with.",
                                                        subcommands: [Create.self])

        struct Create: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Print a single-use join token; trellis agent --join-token-file FILE exchanges it for the host's credential.")
            @OptionGroup var connection: ConnectionOptions
            @OptionGroup var output: OutputOptions
            @Option(help: "How long it may be used: 90s, 30m, 1h, 2d (at most 7 days).") var ttl = "1h"
            @Option(help: "The only host that may join with it.") var host: String?

            func run() async throws {
                let made: JoinToken = try await connection.client().post("/api/v1/join-tokens",
                                                                         JoinTokenCreate(ttlSeconds: try Self.seconds(ttl), host: host))
                if output.output == .json { return try printJSON(made) }
                print(made.token)
            }

            static func seconds(_ text: String) throws -> Int {
                let units: [Character: Int] = ["s": 1, "m": 60, "h": 3600, "d": 86400]
                guard let unit = text.last.flatMap({ units[$0] }), let count = Int(text.dropLast()), count > 0 else {
                    throw TrellisError.invalid("ttl: '\(text)' is not a duration such as 90s, 30m, 1h or 2d", field: "ttl")
                }
                return count * unit
            }
        }
    }
}

struct UserCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "user", abstract: "Manage users and their API tokens.",
        subcommands: [Create.self, ListCommand<User>.self, ShowCommand<User>.self, Token.self, DeleteCommand<User>.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a user and print its token.")
        @OptionGroup var connection: ConnectionOptions
        @OptionGroup var output: OutputOptions
        @Argument(help: "Its name.") var name: String
        @Option(help: "The enterprise it belongs to.") var enterprise: String?
        @Flag(help: "Make an admin instead.") var admin = false

        func validate() throws {
            guard admin != (enterprise != nil) else { throw ValidationError("give either --enterprise E or --admin") }
        }

        func run() async throws {
            let made: UserWithToken = try await connection.client().post("/api/v1/users", UserCreate(name: name, enterprise: enterprise,
                admin: admin))
            if output.output == .json { return try printJSON(made) }
            print(made.token)
        }
    }

    struct Token: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Replace a user's token and print the new one.")
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "The user's name.") var name: String

        func run() async throws {
            let made: UserWithToken = try await connection.client().post(try apiPath(.user, name) + "/token", [String: String]())
            print(made.token)
        }
    }
}

struct EventsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "events", abstract: "Show recorded changes; -f follows new ones.")
    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions
    @Flag(name: .shortAndLong, help: "Keep following new events.") var follow = false
    @Option(help: "Only events after this id.") var since: Int?
    @Option(help: "At most this many past events.") var limit = 100

    static func row(_ event: Event) -> [String] {
        [String(event.id), String(event.revision), ISO8601DateFormatter().string(from: event.time), event.actor,
         event.action.rawValue, event.kind.rawValue, event.path]
    }
    static let columns = ["ID", "REVISION", "TIME", "ACTOR", "ACTION", "KIND", "PATH"]

    func run() async throws {
        let client = try await connection.client()
        let query = ControllerClient.query([("since", since.map(String.init)), ("limit", String(limit)), ("follow", follow ? "1" : nil)])
        guard follow else {
            let events: [String: [Event]] = try await client.get("/api/v1/events" + query)
            return try output.list(events["items"] ?? [], columns: Self.columns, row: Self.row)
        }
        if output.output == .table { printTable([Self.columns]) }
        try await client.stream("/api/v1/events" + query, as: Event.self) { event in
            if output.output == .json {
                print(String(decoding: try JSONCoding.encoder().encode(event), as: UTF8.self))
            } else {
                print(Self.row(event).joined(separator: "  "))
            }
            fflush(nil)
            return true
        }
    }
}
