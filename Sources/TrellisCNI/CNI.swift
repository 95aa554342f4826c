import FoundationEssentials

/// The CNI specification as far as the Trellis plugin speaks it (SPEC.md of containernetworking/cni,
/// spec-v1.0.0 and spec-v1.1.0, and CONVENTIONS.md): versions, errors, the environment, the network
/// configuration and the result. Pure: no I/O, so the plugin and the agent share it and tests read it.
public enum CNI {
    /// The versions whose configurations and results the plugin handles; 0.4.0 is what Debian's
    /// podman writes, 1.0.0 what `trellis cni conf` writes, 1.1.0 the one with GC and STATUS.
    public static let supportedVersions = ["0.4.0", "1.0.0", "1.1.0"]
    /// The version the plugin answers VERSION in, and the errors of a configuration it cannot read.
    public static let latestVersion = "1.1.0"
}

/// A CNI error: printed on stdout as JSON, with a non-zero exit.
public struct CNIError: Error, Equatable, Sendable, Codable {
    public var cniVersion: String
    public var code: Int
    public var msg: String
    public var details: String?

    public init(_ code: Code, _ msg: String, details: String? = nil, version: String = CNI.latestVersion) {
        self.cniVersion = version
        self.code = code.rawValue
        self.msg = msg
        self.details = details
    }

    /// The spec's well-known codes (1–99 are the spec's; 50 and 51 are STATUS's).
    public enum Code: Int, Sendable {
        case incompatibleVersion = 1
        case unsupportedField = 2
        case unknownContainer = 3
        case invalidEnvironment = 4
        case ioFailure = 5
        case undecodable = 6
        case invalidConfiguration = 7
        case tryAgainLater = 11
        case unavailable = 50
        case limitedConnectivity = 51
        /// Trellis's own (100 and up): the agent or controller refused the request.
        case refused = 100
    }
}

/// The verbs a runtime runs a plugin with (`CNI_COMMAND`).
public enum CNICommand: String, Sendable {
    case add = "ADD", del = "DEL", check = "CHECK", version = "VERSION", gc = "GC", status = "STATUS"
}

/// What a runtime passes in the environment.
public struct CNIEnvironment: Equatable, Sendable {
    public var command: CNICommand
    public var containerID: String
    public var netns: String
    public var ifname: String
    /// `CNI_ARGS`: `K=V` pairs separated by `;`.
    public var arguments: [String: String]

    /// Reads the environment; ADD, CHECK and DEL need a container id and an interface name, ADD and
    /// CHECK a network namespace too (DEL may come without one: containerd sends none).
    public init(_ environment: [String: String]) throws(CNIError) {
        guard let verb = environment["CNI_COMMAND"], !verb.isEmpty else {
            throw CNIError(.invalidEnvironment, "CNI_COMMAND is not set")
        }
        guard let command = CNICommand(rawValue: verb) else {
            throw CNIError(.invalidEnvironment, "CNI_COMMAND '\(verb)' is not one of ADD, DEL, CHECK, VERSION, GC, STATUS")
        }
        self.command = command
        containerID = environment["CNI_CONTAINERID"] ?? ""
        netns = environment["CNI_NETNS"] ?? ""
        ifname = environment["CNI_IFNAME"] ?? ""
        arguments = Self.parseArguments(environment["CNI_ARGS"] ?? "")
        let attaches = [.add, .del, .check].contains(command)
        if attaches && containerID.isEmpty { throw CNIError(.invalidEnvironment, "CNI_CONTAINERID is not set") }
        if attaches && ifname.isEmpty { throw CNIError(.invalidEnvironment, "CNI_IFNAME is not set") }
        if attaches, !(1...15).contains(ifname.utf8.count) || ifname.contains("/") || ifname.contains(" ") {
            throw CNIError(.invalidEnvironment, "CNI_IFNAME '\(ifname)' is not an interface name (1 to 15 bytes)")
        }
        if [.add, .check].contains(command) && netns.isEmpty { throw CNIError(.invalidEnvironment, "CNI_NETNS is not set") }
    }

