import Foundation
import TrellisModel
import TrellisStore

/// Join tokens and host credentials: an admin makes a short-lived join token, a host's agent exchanges
/// it once for a credential bound to the host's name, and that credential can do only what the host's
/// agent needs (kubeadm's bootstrap tokens and Kubernetes' NodeRestriction, in one step).
extension Registry {
    /// Claims of host credentials: a digest of the credential, owned by the host's name.
    static let hostCredentialClaims = "host-token"
    /// Claims of unused join tokens: a digest of the secret, owned by `JoinTokenClaim`'s text.
    static let joinTokenClaims = "join-token"
    static let joinTokenLifetimes = 1...(7 * 24 * 3600)

    /// What a join token's claim records: when it expires and, if it was made for one host, which.
    struct JoinTokenClaim {
        var expires: Date
        var host: String?

        var text: String { "\(Int(expires.timeIntervalSince1970))" + (host.map { " \($0)" } ?? "") }

        init(expires: Date, host: String?) {
            self.expires = expires
            self.host = host
        }

        init?(_ text: String) {
            let parts = text.split(separator: " ", maxSplits: 1)
            guard let first = parts.first, let seconds = Int(first) else { return nil }
            expires = Date(timeIntervalSince1970: TimeInterval(seconds))
            host = parts.count == 2 ? String(parts[1]) : nil
        }
    }

    /// Makes a join token (admin only). The secret is stored as a digest; the text is shown once.
    public func createJoinToken(_ body: JoinTokenCreate, caFingerprint: String?, _ caller: Caller) async throws -> JoinToken {
        try caller.requireAdmin("make join tokens")
        let lifetime = body.ttlSeconds ?? 3600
        guard Self.joinTokenLifetimes.contains(lifetime) else {
            throw TrellisError.invalid("ttlSeconds: from 1 second to 7 days", field: "ttlSeconds")
        }
        if let host = body.host { try Names.validate(host, field: "host") }
        let secret = APIToken.generate(prefix: APIToken.joinPrefix)
        let claim = JoinTokenClaim(expires: Date().addingTimeInterval(TimeInterval(lifetime)).rounded, host: body.host)
        try await mutate(caller) { tx in
            guard try tx.claim(Self.joinTokenClaims, SHA256.hex(secret), owner: claim.text) else {
                throw TrellisError(.internalError, "token collision; try again")
            }
        }
        return JoinToken(token: JoinTokenText(secret: secret, caFingerprint: caFingerprint).description, expiresAt: claim.expires,
                         host: body.host)
    }

    /// Exchanges a join token for the host's credential. The join token is used up in the same
    /// transaction, and a credential the host had before stops working.
    public func join(_ body: HostJoin) async throws -> HostCredential {
        try Names.validate(body.host, field: "host")
        let refused = TrellisError(.unauthorized, "joinToken: not a valid join token (expired, used, or never made)", field: "joinToken")
        let secret = try JoinTokenText(parsing: body.joinToken, field: "joinToken").secret
        let credential = APIToken.generate(prefix: APIToken.hostPrefix)
        let host = body.host
        let joined = try await mutate(.host(host)) { tx in
            let hash = SHA256.hex(secret)
            guard let owner = try tx.claimOwner(Self.joinTokenClaims, hash), let claim = JoinTokenClaim(owner) else { throw refused }
            try tx.release(Self.joinTokenClaims, hash)
            guard claim.expires > Date() else { return false }
            if let bound = claim.host, bound != host { return false }
            try tx.releaseAll(Self.hostCredentialClaims, ownedBy: host)
            guard try tx.claim(Self.hostCredentialClaims, SHA256.hex(credential), owner: host) else {
                throw TrellisError(.internalError, "token collision; try again")
            }
            try tx.record(.joined, kind: .host, path: host, enterprise: nil, object: nil)
            return true
        }
        // A used or expired token is spent either way: the transaction commits, then the join is refused.
        guard joined else { throw refused }
        return HostCredential(host: host, credential: credential)
    }

    /// The caller a host credential stands for.
    func authenticateHost(token: String, digest: String) async throws -> Caller {
        guard APIToken.isWellFormed(token, prefix: APIToken.hostPrefix),
              let host = try await store.read({ try $0.claimOwner(Self.hostCredentialClaims, digest) }) else {
            throw TrellisError(.unauthorized, "the token is not valid")
        }
        return .host(host)
    }
}

private extension Date {
    var rounded: Date { Date(timeIntervalSince1970: timeIntervalSince1970.rounded(.down)) }
}
