import Foundation
import Hummingbird
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
    public var adminTokenFile: String
    /// Underlay ranges no floating IP pool may overlap (`--underlay-reserved`).
    public var underlayReserved: [IPv4Network]

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

    /// Opens the store the `store` setting names.
    func openStore() throws -> any Store {
        guard store.hasPrefix("sqlite:"), store.count > 7 else {
            throw TrellisError.invalid("--store: '\(store)' is not a store this controller knows (expected sqlite:PATH)", field: "store")
        }
        return try SQLiteStore(path: String(store.dropFirst(7)))
    }
}

/// The controller: the REST API over the registry, with the admin token made on first start.
public struct Controller: Sendable {
    public let registry: Registry
    public let configuration: ControllerConfiguration

    public init(configuration: ControllerConfiguration) throws {
        self.configuration = configuration
        registry = Registry(store: try configuration.openStore(), underlayReserved: configuration.underlayReserved)
    }

    /// The router with every API route, the OpenAPI document, authentication and JSON errors.
    func router() -> Router<TrellisRequestContext> {
        let router = Router(context: TrellisRequestContext.self)
        router.middlewares.add(JSONErrorMiddleware())
        router.middlewares.add(BearerAuthMiddleware(registry: registry))
        let routes = apiRoutes(registry)
        for route in routes {
            router.on(RouterPath(route.routerPath), method: route.method, use: route.handler)
        }
        let document = (try? JSONCoding.encoder().encode(OpenAPIDocument.build(routes))) ?? Data()
        router.get("/api/v1/openapi.json") { _, _ in
            Response(status: .ok, headers: JSONResponse.headers, body: .init(byteBuffer: ByteBuffer(bytes: document)))
        }
        let registry = self.registry
        router.get("/metrics") { _, ctx in
            let text = try await registry.metrics(try ctx.requireCaller())
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"], body: .init(byteBuffer: ByteBuffer(string: text)))
        }
        return router
    }

    /// Runs until cancelled or signalled; `onListening` gets the port of the first TCP address once it
    /// is bound (useful with port 0), or 0 when there is none.
    public func run(logger: Logger = Logger(label: "trellis.controller"), onListening: @escaping @Sendable (Int) async -> Void = { _ in }) async throws {
        try await registry.ensureAdminToken(at: configuration.adminTokenFile)
        let router = router()
        let reporter = configuration.listen.firstIndex { if case .tcp = $0 { true } else { false } } ?? 0
        let applications = configuration.listen.enumerated().map { index, address in
            Application(
                router: router,
                configuration: .init(address: address.bindAddress, serverName: "trellis"),
                onServerRunning: { channel in
                    if index == reporter { await onListening(channel.localAddress?.port ?? 0) }
                },
                logger: logger
            )
        }
        let group = ServiceGroup(services: applications, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        try await group.run()
    }
}
