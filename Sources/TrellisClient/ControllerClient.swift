import AsyncHTTPClient
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import TrellisModel

/// A client of the controller's REST API. Non-2xx answers become `TrellisError`s carrying the
/// server's message and field; an unreachable controller becomes `.unavailable`.
///
/// Given several controllers (of one cluster, sharing a store), it uses one and moves to the next when
/// that one cannot be reached: any request that the controller cannot have received (no connection), and
/// a read or a replace (GET, PUT, DELETE) after any failure or a 503. Copies share which one is in use.
public struct ControllerClient: Sendable {
    /// Every controller this client may use, in the order it tries them.
    public let baseURLs: [String]
    private let inUse: NIOLockedValueBox<Int>
    /// The controller in use.
    public var baseURL: String { baseURLs[inUse.withLockedValue { $0 }] }
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
        self.init(baseURLs: [baseURL], token: token, trust: trust, http: http)
    }

    /// A client of the controllers at `baseURLs` (at least one), all trusted through `trust`'s CA.
    public init(baseURLs: [String], token: String?, trust: ControllerTrust? = nil, http: HTTPClient = ControllerClient.failFastHTTPClient) {
        precondition(!baseURLs.isEmpty, "a controller client needs a controller")
        self.baseURLs = baseURLs.map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 }
        inUse = NIOLockedValueBox(0)
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
        "http+unix://" + (path.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~")))
                           ?? path)
    }

    /// A base URL from what a user types: an `http://` URL, or `unix:PATH`.
    public static func baseURL(_ text: String) -> String {
        text.hasPrefix("unix:") ? baseURL(socket: String(text.dropFirst(5))) : text
    }

    /// The base URLs of a comma-separated list of controllers, each as `baseURL(_:)` reads it.
    public static func baseURLs(_ text: String) -> [String] {
        text.split(separator: ",").map { baseURL($0.trimmingCharacters(in: .whitespaces)) }.filter { !$0.isEmpty }
    }

    /// A query string from the pairs whose value is present.
    public static func query(_ pairs: [(String, String?)]) -> String {
        let allowed = CharacterSet.alphanumerics.union(CharacterSet(charactersIn: "-._~/"))
        let parts = pairs.compactMap { key, value in
            value.map { "\(key)=\($0.addingPercentEncoding(withAllowedCharacters: allowed) ?? $0)" }
        }
        return parts.isEmpty ? "" : "?" + parts.joined(separator: "&")
    }

    func makeRequest(_ method: HTTPMethod, _ path: String, body: Data?, token: String? = nil, to baseURL: String) -> HTTPClientRequest {
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

    func unreachable(_ error: any Error, at baseURL: String) -> TrellisError {
        TrellisError(.unavailable, "cannot reach \(service) at \(baseURL): \(error)")
    }

    /// Sends a request to the controller in use and, when that fails in a way that allows it, to the
    /// next ones in turn; the first that answers stays in use.
    func execute(_ method: HTTPMethod, _ path: String, body: Data?, token: String? = nil,
                 timeout: TimeAmount) async throws -> HTTPClientResponse {
        let first = inUse.withLockedValue { $0 }
        let repeatable = [.GET, .HEAD, .PUT, .DELETE].contains(method)
        var lastError: TrellisError?
        for offset in 0..<baseURLs.count {
            let index = (first + offset) % baseURLs.count, base = baseURLs[index]
            let isLast = offset == baseURLs.count - 1
            do {
                let response = try await http.execute(makeRequest(method, path, body: body, token: token, to: base), timeout: timeout)
                if response.status == .serviceUnavailable, repeatable, !isLast {
                    let body = Data(try await response.body.collect(upTo: 1 << 20).readableBytesView)
                    lastError = failure(status: 503, body: body)
                    moveOn(from: index)
                    continue
                }
                return response
            } catch {
                lastError = unreachable(error, at: base)
                guard !isLast, repeatable || Self.neverSent(error) else { throw offset == 0 ? lastError! : noneAnswered(lastError!) }
                moveOn(from: index)
            }
        }
        throw noneAnswered(lastError!)
    }

    /// The error of a request every controller failed, naming them all when there are several.
    private func noneAnswered(_ last: TrellisError) -> TrellisError {
        guard baseURLs.count > 1 else { return last }
        return TrellisError(last.code, "no controller of \(baseURLs.joined(separator: ", ")) answered; the last: \(last.message)",
                            field: last.field)
    }

    /// The next controller is used from now on, unless a concurrent request has moved on already.
    private func moveOn(from index: Int) {
        let next = (index + 1) % baseURLs.count
        inUse.withLockedValue { if $0 == index { $0 = next } }
    }

    /// Whether a failed request cannot have reached a server: no connection was ever made.
    static func neverSent(_ error: any Error) -> Bool {
        switch error {
        case let error as HTTPClientError: return error == .connectTimeout || error == .tlsHandshakeTimeout
        case is NIOConnectionError: return true
        case ChannelError.connectTimeout: return true
        case let error as IOError:
            return [ECONNREFUSED, ENOENT, EHOSTUNREACH, ENETUNREACH, EADDRNOTAVAIL].contains(error.errnoCode)
        default: return false
        }
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
        let response = try await execute(method, path, body: body, timeout: timeout)
        let data = Data(try await response.body.collect(upTo: 64 << 20).readableBytesView)
        guard (200..<300).contains(Int(response.status.code)) else {
            throw failure(status: Int(response.status.code), body: data)
        }
        return data
    }

    /// Sends any request and returns the status and body whatever they are (for tools and tests).
    public func exchange(_ method: String, _ path: String, body: Data?, token: String? = nil) async throws -> (status: Int, body: Data) {
        let response = try await execute(HTTPMethod(rawValue: method), path, body: body, token: token, timeout: .seconds(30))
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
        let response = try await execute(.GET, path, body: nil, timeout: .hours(24 * 365))
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
