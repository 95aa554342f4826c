import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import Logging
import NIOCore
import ServiceLifecycle
import TrellisModel
import TrellisStore

/// Where the controller listens: a TCP address, or a unix socket (reachable from every network
/// namespace of the machine, which is how lab hosts reach it without any address in the root namespace).
public enum ListenAddress: Sendable, Equatable, CustomStringConvertible {
    case tcp(host: String, port: Int)
    case unix(path: String)

    /// Parses `HOST:PORT` or `unix:PATH`.
    public init(_ text: String) throws {
        if text.hasPrefix("unix:"), text.count > 5 {
            self = .unix(path: String(text.dropFirst(5)))
            return
        }
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port) else {
            throw TrellisError.invalid("--listen: '\(text)' is not HOST:PORT or unix:PATH", field: "listen")
        }
        self = .tcp(host: String(text[..<colon]), port: port)
    }

    public var description: String {
        switch self {
        case .tcp(let host, let port): "\(host):\(port)"
        case .unix(let path): "unix:\(path)"
        }
    }

    var bindAddress: BindAddress {
        switch self {
        case .tcp(let host, let port): .hostname(host, port: port)
        case .unix(let path): .unixDomainSocket(path: path)
        }
    }
}

/// How a controller is run.
public struct ControllerConfiguration: Sendable {
    public var listen: [ListenAddress]
    /// `sqlite:PATH`.
    public var store: String
    /// The key prefix of an etcd store; several Trellis installations can share one etcd cluster.
    public var etcdPrefix = "/trellis"
    public var adminTokenFile: String
    /// Underlay ranges no floating IP pool may overlap (`--underlay-reserved`).
    public var underlayReserved: [IPv4Network]
    /// The server's certificate chain and key (`--tls-cert`, `--tls-key`); without them the controller's
    /// own CA, kept in `tlsDirectory`, issues one.
    public var tlsCertificate: String?
    public var tlsKey: String?
    /// Where the controller's own CA is kept; by default `tls/` beside the admin token.
    public var tlsDirectory: String?
    /// Names (DNS or IPv4) the server certificate is made for besides the TCP listen addresses.
    public var tlsNames: [String] = []
    /// Plain HTTP on the TCP listeners, allowed only when every one is on loopback (`--insecure-http`).
    public var insecureHTTP = false
    /// How much event history the store keeps.
    public var retention = HistoryRetention()

    public init(listen: [String] = ["127.0.0.1:7400"], store: String = "sqlite:/var/lib/trellis/trellis.db",
                adminTokenFile: String = "/var/lib/trellis/admin.token", underlayReserved: [String] = []) throws {
        guard !listen.isEmpty else { throw TrellisError.invalid("--listen: give at least one address", field: "listen") }
        self.listen = try listen.map(ListenAddress.init)
        self.store = store
        self.adminTokenFile = adminTokenFile
        self.underlayReserved = try underlayReserved.map { try IPv4Network.parse($0, field: "underlay-reserved") }
    }

    public init(listen: String, store: String, adminTokenFile: String, underlayReserved: [String] = []) throws {
        try self.init(listen: [listen], store: store, adminTokenFile: adminTokenFile, underlayReserved: underlayReserved)
    }

    /// The TCP listen hosts.
    var tcpHosts: [String] { listen.compactMap { if case .tcp(let host, _) = $0 { host } else { nil } } }

    /// The TLS identity of the TCP listeners: nil when there are none, or on loopback with `insecureHTTP`.
    func loadTLS() throws -> ControllerTLS? {
        guard !tcpHosts.isEmpty else { return nil }
        if insecureHTTP {
            guard tcpHosts.allSatisfy({ $0 == "localhost" || $0.hasPrefix("127.") || $0 == "::1" }) else {
                throw TrellisError.invalid("insecure-http: plain HTTP is served on loopback only; "
                                           + "\(tcpHosts.joined(separator: ", ")) needs TLS", field: "insecure-http")
            }
            return nil
        }
        guard (tlsCertificate == nil) == (tlsKey == nil) else {
            throw TrellisError.invalid("tls-cert: give --tls-cert and --tls-key together", field: "tls-cert")
        }
        let directory = tlsDirectory ?? ((adminTokenFile as NSString).deletingLastPathComponent + "/tls")
        let names = tcpHosts.filter { $0 != "0.0.0.0" && !$0.isEmpty } + tlsNames + ["localhost", "127.0.0.1"]
        return try ControllerTLS.load(certificate: tlsCertificate, key: tlsKey, directory: directory, names: Array(Set(names)).sorted())
    }

