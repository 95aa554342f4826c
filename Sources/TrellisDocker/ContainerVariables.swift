import TrellisModel

/// What a container asks of Trellis through its environment (`TRELLIS_ENTERPRISE`, …) or its labels
/// (`trellis.enterprise`, …): the subnet to join, on whose behalf, and optionally an address and a
/// port profile. Environment variables win over labels.
public struct ContainerVariables: Equatable, Sendable {
    public var enterprise: String
    public var domain: String
    public var zone: String
    public var subnet: String
    public var user: String
    public var ip: String?
    public var profile: String?

    static let required = ["ENTERPRISE", "DOMAIN", "ZONE", "SUBNET", "USER"]
    static let optional = ["IP", "PROFILE"]

    /// The variables of a container, nil when it names none of them; an error naming the first
    /// missing or malformed one when it names some.
    public static func parse(env: [String], labels: [String: String]) throws -> ContainerVariables? {
        var values: [String: String] = [:]
        for key in required + optional {
            if let label = labels["trellis.\(key.lowercased())"] { values[key] = label }
        }
        for entry in env where entry.hasPrefix("TRELLIS_") {
            let parts = entry.dropFirst(8).split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.count == 2, (required + optional).contains(String(parts[0])) else { continue }
            values[String(parts[0])] = String(parts[1])
        }
        guard !values.isEmpty else { return nil }
        for key in required {
            guard let value = values[key], !value.isEmpty else {
                throw TrellisError.invalid("TRELLIS_\(key) (or label trellis.\(key.lowercased())) is missing", field: "TRELLIS_\(key)")
            }
            try Names.validate(value, field: "TRELLIS_\(key)")
        }
        if let ip = values["IP"] { _ = try IPv4Address.parse(ip, field: "TRELLIS_IP") }
        return ContainerVariables(enterprise: values["ENTERPRISE"]!, domain: values["DOMAIN"]!, zone: values["ZONE"]!,
                                  subnet: values["SUBNET"]!, user: values["USER"]!, ip: values["IP"],
                                  profile: values["PROFILE"].map { $0.contains("/") ? $0 : "\(values["ENTERPRISE"]!)/\($0)" })
    }

    /// ENTERPRISE/DOMAIN/ZONE/SUBNET.
    public var subnetPath: String { [enterprise, domain, zone, subnet].joined(separator: "/") }

    /// An endpoint name from a container name: lower case, what a name may not hold as `-`.
    public static func endpointName(container name: String, id: String) -> String {
        let mapped = String(name.lowercased().map { ($0.isASCII && ($0.isLetter || $0.isNumber)) || $0 == "-" || $0 == "_" ? $0 : "-" })
        let trimmed = mapped.drop { !($0.isLetter || $0.isNumber) }.reversed().drop { !($0.isLetter || $0.isNumber) }.reversed()
        let candidate = String(String(trimmed).prefix(63))
        return (try? Names.validate(candidate)) != nil ? candidate : "c-" + id.prefix(12)
    }
}
