import Foundation

/// SHA-256 (FIPS 180-4), used to store API tokens as digests rather than as secrets.
public enum SHA256 {
    private static let k: [UInt32] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
    ]

    public static func digest(_ message: some Collection<UInt8>) -> [UInt8] {
        var h: [UInt32] = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]
        var data = Array(message)
        let bitLength = UInt64(data.count) * 8
        data.append(0x80)
        while data.count % 64 != 56 { data.append(0) }
        for shift in stride(from: 56, through: 0, by: -8) { data.append(UInt8(truncatingIfNeeded: bitLength >> UInt64(shift))) }
        var w = [UInt32](repeating: 0, count: 64)
        for chunk in stride(from: 0, to: data.count, by: 64) {
            for i in 0..<16 {
                w[i] = (0..<4).reduce(UInt32(0)) { $0 << 8 | UInt32(data[chunk + 4 * i + $1]) }
            }
            for i in 16..<64 {
                let s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3)
                let s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10)
                w[i] = w[i - 16] &+ s0 &+ w[i - 7] &+ s1
            }
            var (a, b, c, d, e, f, g, hh) = (h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7])
            for i in 0..<64 {
                let t1 = hh &+ (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) &+ ((e & f) ^ (~e & g)) &+ k[i] &+ w[i]
                let t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) &+ ((a & b) ^ (a & c) ^ (b & c))
                (hh, g, f, e, d, c, b, a) = (g, f, e, d &+ t1, c, b, a, t1 &+ t2)
            }
            for (i, v) in [a, b, c, d, e, f, g, hh].enumerated() { h[i] = h[i] &+ v }
        }
        return h.flatMap { v in (0..<4).map { UInt8(truncatingIfNeeded: v >> UInt32(24 - 8 * $0)) } }
    }

    /// The digest as lower-case hex.
    public static func hex(_ text: String) -> String { hex(bytes: Array(text.utf8)) }

    /// The digest of `bytes` as lower-case hex (a certificate's fingerprint).
    public static func hex(bytes: some Collection<UInt8>) -> String {
        digest(bytes).map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
    }

    private static func rotr(_ x: UInt32, _ n: UInt32) -> UInt32 { x >> n | x << (32 - n) }
}

/// Bearer secrets: a kind prefix and 40 random hex digits from the system's CSPRNG. The prefix says
/// what a token is (a user's, a host's credential, a join token), so the controller looks it up in one place.
public enum APIToken {
    /// A user's token.
    public static let userPrefix = "trl_"
    /// A host credential, bound to one host's name.
    public static let hostPrefix = "trh_"
    /// A short-lived, single-use token a host exchanges for its credential.
    public static let joinPrefix = "trj_"

    public static func generate(prefix: String = userPrefix) -> String {
        var generator = SystemRandomNumberGenerator()
        return prefix + (0..<20).map { _ in
            let byte = UInt8.random(in: 0...255, using: &generator)
            return (byte < 16 ? "0" : "") + String(byte, radix: 16)
        }.joined()
    }

    /// Whether `text` has the shape of a token made with `prefix` (checked before it is looked up).
    public static func isWellFormed(_ text: String, prefix: String) -> Bool {
        text.hasPrefix(prefix) && text.utf8.count == prefix.utf8.count + 40
            && text.utf8.dropFirst(prefix.utf8.count).allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
    }
}

/// What `trellis host join-token create` prints: the secret, and the SHA-256 fingerprint of the
/// controller's CA when it serves TLS, as `trj_SECRET.FINGERPRINT`, so that a joining agent can verify
/// the controller from its first connection (kubeadm's `--discovery-token-ca-cert-hash`).
public struct JoinTokenText: Sendable, Equatable, CustomStringConvertible {
    public var secret: String
    /// Lower-case hex of the SHA-256 of the CA certificate's DER, if the controller serves TLS.
    public var caFingerprint: String?

    public init(secret: String, caFingerprint: String?) {
        self.secret = secret
        self.caFingerprint = caFingerprint
    }

    public init(parsing text: String, field: String = "join-token") throws {
        let parts = text.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ".", omittingEmptySubsequences: false)
        guard (1...2).contains(parts.count), APIToken.isWellFormed(String(parts[0]), prefix: APIToken.joinPrefix) else {
            throw TrellisError.invalid("\(field): not a join token (trj_ and 40 hex digits, then . and the CA fingerprint)", field: field)
        }
        secret = String(parts[0])
        caFingerprint = nil
        if parts.count == 2 {
            caFingerprint = try CAFingerprint.parse(String(parts[1]), field: field)
        }
    }

    public var description: String { secret + (caFingerprint.map { "." + $0 } ?? "") }
}

/// SHA-256 fingerprints of certificates, as 64 lower-case hex digits (`sha256:` and colons accepted).
public enum CAFingerprint {
    public static func parse(_ text: String, field: String) throws -> String {
        var hex = text.lowercased()
        if hex.hasPrefix("sha256:") { hex = String(hex.dropFirst(7)) }
        hex = hex.replacingOccurrences(of: ":", with: "")
        guard hex.utf8.count == 64, hex.utf8.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }) else {
            throw TrellisError.invalid("\(field): a CA fingerprint is the SHA-256 of its certificate, 64 hex digits", field: field)
        }
        return hex
    }
}
