import ArgumentParser
import Foundation
import TrellisClient
import TrellisController
import TrellisModel
import TrellisStore

/// The `trellis` command: the controller, and a client of its API.
public struct TrellisCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "trellis",
        abstract: "Trellis: multi-tenant networks for containers and VMs.",
        subcommands: [
            ControllerCommand.self, EnterpriseCommand.self, DomainCommand.self, ZoneCommand.self, SubnetCommand.self,
            EndpointCommand.self, HostCommand.self, ProfileCommand.self, PolicyCommand.self, UserCommand.self, EventsCommand.self,
            FloatingIPCommand.self, StatsCommand.self, FlowsCommand.self, ExplainCommand.self, AgentCommand.self, AttachCommand.self,
            DetachCommand.self,
            CNICommand.self, StoreCommand.self,
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

/// `trellis store backup`: a consistent copy of a running controller's SQLite store.
struct StoreCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "store", abstract: "Back up the controller's store.",
                                                    subcommands: [Backup.self])

    struct Backup: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Copy the store, as of one revision, to a new file; the controller keeps serving meanwhile.",
            discussion: "To restore: stop the controller, put the file in place of the store's, start the controller.")

        @Option(help: "The store, as the controller's --store names it.") var store = "sqlite:/var/lib/trellis/trellis.db"
        @Option(help: "The file to write (replaced if it exists).") var to: String

        func run() async throws {
            guard store.hasPrefix("sqlite:"), store.count > 7 else {
                throw TrellisError.invalid("--store: '\(store)' is not a store this command can back up (expected sqlite:PATH)",
                                           field: "store")
            }
            let path = String(store.dropFirst(7))
            guard FileManager.default.fileExists(atPath: path) else {
                throw TrellisError.notFound("--store: there is no store at \(path)", field: "store")
            }
            let revision = try await SQLiteStore(path: path).backup(to: to)
            print("backed up \(path) at revision \(revision) to \(to)")
        }
    }
}

struct ControllerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "controller", abstract: "Run the controller (REST API, IPAM, store).")

    @Option(help: "HOST:PORT or unix:PATH to listen on (repeatable).")
    var listen: [String] = ["127.0.0.1:7400"]

    @Option(help: "Store: sqlite:PATH, or etcd:URL,URL,… (the client URLs of an etcd cluster's members).")
    var store = "sqlite:/var/lib/trellis/trellis.db"

    @Option(help: "The key prefix of an etcd store.") var etcdPrefix = "/trellis"

    @Option(help: "Where the admin token is written on first start (mode 0600).")
    var adminTokenFile = "/var/lib/trellis/admin.token"

    @Option(help: "An underlay range no floating IP pool may take, e.g. the VTEPs' and controllers' (repeatable).")
    var underlayReserved: [String] = []

    @Option(help: "The TCP listeners' certificate chain, PEM (with --tls-key). Without it the controller's own CA issues one.")
    var tlsCert: String?

    @Option(help: "The private key of --tls-cert, PEM.") var tlsKey: String?

    @Option(help: "Where the controller's own CA is kept (default: tls/ beside the admin token).") var tlsDirectory: String?

    @Option(help: "A DNS name or address clients reach the controller by, for its certificate (repeatable).") var tlsName: [String] = []

    @Flag(help: "Serve plain HTTP on the TCP listeners; refused unless all are on loopback.") var insecureHTTP = false

    @Option(help: "The newest events the store keeps (older ones are removed every 5 minutes; in etcd its history is compacted).")
    var eventRetention = 100_000

    @Option(help: "Events older than this many days are removed even below --event-retention.") var eventMaxAgeDays = 30

    func run() async throws {
        var configuration = try ControllerConfiguration(listen: listen, store: store, adminTokenFile: adminTokenFile,
                                                        underlayReserved: underlayReserved)
        configuration.etcdPrefix = etcdPrefix
        configuration.tlsCertificate = tlsCert
        configuration.tlsKey = tlsKey
        configuration.tlsDirectory = tlsDirectory
        configuration.tlsNames = tlsName
        configuration.insecureHTTP = insecureHTTP
        guard eventRetention >= 1 else { throw ValidationError("--event-retention: keep at least 1 event") }
        guard eventMaxAgeDays >= 1 else { throw ValidationError("--event-max-age-days: keep events at least 1 day") }
        configuration.retention = HistoryRetention(events: eventRetention, maxAge: .seconds(eventMaxAgeDays * 86_400))
        let controller = try await Controller(configuration: configuration)
        try await controller.run { [configuration] port in
            let addresses = configuration.listen.map(\.description).joined(separator: ", ")
            print("trellis controller listening on \(addresses), store \(configuration.store),"
                  + " admin token in \(configuration.adminTokenFile)")
            if let tls = controller.tls {
                print("TCP listeners serve HTTPS; CA fingerprint sha256:\(tls.caFingerprint) "
                      + "(join tokens carry it; the CLI takes --ca-fingerprint)")
            }
            fflush(nil)
        }
    }
}
