import Foundation
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import TrellisModel
import TrellisStore

/// How a controller is run.
public struct ControllerConfiguration: Sendable {
    public var host: String
    public var port: Int
    /// `sqlite:PATH`.
    public var store: String
    public var adminTokenFile: String

    public init(listen: String = "127.0.0.1:7400", store: String = "sqlite:/var/lib/trellis/trellis.db",
                adminTokenFile: String = "/var/lib/trellis/admin.token") throws {
        guard let colon = listen.lastIndex(of: ":"), let port = Int(listen[listen.index(after: colon)...]), (0...65535).contains(port) else {
            throw TrellisError.invalid("--listen: '\(listen)' is not HOST:PORT", field: "listen")
        }
        host = String(listen[..<colon])
        self.port = port
        self.store = store
        self.adminTokenFile = adminTokenFile
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
        registry = Registry(store: try configuration.openStore())
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
        return router
    }

    /// Runs until cancelled or signalled; `onListening` gets the bound port (useful with port 0).
    public func run(logger: Logger = Logger(label: "trellis.controller"), onListening: @escaping @Sendable (Int) async -> Void = { _ in }) async throws {
        try await registry.ensureAdminToken(at: configuration.adminTokenFile)
        let app = Application(
            router: router(),
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "trellis"),
            onServerRunning: { channel in await onListening(channel.localAddress?.port ?? 0) },
            logger: logger
        )
        let group = ServiceGroup(services: [app], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        try await group.run()
    }
}
