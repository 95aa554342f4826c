import Foundation
import TrellisClient
import TrellisModel

/// The host's credential on disk (mode 0600 in a 0700 directory): found there on every start after
/// the first, which exchanged a join token for it.
public struct HostCredentialFile: Sendable {
    public var path: String

    public init(path: String) { self.path = path }

    /// The stored credential, if there is a well-formed one.
    public func load() throws -> String? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        let text = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard APIToken.isWellFormed(text, prefix: APIToken.hostPrefix) else {
            throw TrellisError.invalid("credential-file: \(path) holds no host credential; remove it and join again",
                                       field: "credential-file")
        }
        return text
    }

    /// A new credential for `host` from the controller, in exchange for the join token, kept in the file.
    public func exchange(host: String, joinToken: JoinTokenText?, controller: ControllerClient) async throws -> String {
        guard let joinToken else {
            throw TrellisError.invalid("join-token: no host credential in \(path) yet; join with a token from "
                                       + "'trellis host join-token create' (--join-token-file FILE or env TRELLIS_JOIN_TOKEN)",
                                       field: "join-token")
        }
        let made: HostCredential = try await controller.post("/api/v1/join", HostJoin(host: host, joinToken: joinToken.secret))
        try SecretFile.write(made.credential + "\n", to: path, what: "the host credential")
        return made.credential
    }
}
