import ArgumentParser
import Foundation
import TrellisClient
import TrellisController
import TrellisModel

/// The `trellis` command: the controller, and a client of its API.
public struct TrellisCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "trellis",
        abstract: "Trellis: multi-tenant networks for containers and VMs.",
        subcommands: [
            ControllerCommand.self, EnterpriseCommand.self, DomainCommand.self, ZoneCommand.self, SubnetCommand.self,
            EndpointCommand.self, HostCommand.self, ProfileCommand.self, PolicyCommand.self, UserCommand.self, EventsCommand.self,
            FloatingIPCommand.self, StatsCommand.self, FlowsCommand.self, AgentCommand.self, AttachCommand.self, DetachCommand.self,
            CNICommand.self,
            LabCommand.self,
        ]
    )

    public init() {}

    /// Parses the process's arguments, runs the chosen command, and exits with a clear message on error.
    public static func runMain() async {
        do {
            var command = try parseAsRoot()
            if var command = command as? any AsyncParsableCommand {
                try await command.run()
            } else {
                try command.run()
            }
        } catch {
            exit(withError: error)
        }
    }
}

struct ControllerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "controller", abstract: "Run the controller (REST API, IPAM, store).")

    @Option(help: "HOST:PORT or unix:PATH to listen on (repeatable).")
    var listen: [String] = ["127.0.0.1:7400"]

    @Option(help: "Store: sqlite:PATH.")
    var store = "sqlite:/var/lib/trellis/trellis.db"

    @Option(help: "Where the admin token is written on first start (mode 0600).")
    var adminTokenFile = "/var/lib/trellis/admin.token"

    @Option(help: "An underlay range no floating IP pool may take, e.g. the VTEPs' and controllers' (repeatable).")
    var underlayReserved: [String] = []

    func run() async throws {
        let configuration = try ControllerConfiguration(listen: listen, store: store, adminTokenFile: adminTokenFile,
                                                        underlayReserved: underlayReserved)
        let controller = try Controller(configuration: configuration)
        try await controller.run { port in
            let addresses = configuration.listen.map(\.description).joined(separator: ", ")
            print("trellis controller listening on \(addresses), store \(configuration.store), admin token in \(configuration.adminTokenFile)")
            fflush(nil)
        }
    }
}