    static func parseArguments(_ text: String) -> [String: String] {
        var arguments: [String: String] = [:]
        for pair in text.split(separator: ";") {
            guard let equals = pair.firstIndex(of: "=") else { continue }
            arguments[String(pair[..<equals])] = String(pair[pair.index(after: equals)...])
        }
        return arguments
    }

    /// The endpoint's name: the Kubernetes pod's (so it has a DNS name), else the container id's, as a
    /// Trellis name (a lower-case DNS label of at most 63 bytes).
    public var endpointName: String {
        let pod = arguments["K8S_POD_NAME"].flatMap { $0.isEmpty ? nil : $0 }
        let namespace = arguments["K8S_POD_NAMESPACE"].flatMap { $0.isEmpty || $0 == "default" ? nil : $0 }
        let raw = pod.map { name in namespace.map { "\(name)-\($0)" } ?? name } ?? containerID
        var label = String(raw.lowercased().map { ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "-" ? $0 : "-" })
        while label.hasPrefix("-") { label.removeFirst() }
        label = String(label.prefix(63))
        while label.hasSuffix("-") { label.removeLast() }
        return label.isEmpty ? "cni" : label
    }

    /// Who owns the endpoint: one attachment is one container id and interface name.
    public var owner: String { CNIAttachment(containerID: containerID, ifname: ifname).owner }
}

/// A container's attachment to a network, as GC lists the valid ones.
public struct CNIAttachment: Codable, Hashable, Sendable {
    public var containerID: String
    public var ifname: String

    public init(containerID: String, ifname: String) {
        self.containerID = containerID
        self.ifname = ifname
    }

    /// The endpoint's `owner` for this attachment.
    public var owner: String { "cni:\(containerID)/\(ifname)" }
}

/// The plugin's part of a network configuration, as the runtime passes it on stdin (the list's
/// `cniVersion` and `name` folded in), with the keys runtimes add.
public struct CNINetworkConfiguration: Decodable, Sendable {
    public var cniVersion: String
    public var name: String
    public var type: String
    /// The Trellis subnet, `ENTERPRISE/DOMAIN/ZONE/SUBNET`.
    public var subnet: String?
    public var agentSocket: String?
    public var profile: String?
    /// The user the endpoint is created for (refused unless that user may use the subnet).
    public var user: String?
    public var runtimeConfig: RuntimeConfig?
    public var prevResult: CNIResult?
    /// GC's list (and the name an earlier spec draft gave it, which libcni sends too).
    public var validAttachments: [CNIAttachment]?

    /// The keys of `runtimeConfig` that the plugin reads; any others are left alone.
    public struct RuntimeConfig: Decodable, Sendable {
        public var ips: [String]?
        /// The `bandwidth` capability (CONVENTIONS.md): the port's rate limits.
        public var bandwidth: CNIBandwidth?
    }

    enum CodingKeys: String, CodingKey {
        case cniVersion, name, type, subnet, agentSocket, profile, user, runtimeConfig, prevResult
        case validAttachments = "cni.dev/valid-attachments", attachments = "cni.dev/attachments"
    }

    public init(from decoder: any Decoder) throws {
        let keys = try decoder.container(keyedBy: CodingKeys.self)
        cniVersion = try keys.decode(String.self, forKey: .cniVersion)
        name = try keys.decode(String.self, forKey: .name)
        type = try keys.decode(String.self, forKey: .type)
        subnet = try keys.decodeIfPresent(String.self, forKey: .subnet)
        agentSocket = try keys.decodeIfPresent(String.self, forKey: .agentSocket)
        profile = try keys.decodeIfPresent(String.self, forKey: .profile)
        user = try keys.decodeIfPresent(String.self, forKey: .user)
        runtimeConfig = try keys.decodeIfPresent(RuntimeConfig.self, forKey: .runtimeConfig)
        prevResult = try keys.decodeIfPresent(CNIResult.self, forKey: .prevResult)
        validAttachments = try keys.decodeIfPresent([CNIAttachment].self, forKey: .validAttachments)
            ?? keys.decodeIfPresent([CNIAttachment].self, forKey: .attachments)
    }

    public static let defaultAgentSocket = "/run/trellis/agent.sock"

