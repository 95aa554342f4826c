import Foundation
import HTTPTypes
import Hummingbird
import Logging
import TrellisModel

/// The per-request context: Hummingbird's core storage and the authenticated caller.
public struct TrellisRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public var caller: Caller?
    /// The client's IP address; nil on a unix socket.
    public var clientAddress: String?

    public init(source: Source) {
        coreContext = .init(source: source)
        clientAddress = source.channel.remoteAddress?.ipAddress
    }

    /// Bodies above 1 MiB are refused with 413.
    public var maxUploadSize: Int { 1 << 20 }

    /// The caller, present on every route behind authentication.
    func requireCaller() throws -> Caller {
        guard let caller else { throw TrellisError(.unauthorized, "a bearer token is required (Authorization: Bearer …)") }
        return caller
    }
}

/// Turns every error into a JSON answer `{"error", "field"}` with the right status, so that no
/// request, however malformed, gets anything but a clear 4xx (or, for a bug, a logged 500).
struct JSONErrorMiddleware: RouterMiddleware {
    typealias Context = TrellisRequestContext

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch {
            let failure = Self.trellisError(error)
            if failure.code == .internalError {
                context.logger.error("\(request.method) \(request.uri.path) failed: \(String(reflecting: error))")
            }
            return JSONResponse.error(failure)
        }
    }

    static func trellisError(_ error: any Error) -> TrellisError {
        switch error {
        case let error as TrellisError:
            return error
        case let error as DecodingError:
            return JSONCoding.describe(error)
        case let error as HTTPError:
            let code = TrellisError.Code(httpStatus: error.status.code)
            let message = error.status.code == 404 ? "no such API path" : (error.body ?? error.status.reasonPhrase)
            return TrellisError(code, code == .tooLarge ? "the request body is larger than 1 MiB" : message)
        case let error as any HTTPResponseError:
            return TrellisError(TrellisError.Code(httpStatus: error.status.code), error.status.reasonPhrase)
        default:
            return TrellisError(.internalError, "internal error: \(error)")
        }
    }
}

/// Authenticates the bearer token of every request except the public ones.
struct BearerAuthMiddleware: RouterMiddleware {
    typealias Context = TrellisRequestContext
    let registry: Registry
    static let joinPath = "/api/v1/join"
    /// The controller's CA certificate, which clients check against a fingerprint before trusting it.
    static let caPath = "/api/v1/ca.pem"
    static let publicPaths: Set<String> = ["/healthz", "/api/v1/openapi.json", joinPath, caPath]
    static let onBehalfOf = "X-Trellis-On-Behalf-Of"

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if request.uri.path == Self.joinPath {
            return try await counted(context) { try await next(request, context) }
        }
        guard !Self.publicPaths.contains(request.uri.path), request.uri.path != "/ui", !request.uri.path.hasPrefix("/ui/") else {
            return try await next(request, context)
        }
        guard let header = request.headers[.authorization] else {
            throw TrellisError(.unauthorized, "a bearer token is required (Authorization: Bearer …)")
        }
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else {
            throw TrellisError(.unauthorized, "the Authorization header must be 'Bearer TOKEN'")
        }
        var context = context
        let token = String(parts[1]).trimmingCharacters(in: .whitespaces)
        let caller = try await counted(context) { try await registry.authenticate(token: token) }
        if let user = request.headers[HTTPField.Name(Self.onBehalfOf)!] {
            context.caller = try await registry.act(for: user, caller)
        } else {
            context.caller = caller
        }
        return try await next(request, context)
    }

    /// Runs an authentication step for a TCP client under the guard: refused while the client is locked
    /// out, and a 401 counted as a failure.
    private func counted<T>(_ context: Context, _ step: () async throws -> T) async throws -> T {
        guard let client = context.clientAddress else { return try await step() }
        try await registry.authenticationGuard.check(client)
        do {
            return try await step()
        } catch let error as TrellisError where error.code == .unauthorized {
            let failure = await registry.authenticationGuard.fail(client)
            if failure.record {
                await registry.recordUnauthenticated(client: client, failures: failure.failures,
                                                     lockedOut: failure.failures >= registry.authenticationGuard.limit)
            }
            throw error
        }
    }
}

/// Encoding of answers.
enum JSONResponse {
    static let headers: HTTPFields = [.contentType: "application/json; charset=utf-8"]

    static func make(_ value: some Encodable, _ status: HTTPResponse.Status = .ok) throws -> Response {
        var data = try JSONCoding.encoder().encode(value)
        data.append(0x0a)
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    static func error(_ error: TrellisError) -> Response {
        let body = (try? JSONCoding.encoder().encode(ErrorBody(error: error.message, field: error.field))) ?? Data("{}".utf8)
        return Response(status: .init(code: error.code.httpStatus), headers: headers,
                        body: .init(byteBuffer: ByteBuffer(bytes: body + [0x0a])))
    }

    static let noContent = Response(status: .noContent)

    /// A newline-delimited JSON stream fed by `produce`, which gets a function that writes one line.
    static func stream(_ produce: @escaping @Sendable (_ send: (any Encodable & Sendable) async throws -> Void) async throws -> Void)
        -> Response {
        Response(status: .ok, headers: [.contentType: "application/x-ndjson", .cacheControl: "no-cache"],
                 body: ResponseBody { writer in
                     let encoder = JSONCoding.encoder()
                     try await produce { value in
                         var line = try encoder.encode(value)
                         line.append(0x0a)
                         try await writer.write(ByteBuffer(bytes: line))
                     }
                     try await writer.finish(nil)
                 })
    }
}

extension Request {
    /// Decodes the JSON body, mapping every failure to a 400 or 413 that says what was wrong.
    func decodeJSON<T: Decodable>(_ type: T.Type, context: TrellisRequestContext) async throws -> T {
        let buffer: ByteBuffer
        do {
            buffer = try await body.collect(upTo: context.maxUploadSize)
        } catch {
            throw TrellisError(.tooLarge, "the request body is larger than 1 MiB")
        }
        guard buffer.readableBytes > 0 else { throw TrellisError.invalid("body: a JSON object is required") }
        do {
            return try JSONCoding.decoder().decode(T.self, from: Data(buffer.readableBytesView))
        } catch let error as DecodingError {
            throw JSONCoding.describe(error)
        }
    }

    /// A query parameter; an empty value counts as absent.
    func query(_ name: String) -> String? {
        uri.queryParameters.get(name).flatMap { $0.isEmpty ? nil : $0 }
    }

    func queryInt(_ name: String, default value: Int, range: ClosedRange<Int>) throws -> Int {
        guard let text = query(name) else { return value }
        guard let number = Int(text), range.contains(number) else {
            throw TrellisError.invalid("\(name): '\(text)' is not a number from \(range.lowerBound) to \(range.upperBound)", field: name)
        }
        return number
    }

    func queryFlag(_ name: String) -> Bool {
        guard let value = query(name) else { return false }
        return ["1", "true", "yes"].contains(value.lowercased())
    }
}
