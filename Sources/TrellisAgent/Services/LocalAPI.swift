import Foundation
import Hummingbird
import ServiceLifecycle
import TrellisCNI
import TrellisModel
import TrellisNetlink

extension Agent {
    /// The agent's API on its unix socket, for the CLI and the Docker and CNI adapters, as a service.
    /// Errors are answered as the controller answers them: `{"error", "field"}` with a 4xx.
    func localAPI() -> any Service {
        let router = Router()
        router.middlewares.add(LocalErrorMiddleware())
        router.post("/v1/attach") { request, context -> Response in
            let body = try await decode(AttachRequest.self, request, context)
            return try encode(try await self.attach(body), status: .created)
        }
        router.post("/v1/detach") { request, context -> Response in
            try await self.detach(try await decode(DetachRequest.self, request, context))
            return Response(status: .noContent)
        }
        router.get("/v1/status") { _, _ -> Response in try encode(await self.status()) }
        router.post("/v1/cni/add") { request, context -> Response in
            try encode(try await self.cniAdd(try await decode(CNIAddRequest.self, request, context)), status: .created)
        }
        router.post("/v1/cni/del") { request, context -> Response in
            try await self.cniDelete(try await decode(CNIAttachmentRequest.self, request, context))
            return Response(status: .noContent)
        }
        router.post("/v1/cni/check") { request, context -> Response in
            try await self.cniCheck(try await decode(CNIAttachmentRequest.self, request, context))
            return Response(status: .noContent)
        }
        router.post("/v1/cni/gc") { request, context -> Response in
            try encode(try await self.cniCollect(try await decode(CNIGarbageRequest.self, request, context)))
        }
        router.get("/metrics") { _, _ -> Response in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                     body: .init(byteBuffer: ByteBuffer(string: await self.metrics())))
        }
        let access = configuration.socketAccess, path = configuration.socketPath
        return Application(router: router, configuration: .init(address: .unixDomainSocket(path: path), serverName: "trellis-agent"),
                           onServerRunning: { [logger] _ in access.restrict(path, logger: logger) }, logger: logger)
    }
}

extension Request {
    /// The body of a request to one of the agent's local sockets, at most 1 MiB: a larger one is a 413 that
    /// says so (collecting it throws NIO's own error, which would be answered as a 500).
    public func collectedBody() async throws -> ByteBuffer {
        do {
            return try await body.collect(upTo: 1 << 20)
        } catch {
            throw TrellisError(.tooLarge, "the request body is larger than 1 MiB")
        }
    }
}

private func decode<T: Decodable>(_ type: T.Type, _ request: Request, _ context: BasicRequestContext) async throws -> T {
    let buffer = try await request.collectedBody()
    do {
        return try JSONCoding.decoder().decode(T.self, from: Data(buffer.readableBytesView))
    } catch let error as DecodingError {
        throw JSONCoding.describe(error)
    }
}

private func encode(_ value: some Encodable, status: HTTPResponse.Status = .ok) throws -> Response {
    Response(status: status, headers: [.contentType: "application/json"],
             body: .init(byteBuffer: ByteBuffer(bytes: try JSONCoding.encoder().encode(value))))
}

private struct LocalErrorMiddleware: RouterMiddleware {
    typealias Context = BasicRequestContext

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch {
            let failure: TrellisError = switch error {
            case let error as TrellisError: error
            case let error as NetlinkError: TrellisError(.conflict, "kernel: \(error)")
            case let error as HTTPError: TrellisError(TrellisError.Code(httpStatus: error.status.code),
                                                      error.body ?? error.status.reasonPhrase)
            default: TrellisError(.internalError, "\(error)")
            }
            let body = try JSONCoding.encoder().encode(ErrorBody(error: failure.message, field: failure.field))
            return Response(status: .init(code: failure.code.httpStatus), headers: [.contentType: "application/json"],
                            body: .init(byteBuffer: ByteBuffer(bytes: body)))
        }
    }
}
