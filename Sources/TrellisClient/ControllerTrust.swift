import AsyncHTTPClient
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOSSL
import TrellisModel

/// What a client trusts when it speaks HTTPS to the controller: one CA certificate, from a file the
/// operator gave (`--ca-file`) or fetched once and checked against a SHA-256 fingerprint (a join
/// token's, or `--ca-fingerprint`), as kubeadm's discovery does. Every request after that verifies
/// the controller's certificate chain and name against that CA alone.
public struct ControllerTrust: Sendable {
    /// The CA certificate, PEM.
    public let caPEM: String
    let http: HTTPClient

    private static let clients = NIOLockedValueBox<[String: HTTPClient]>([:])

    /// Trust in the CA of `pem`; its HTTP client is made once per CA and shared.
    public init(caPEM pem: String) throws {
        let certificates = try NIOSSLCertificate.fromPEMBytes(Array(pem.utf8))
        guard !certificates.isEmpty else { throw TrellisError.invalid("ca-file: no certificate in it", field: "ca-file") }
        caPEM = pem
        http = Self.clients.withLockedValue { clients in
            if let existing = clients[pem] { return existing }
            var tls = TLSConfiguration.makeClientConfiguration()
            tls.trustRoots = .certificates(certificates)
            tls.minimumTLSVersion = .tlsv12
            var configuration = ControllerClient.failFastConfiguration
            configuration.tlsConfiguration = tls
            let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
            clients[pem] = client
            return client
        }
    }

    public init(caFile path: String) throws {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw TrellisError.invalid("ca-file: cannot read \(path)", field: "ca-file")
        }
        try self.init(caPEM: String(decoding: data, as: UTF8.self))
    }

    /// The CA the controller at `baseURL` serves at `/api/v1/ca.pem`, accepted only if its fingerprint
    /// is `fingerprint`. That first request cannot verify the server, so it trusts nothing but the
    /// fingerprint; a server that serves the right CA without holding a certificate from it fails at
    /// the next request, which verifies the chain.
    public static func discover(_ baseURL: String, fingerprint: String) async throws -> ControllerTrust {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.certificateVerification = .none
        var configuration = ControllerClient.failFastConfiguration
        configuration.tlsConfiguration = tls
        let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        defer { _ = http.shutdown() }
        let response: HTTPClientResponse
        do {
            response = try await http.execute(HTTPClientRequest(url: baseURL + "/api/v1/ca.pem"), timeout: .seconds(10))
        } catch {
            throw TrellisError(.unavailable, "cannot reach the controller at \(baseURL) to fetch its CA: \(error)")
        }
        let pem = String(buffer: try await response.body.collect(upTo: 1 << 16))
        guard response.status == .ok, let der = Self.der(pem) else {
            throw TrellisError(.unavailable, "the controller at \(baseURL) serves no CA certificate (\(response.status.code))")
        }
        let served = SHA256.hex(bytes: der)
        guard served == fingerprint else {
            throw TrellisError(.forbidden, "the controller at \(baseURL) presents the CA sha256:\(served), not sha256:\(fingerprint) "
                                           + "as given: refusing to talk to it (a wrong address, or someone in between)")
        }
        return try ControllerTrust(caPEM: pem)
    }

    /// The DER bytes of the first certificate of a PEM text.
    static func der(_ pem: String) -> [UInt8]? {
        guard let begin = pem.range(of: "-----BEGIN CERTIFICATE-----"),
              let end = pem.range(of: "-----END CERTIFICATE-----", range: begin.upperBound..<pem.endIndex) else { return nil }
        let body = pem[begin.upperBound..<end.lowerBound].filter { !$0.isWhitespace }
        return Data(base64Encoded: String(body)).map(Array.init)
    }

    /// Trust for the controllers reached at `baseURLs` (one cluster, one CA): none for plain HTTP and unix
    /// sockets; for HTTPS, the CA in `caFile` when it exists, else the CA found by `fingerprint` at the
    /// first controller that answers (then written to `caFile`, if one is named, so later starts need no
    /// fingerprint).
    public static func establish(_ baseURLs: [String], caFile: String?, fingerprint: String?, keep: Bool) async throws -> ControllerTrust? {
        guard baseURLs.contains(where: { $0.hasPrefix("https://") }) else { return nil }
        if let caFile, FileManager.default.fileExists(atPath: caFile) { return try ControllerTrust(caFile: caFile) }
        guard let fingerprint else {
            throw TrellisError.invalid("ca-file: the controller speaks HTTPS; give its CA (--ca-file) or its fingerprint "
                                       + "(--ca-fingerprint, or a join token that carries it)", field: "ca-file")
        }
        var found: ControllerTrust?, failures: [String] = []
        for baseURL in baseURLs where baseURL.hasPrefix("https://") {
            do {
                found = try await discover(baseURL, fingerprint: fingerprint)
                break
            } catch let error as TrellisError where error.code == .unavailable && baseURLs.count > 1 {
                failures.append(error.message)
            }
        }
        guard let trust = found else {
            throw TrellisError(.unavailable, "no controller answered for its CA: " + failures.joined(separator: "; "))
        }
        if keep, let caFile {
            guard FileManager.default.createFile(atPath: caFile, contents: Data(trust.caPEM.utf8),
                                                 attributes: [.posixPermissions: 0o644]) else {
                throw TrellisError(.unavailable, "cannot write the controller's CA to \(caFile)")
            }
        }
        return trust
    }
}