    /// Reads a configuration from stdin's bytes: not JSON is code 6, a missing or mistyped key code 7
    /// naming the key, a version this plugin does not speak code 1. `needsSubnet` for the verbs that attach.
    public static func parse(_ bytes: [UInt8], needsSubnet: Bool) throws(CNIError) -> CNINetworkConfiguration {
        let configuration: CNINetworkConfiguration
        do {
            configuration = try JSONDecoder().decode(CNINetworkConfiguration.self, from: Data(bytes))
        } catch let DecodingError.dataCorrupted(context) where context.codingPath.isEmpty {
            throw CNIError(.undecodable, "the network configuration is not JSON", details: context.debugDescription)
        } catch let error as DecodingError {
            throw CNIError(.invalidConfiguration, "invalid network configuration: \(describe(error))")
        } catch {
            throw CNIError(.undecodable, "the network configuration cannot be read: \(error)")
        }
        guard CNI.supportedVersions.contains(configuration.cniVersion) else {
            let supported = CNI.supportedVersions.joined(separator: ", ")
            throw CNIError(.incompatibleVersion, "cniVersion \(configuration.cniVersion) is not supported (supported: \(supported))")
        }
        if let bandwidth = configuration.runtimeConfig?.bandwidth,
           let key = bandwidth.negativeKey {
            throw CNIError(.invalidConfiguration,
                           "invalid network configuration: key 'runtimeConfig.bandwidth.\(key)' must not be negative",
                           version: configuration.cniVersion)
        }
        if needsSubnet && (configuration.subnet ?? "").isEmpty {
            throw CNIError(.invalidConfiguration, "invalid network configuration: key 'subnet' is missing (ENTERPRISE/DOMAIN/ZONE/SUBNET)",
                           version: configuration.cniVersion)
        }
        return configuration
    }

    static func describe(_ error: DecodingError) -> String {
        func path(_ codingPath: [any CodingKey], _ last: (any CodingKey)? = nil) -> String {
            (codingPath + (last.map { [$0] } ?? [])).map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
        }
        switch error {
        case .keyNotFound(let key, let context): return "key '\(path(context.codingPath, key))' is missing"
        case .typeMismatch(_, let context), .valueNotFound(_, let context):
            return "key '\(path(context.codingPath))' has the wrong type"
        case .dataCorrupted(let context): return "key '\(path(context.codingPath))': \(context.debugDescription)"
        @unknown default: return "\(error)"
        }
    }

    /// A static address asked for: `CNI_ARGS` `IP=` (podman's `--ip`), else `runtimeConfig.ips`.
    public func requestedAddress(_ environment: CNIEnvironment) -> String? {
        if let ip = environment.arguments["IP"], !ip.isEmpty { return ip }
        return runtimeConfig?.ips?.first.map { String($0.split(separator: "/").first ?? "") }
    }
}

/// A CNI result (SPEC section 5): in 0.4.0 each address names its IP version, in 1.x it does not.
public struct CNIResult: Codable, Equatable, Sendable {
    public var cniVersion: String
    public var interfaces: [Interface]
    public var ips: [Address]
    public var routes: [Route]
    public var dns: DNS

    public struct Interface: Codable, Equatable, Sendable {
        public var name: String
        public var mac: String
        public var sandbox: String?
        public init(name: String, mac: String, sandbox: String?) {
            self.name = name
            self.mac = mac
            self.sandbox = sandbox
        }
    }

    public struct Address: Codable, Equatable, Sendable {
        /// "4" in results of 0.x, absent in 1.x.
        public var version: String?
        public var address: String
        public var gateway: String?
        public var interface: Int?
    }

    public struct Route: Codable, Equatable, Sendable {
        public var dst: String
        public var gw: String?
    }

    public struct DNS: Codable, Equatable, Sendable {
        public var nameservers: [String]?
        public var domain: String?
        public var search: [String]?
        public var options: [String]?
    }

