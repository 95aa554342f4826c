/// Validation of the names users type and of the slash-separated paths built from them.
///
/// A name segment is what DNS accepts as a label in lower case: 1–63 of `a-z 0-9 - _`,
/// starting and ending with a letter or digit. Paths join segments with `/`:
/// `acme/app1/web/red/web1` is endpoint `web1` of subnet `red` of zone `web` of domain `app1` of enterprise `acme`.
public enum Names {
    public static func validate(_ name: String, field: String = "name") throws {
        let bytes = Array(name.utf8)
        guard !bytes.isEmpty else { throw TrellisError.invalid("\(field): must not be empty", field: field) }
        guard bytes.count <= 63 else {
            throw TrellisError.invalid("\(field): '\(name.prefix(70))' is longer than 63 characters", field: field)
        }
        func alnum(_ b: UInt8) -> Bool { (b >= 0x61 && b <= 0x7a) || (b >= 0x30 && b <= 0x39) }
        guard bytes.allSatisfy({ alnum($0) || $0 == 0x2d || $0 == 0x5f }), alnum(bytes.first!), alnum(bytes.last!) else {
            throw TrellisError.invalid("\(field): '\(name)' is not a valid name (use lower-case letters, digits, '-' and '_',"
                                       + " starting and ending with a letter or digit)", field: field)
        }
    }

    /// Splits a path of exactly `depth` segments naming a `what` (e.g. "subnet"), validating each.
    public static func segments(of path: String, depth: Int, what: ResourceKind, field: String) throws -> [String] {
        let parts = path.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == depth else {
            throw TrellisError.invalid("\(field): '\(path)' is not a \(what.rawValue) path (expected \(what.pathShape))", field: field)
        }
        for part in parts { try validate(part, field: field) }
        return parts
    }

    /// Validates a full path of a resource of `kind`, returning (parent path, own name).
    @discardableResult
    public static func split(_ path: String, kind: ResourceKind, field: String = "path") throws -> (parent: String?, name: String) {
        let parts = try segments(of: path, depth: kind.depth, what: kind, field: field)
        return (parts.count > 1 ? parts.dropLast().joined(separator: "/") : nil, parts.last!)
    }

    /// The first `count` segments of a path (its ancestor at that depth).
    public static func prefix(_ path: String, _ count: Int) -> String {
        path.split(separator: "/", omittingEmptySubsequences: false).prefix(count).joined(separator: "/")
    }
}

/// The kinds of object Trellis stores.
public enum ResourceKind: String, Codable, Sendable, CaseIterable {
    case enterprise, domain, zone, subnet, endpoint, host, profile, policy, user, fippool
    case dockerNetwork = "docker-network"

    /// How many path segments name an object of this kind.
    public var depth: Int {
        switch self {
        case .enterprise, .host, .user: 1
        case .domain, .profile, .fippool, .dockerNetwork: 2
        case .zone, .policy: 3
        case .subnet: 4
        case .endpoint: 5
        }
    }

    /// The shape of its path, for error messages.
    public var pathShape: String {
        switch self {
        case .enterprise: "ENTERPRISE"
        case .host: "HOST"
        case .user: "USER"
        case .domain: "ENTERPRISE/DOMAIN"
        case .profile: "ENTERPRISE/PROFILE"
        case .fippool: "ENTERPRISE/POOL"
        case .dockerNetwork: "HOST/NETWORK-ID"
        case .zone: "ENTERPRISE/DOMAIN/ZONE"
        case .policy: "ENTERPRISE/DOMAIN/POLICY"
        case .subnet: "ENTERPRISE/DOMAIN/ZONE/SUBNET"
        case .endpoint: "ENTERPRISE/DOMAIN/ZONE/SUBNET/ENDPOINT"
        }
    }

    /// The collection name in the REST API (`/api/v1/<collection>`).
    public var collection: String {
        switch self {
        case .enterprise: "enterprises"
        case .domain: "domains"
        case .zone: "zones"
        case .subnet: "subnets"
        case .endpoint: "endpoints"
        case .host: "hosts"
        case .profile: "profiles"
        case .fippool: "fip-pools"
        case .dockerNetwork: "docker-networks"
        case .policy: "policies"
        case .user: "users"
        }
    }
}
