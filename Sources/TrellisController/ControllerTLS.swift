import Crypto
import Foundation
import NIOSSL
import SwiftASN1
import TrellisModel
import X509

/// The controller's TLS identity: a certificate chain and key for its TCP listeners, and the CA that
/// clients trust, with the CA's SHA-256 fingerprint that join tokens carry.
///
/// Without certificates given, the first start makes a CA (ECDSA P-256, ten years) under `directory`;
/// every start then issues a fresh server certificate from it for the names the controller listens on,
/// so a new listen address never needs a new CA, and the fingerprint stays what tokens already carry.
public struct ControllerTLS: Sendable {
    public let certificateChain: [NIOSSLCertificate]
    public let privateKey: NIOSSLPrivateKey
    /// The certificate clients verify against, PEM.
    public let caPEM: String
    /// Lower-case hex of the SHA-256 of the CA certificate's DER.
    public let caFingerprint: String

    var serverConfiguration: TLSConfiguration {
        var configuration = TLSConfiguration.makeServerConfiguration(certificateChain: certificateChain.map { .certificate($0) },
                                                                     privateKey: .privateKey(privateKey))
        configuration.minimumTLSVersion = .tlsv12
        // A stopping controller closes its agents' connections; it waits this long for each client's
        // close_notify (NIOSSL's default is 5 s), not longer, so that SIGTERM stops it promptly.
        configuration.shutdownTimeout = .milliseconds(500)
        return configuration
    }

    /// The certificate and key given (`--tls-cert`, `--tls-key`; the CA clients pin is the chain's last
    /// certificate), or the controller's own CA and a server certificate for `names`.
    public static func load(certificate: String?, key: String?, directory: String, names: [String]) throws -> ControllerTLS {
        if let certificate, let key {
            let chain = try NIOSSLCertificate.fromPEMFile(certificate)
            guard let root = chain.last else {
                throw TrellisError.invalid("tls-cert: \(certificate) holds no certificate", field: "tls-cert")
            }
            let rootDER = try root.toDERBytes()
            return ControllerTLS(certificateChain: chain, privateKey: try NIOSSLPrivateKey(file: key, format: .pem),
                                 caPEM: pem(der: rootDER), caFingerprint: TrellisModel.SHA256.hex(bytes: rootDER))
        }
        let authority = try CertificateAuthority(directory: directory)
        let serverKey = P256.Signing.PrivateKey()
        let server = try authority.issue(for: names, key: serverKey)
        let serverDER = try derBytes(server)
        return ControllerTLS(certificateChain: [try NIOSSLCertificate(bytes: serverDER, format: .der),
                                                try NIOSSLCertificate(bytes: authority.der, format: .der)],
                             privateKey: try NIOSSLPrivateKey(bytes: Array(serverKey.pemRepresentation.utf8), format: .pem),
                             caPEM: pem(der: authority.der), caFingerprint: TrellisModel.SHA256.hex(bytes: authority.der))
    }

    static func derBytes(_ certificate: Certificate) throws -> [UInt8] {
        var serializer = DER.Serializer()
        try serializer.serialize(certificate)
        return serializer.serializedBytes
    }

    static func pem(der: [UInt8]) -> String {
        let lines = Data(der).base64EncodedString(options: [.lineLength64Characters, .endLineWithLineFeed])
        return "-----BEGIN CERTIFICATE-----\n\(lines)\n-----END CERTIFICATE-----\n"
    }
}

/// The controller's own certificate authority, kept as `ca.pem` and `ca.key` (0600) in its directory.
struct CertificateAuthority {
    let certificate: Certificate
    let key: P256.Signing.PrivateKey
    let der: [UInt8]

    init(directory: String) throws {
        let certificatePath = "\(directory)/ca.pem", keyPath = "\(directory)/ca.key"
        let manager = FileManager.default
        if let pem = manager.contents(atPath: certificatePath), let keyPEM = manager.contents(atPath: keyPath) {
            certificate = try Certificate(pemEncoded: String(decoding: pem, as: UTF8.self))
            key = try P256.Signing.PrivateKey(pemRepresentation: String(decoding: keyPEM, as: UTF8.self))
        } else {
            key = P256.Signing.PrivateKey()
            let name = try DistinguishedName { CommonName("Trellis controller CA") }
            let now = Date()
            certificate = try Certificate(
                version: .v3, serialNumber: .init(), publicKey: .init(key.publicKey), notValidBefore: now.addingTimeInterval(-3600),
                notValidAfter: now.addingTimeInterval(10 * 365 * 86400), issuer: name, subject: name, signatureAlgorithm: .ecdsaWithSHA256,
                extensions: try Certificate.Extensions {
                    Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                    Critical(KeyUsage(keyCertSign: true, cRLSign: true))
                },
                issuerPrivateKey: .init(key))
            try SecretFile.write(key.pemRepresentation, to: keyPath, what: "the controller CA's key")
            guard manager.createFile(atPath: certificatePath, contents: Data(try certificate.serializeAsPEM().pemString.utf8)) else {
                throw TrellisError(.unavailable, "cannot write the controller's CA to \(directory)")
            }
        }
        der = try ControllerTLS.derBytes(certificate)
    }

    /// A server certificate for `names` (DNS names or IPv4 addresses), valid for a year.
    func issue(for names: [String], key serverKey: P256.Signing.PrivateKey) throws -> Certificate {
        let alternatives: [GeneralName] = names.map { name in
            if let address = try? IPv4Address.parse(name, field: "name") {
                let value = address.value
                return .ipAddress(ASN1OctetString(contentBytes: [UInt8(value >> 24), UInt8(value >> 16 & 0xff),
                                                                 UInt8(value >> 8 & 0xff), UInt8(value & 0xff)]))
            }
            return .dnsName(name)
        }
        let now = Date()
        return try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(serverKey.publicKey), notValidBefore: now.addingTimeInterval(-3600),
            notValidAfter: now.addingTimeInterval(365 * 86400), issuer: certificate.subject,
            subject: try DistinguishedName { CommonName("Trellis controller") }, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
                try ExtendedKeyUsage([.serverAuth])
                SubjectAlternativeNames(alternatives)
            },
            issuerPrivateKey: .init(key))
    }
}