    public init(version: String, attachment: CNIAttachmentResult, ifname: String, netns: String) {
        cniVersion = version
        interfaces = [Interface(name: ifname, mac: attachment.mac, sandbox: netns)]
        ips = [Address(version: version.hasPrefix("0.") ? "4" : nil, address: "\(attachment.ip)/\(attachment.prefixLength)",
                       gateway: attachment.gateway, interface: 0)]
        routes = [Route(dst: "0.0.0.0/0", gw: attachment.gateway)]
        dns = DNS(nameservers: [attachment.nameserver], domain: nil, search: attachment.search, options: nil)
    }
}

// MARK: The agent's CNI calls (its unix socket, /v1/cni/…)

/// ADD, as the plugin asks the agent.
/// The `bandwidth` capability as runtimes send it (Kubernetes' bandwidth annotations, the reference
/// `bandwidth` plugin's keys): rates in bits per second, bursts in bits; ingress is towards the container.
/// A direction whose rate is absent or 0 is not limited.
public struct CNIBandwidth: Codable, Equatable, Sendable {
    public var ingressRate: Int?
    public var ingressBurst: Int?
    public var egressRate: Int?
    public var egressBurst: Int?

    public init(ingressRate: Int? = nil, ingressBurst: Int? = nil, egressRate: Int? = nil, egressBurst: Int? = nil) {
        self.ingressRate = ingressRate; self.ingressBurst = ingressBurst; self.egressRate = egressRate; self.egressBurst = egressBurst
    }

    /// The first key with a negative value, if any.
    var negativeKey: String? {
        [("ingressRate", ingressRate), ("ingressBurst", ingressBurst), ("egressRate", egressRate), ("egressBurst", egressBurst)]
            .first { ($0.1 ?? 0) < 0 }?.0
    }
}

public struct CNIAddRequest: Codable, Equatable, Sendable {
    public var network: String
    public var subnet: String
    public var containerID: String
    public var netns: String
    public var ifname: String
    public var name: String
    public var ip: String?
    public var profile: String?
    public var user: String?
    public var bandwidth: CNIBandwidth?

    public init(network: String, subnet: String, containerID: String, netns: String, ifname: String, name: String,
                ip: String? = nil, profile: String? = nil, user: String? = nil, bandwidth: CNIBandwidth? = nil) {
        self.network = network; self.subnet = subnet; self.containerID = containerID; self.netns = netns
        self.ifname = ifname; self.name = name; self.ip = ip; self.profile = profile; self.user = user; self.bandwidth = bandwidth
    }
}

/// What ADD made, for the result: the interface's address, MAC, gateway and resolver.
public struct CNIAttachmentResult: Codable, Equatable, Sendable {
    public var endpoint: String
    public var ip: String
    public var prefixLength: Int
    public var gateway: String
    public var mac: String
    public var nameserver: String
    public var search: [String]

    public init(endpoint: String, ip: String, prefixLength: Int, gateway: String, mac: String, nameserver: String, search: [String]) {
        self.endpoint = endpoint; self.ip = ip; self.prefixLength = prefixLength; self.gateway = gateway
        self.mac = mac; self.nameserver = nameserver; self.search = search
    }
}

/// DEL and CHECK of one attachment; CHECK also names the namespace and what ADD answered.
public struct CNIAttachmentRequest: Codable, Equatable, Sendable {
    public var network: String
    public var containerID: String
    public var ifname: String
    public var netns: String?

    public init(network: String, containerID: String, ifname: String, netns: String? = nil) {
        self.network = network; self.containerID = containerID; self.ifname = ifname; self.netns = netns
    }
}

/// GC: the attachments of a network that are still valid; the others are removed.
public struct CNIGarbageRequest: Codable, Equatable, Sendable {
    public var network: String
    public var valid: [CNIAttachment]

    public init(network: String, valid: [CNIAttachment]) {
        self.network = network
        self.valid = valid
    }
}

/// The endpoints GC removed.
public struct CNIGarbageReply: Codable, Equatable, Sendable {
    public var removed: [String]
    public init(removed: [String]) { self.removed = removed }
}

/// Where DELs that could not reach the agent wait for it: beside its socket (`agent.sock` → `agent.cni/`).
public func cniPendingDirectory(agentSocket: String) -> String {
    (agentSocket.hasSuffix(".sock") ? String(agentSocket.dropLast(5)) : agentSocket) + ".cni"
}