    /// Opens the store the `store` setting names: `sqlite:PATH`, or `etcd:URL,URL,…` (etcd members' client URLs).
    func openStore() async throws -> any Store {
        if store.hasPrefix("sqlite:"), store.count > 7 { return try SQLiteStore(path: String(store.dropFirst(7))) }
        if store.hasPrefix("etcd:"), store.count > 5 {
            let members = store.dropFirst(5).split(separator: ",").map(String.init)
            guard members.allSatisfy({ $0.hasPrefix("http://") || $0.hasPrefix("https://") }) else {
                throw TrellisError.invalid(
                    "--store: etcd members are http:// or https:// URLs, as in etcd:http://10.0.0.1:2379,http://10.0.0.2:2379",
                    field: "store")
            }
            return try await EtcdStore(members: members, prefix: etcdPrefix)
        }
        throw TrellisError.invalid("--store: '\(store)' is not a store this controller knows (expected sqlite:PATH or etcd:URL,…)",
                                   field: "store")
    }
}

/// The controller: the REST API over the registry, with the admin token made on first start.
public struct Controller: Sendable {
    public let registry: Registry
    public let configuration: ControllerConfiguration
    /// What the TCP listeners serve TLS with; nil for plain HTTP.
    public let tls: ControllerTLS?

    public init(configuration: ControllerConfiguration) async throws {
        try self.init(configuration: configuration, store: try await configuration.openStore())
    }

    /// A controller on a store already opened, in place of the one `configuration.store` names.
    public init(configuration: ControllerConfiguration, store: any Store) throws {
        self.configuration = configuration
        tls = try configuration.loadTLS()
        registry = Registry(store: store, underlayReserved: configuration.underlayReserved)
    }

    /// The router with every API route, the OpenAPI document, authentication and JSON errors.
    func router() -> Router<TrellisRequestContext> {
        let router = Router(context: TrellisRequestContext.self)
        router.middlewares.add(JSONErrorMiddleware())
        router.middlewares.add(BearerAuthMiddleware(registry: registry))
        let routes = apiRoutes(registry, caFingerprint: tls?.caFingerprint)
        for route in routes {
            router.on(RouterPath(route.routerPath), method: route.method, use: route.guardedHandler)
        }
        let document = (try? JSONCoding.encoder().encode(OpenAPIDocument.build(routes))) ?? Data()
        router.get("/api/v1/openapi.json") { _, _ in
            Response(status: .ok, headers: JSONResponse.headers, body: .init(byteBuffer: ByteBuffer(bytes: document)))
        }
        let authority = tls.map { ByteBuffer(string: $0.caPEM) }
        router.get(RouterPath(BearerAuthMiddleware.caPath)) { _, _ in
            guard let authority else { throw TrellisError.notFound("this controller serves no TLS") }
            return Response(status: .ok, headers: [.contentType: "application/x-pem-file"], body: .init(byteBuffer: authority))
        }
        let registry = self.registry
        router.get("/metrics") { _, ctx in
            let text = try await registry.metrics(try ctx.requireCaller())
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                            body: .init(byteBuffer: ByteBuffer(string: text)))
        }
        Console.addRoutes(to: router)
        return router
    }

    /// Runs until cancelled or signalled; `onListening` gets the port of the first TCP address once it
    /// is bound (useful with port 0), or 0 when there is none.
    public func run(logger: Logger = Logger(label: "trellis.controller"),
                    onListening: @escaping @Sendable (Int) async -> Void = { _ in }) async throws {
        try await registry.ensureAdminToken(at: configuration.adminTokenFile)
        let router = router()
        let reporter = configuration.listen.firstIndex { if case .tcp = $0 { true } else { false } } ?? 0
        let applications = try configuration.listen.enumerated().map { index, address in
            var server = HTTPServerBuilder.http1()
            if case .tcp = address, let tls { server = try .tls(.http1(), tlsConfiguration: tls.serverConfiguration) }
            return Application(
                router: router,
                server: server,
                configuration: .init(address: address.bindAddress, serverName: "trellis"),
                onServerRunning: { channel in
                    if index == reporter { await onListening(channel.localAddress?.port ?? 0) }
                },
                logger: logger
            )
        }
        let trimmer = HistoryTrimmer(store: registry.store, retention: configuration.retention, logger: logger)
        let group = ServiceGroup(services: applications + [trimmer], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        do {
            try await group.run()
        } catch {
            await registry.store.close()
            throw error
        }
        await registry.store.close()
    }
}
