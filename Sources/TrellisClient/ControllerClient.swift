import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import TrellisModel

/// A client of the controller's REST API. Non-2xx answers become `TrellisError`s carrying the
/// server's message and field; an unreachable controller becomes `.unavailable`.
public struct ControllerClient: Sendable {
    public let baseURL: String
    public let token: String?
    /// The user an admin token acts for (`X-Trellis-On-Behalf-Of`), so that the controller applies
    /// that user's rights: an agent creating an endpoint for a container's owner.
    public private(set) var onBehalfOf: String?
    /// What the server is, for error messages ("the controller", "the Docker engine").
    public var service = "the controller"
    let http: HTTPClient

    /// The header that names the user an admin caller acts for.
    public static let onBehalfOfHeader = "X-Trellis-On-Behalf-Of"

    /// A shared HTTP client that fails at once when the controller is not listening, instead of
    /// retrying the connection until the request's deadline.
    public static let failFastHTTPClient = HTTPClient(eventLoopGroupProvider: .singleton, configuration: failFastConfiguration)

    /// The configuration of `failFastHTTPClient`, which HTTPS clients share too.
    static var failFastConfiguration: HTTPClient.Configuration {
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool.retryConnectionEstablishment = false
        configuration.timeout.connect = .seconds(5)
        configuration.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = 64
        return configuration
    }

    /// A client of `baseURL`; an HTTPS one verifies the controller against `trust`'s CA alone.
    public init(baseURL: String, token: String?, trust: ControllerTrust? = nil, http: HTTPClient = ControllerClient.failFastHTTPClient) {
        self.baseURL = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
        self.token = token
        self.http = trust?.http ?? http
    }

    /// The same client, acting for `user`.
    public func acting(for user: String) -> ControllerClient {
        var copy = self
        copy.onBehalfOf = user
        return copy
    }

    /// The base URL of an HTTP server on a unix socket, as AsyncHTTPClient spells it.
    public static func baseURL(socket path: String) -> String {
        "http+unix://" + (path.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~"))) ?? path)
    }

    /// A base URL from what a user types: an `http://` URL, or `unix:PATH`.
    public static func baseURL(_ text: String) -> String {
        text.hasPrefix("unix:") ? baseURL(socket: String(text.dropFirst(5))) : text
    }

    /// A query string from the pairs whose value is present.
    public static func query(_ pairs: [(String, String?)]) -> String {
        let allowed = CharacterSet.alphanumerics.union(CharacterSet(charactersIn: "-._~/"))
        let parts = pairs.compactMap { key, value in
            value.map { "\(key)=\($0.addingPercentEncoding(withAllowedCharacters: allowed) ?? $0)" }
        }
        return parts.isEmpty ? "" : "?" + parts.joined(separator: "&")
    }

    func makeRequest(_ method: HTTPMethod, _ path: String, body: Data?, token: String? = nil) -> HTTPClientRequest {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = method
        if let token = token ?? self.token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        if let onBehalfOf { request.headers.add(name: Self.onBehalfOfHeader, value: onBehalfOf) }
        // AsyncHTTPClient would send the socket path as the Host, which Go servers (the Docker engine) refuse.
        if baseURL.hasPrefix("http+unix://") { request.headers.replaceOrAdd(name: "Host", value: "localhost") }
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: body))
        }
        return request
    }

    func unreachable(_ error: any Error) -> TrellisError {
        TrellisError(.unavailable, "cannot reach \(service) at \(baseURL): \(error)")
    }

    func failure(status: Int, body: Data) -> TrellisError {
        if let error = try? JSONCoding.decoder().decode(ErrorBody.self, from: body) {
            return TrellisError(TrellisError.Code(httpStatus: status), error.error, field: error.field)
        }
        // The Docker engine's errors are {"message": "..."}.
        if let object = try? JSONSerialization.jsonObject(with: body) as? [String: Any], let message = object["message"] as? String {
            return TrellisError(TrellisError.Code(httpStatus: status), message)
        }
        return TrellisError(TrellisError.Code(httpStatus: status), "\(service) answered \(status)")
    }

    /// Sends a request and returns the raw answer body of a 2xx, else throws the server's error.
    public func send(_ method: HTTPMethod, _ path: String, body: Data? = nil, timeout: TimeAmount = .seconds(30)) async throws -> Data {
        let response: HTTPClientResponse
        do {
            response = try await http.execute(makeRequest(method, path, body: body), timeout: timeout)
        } catch {
            throw unreachable(error)
        }
        let data = Data(try await response.body.collect(upTo: 64 << 20).readableBytesView)
        guard (200..<300).contains(Int(response.status.code)) else {
            throw failure(status: Int(response.status.code), body: data)
        }
        return data
    }

    /// Sends any request and returns the status and body whatever they are (for tools and tests).
    public func exchange(_ method: String, _ path: String, body: Data?, token: String? = nil) async throws -> (status: Int, body: Data) {
        let response: HTTPClientResponse
        do {
            response = try await http.execute(makeRequest(HTTPMethod(rawValue: method), path, body: body, token: token), timeout: .seconds(30))
        } catch {
            throw unreachable(error)
        }
        return (Int(response.status.code), Data(try await response.body.collect(upTo: 64 << 20).readableBytesView))
    }

    public func get<T: Decodable>(_ path: String, as type: T.Type = T.self) async throws -> T {
        try JSONCoding.decoder().decode(T.self, from: try await send(.GET, path))
    }

    public func post<T: Decodable>(_ path: String, _ body: some Encodable, as type: T.Type = T.self) async throws -> T {
        try JSONCoding.decoder().decode(T.self, from: try await send(.POST, path, body: try JSONCoding.encoder().encode(body)))
    }

    public func put<T: Decodable>(_ path: String, _ body: some Encodable, as type: T.Type = T.self) async throws -> T {
        try JSONCoding.decoder().decode(T.self, from: try await send(.PUT, path, body: try JSONCoding.encoder().encode(body)))
    }

    public func patch<T: Decodable>(_ path: String, _ body: some Encodable, as type: T.Type = T.self) async throws -> T {
        try JSONCoding.decoder().decode(T.self, from: try await send(.PATCH, path, body: try JSONCoding.encoder().encode(body)))
    }

    public func delete(_ path: String) async throws {
        _ = try await send(.DELETE, path)
    }

    /// Opens a newline-delimited JSON stream and calls `line` with each decoded item until the
    /// server ends it, `line` returns false, or the task is cancelled.
    public func stream<T: Decodable>(_ path: String, as type: T.Type = T.self, _ line: (T) async throws -> Bool) async throws {
        let response: HTTPClientResponse
        do {
            response = try await http.execute(makeRequest(.GET, path, body: nil), timeout: .hours(24 * 365))
        } catch {
            throw unreachable(error)
        }
        guard (200..<300).contains(Int(response.status.code)) else {
            throw failure(status: Int(response.status.code), body: Data(try await response.body.collect(upTo: 1 << 20).readableBytesView))
        }
        let decoder = JSONCoding.decoder()
        var pending = Data()
        for try await chunk in response.body {
            pending.append(contentsOf: chunk.readableBytesView)
            while let newline = pending.firstIndex(of: 0x0a) {
                let text = pending[pending.startIndex..<newline]
                pending = Data(pending[pending.index(after: newline)...])
                guard !text.isEmpty else { continue }
                if try await !line(decoder.decode(T.self, from: text)) { return }
            }
        }
    }
}
