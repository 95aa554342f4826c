/// Whether a rule lets traffic through.
public enum RuleAction: String, Codable, Sendable { case allow, deny }

/// The protocols rules match.
public enum RuleProtocol: String, Codable, Sendable { case tcp, udp, icmp, any

    /// Whether rules of this protocol may name ports.
    public var hasPorts: Bool { self == .tcp || self == .udp }
}

/// Traffic direction seen from the endpoint: `ingress` reaches it, `egress` leaves it.
public enum RuleDirection: String, Codable, Sendable { case ingress, egress }

/// An inclusive range of TCP/UDP ports; encodes as `"80"` or `"8000-8080"` and also decodes a number.
public struct PortRange: Hashable, Sendable, TextCodable {
    public let first: Int
    public let last: Int

    public init(_ first: Int, _ last: Int? = nil) throws {
        let last = last ?? first
        guard (1...65535).contains(first), (1...65535).contains(last) else {
            throw TrellisError.invalid("port \(first == last ? "\(first)" : "\(first)-\(last)") is outside 1-65535", field: "ports")
        }
        guard first <= last else { throw TrellisError.invalid("port range \(first)-\(last) ends before it starts", field: "ports") }
        self.first = first
        self.last = last
    }

    public static func parse(_ text: String) throws -> PortRange {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard (1...2).contains(parts.count), let first = Int(parts[0]), let last = Int(parts.last!) else {
            throw TrellisError.invalid("'\(text)' is not a port or port range (expected 80 or 8000-8080)", field: "ports")
        }
        return try PortRange(first, last)
    }

    public var description: String { first == last ? "\(first)" : "\(first)-\(last)" }

    public static func parseText(_ text: String) throws -> PortRange { try parse(text) }

    /// Also accepts a bare number, as people write ports.
    public init(from decoder: any Decoder) throws {
        if let number = try? decoder.singleValueContainer().decode(Int.self) {
            do {
                self = try PortRange(number)
            } catch let error as TrellisError {
                throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: error.message))
            }
        } else {
            self = try Self.parseTextValue(from: decoder)
        }
    }
}

/// One per-port ACL rule of a port profile: `deny tcp port 22`, `allow udp from 10.0.0.0/8 port 53 egress`.
public struct ACLRule: Hashable, Sendable, Codable, CustomStringConvertible {
    public var action: RuleAction
    public var direction: RuleDirection
    public var `protocol`: RuleProtocol
    /// The far end of the traffic as a CIDR; nil for any address.
    public var remote: String?
    public var ports: [PortRange]

    public init(action: RuleAction, direction: RuleDirection = .ingress, protocol: RuleProtocol,
                remote: String? = nil, ports: [PortRange] = []) {
        self.action = action
        self.direction = direction
        self.protocol = `protocol`
        self.remote = remote
        self.ports = ports
    }

    enum CodingKeys: String, CodingKey { case action, direction, `protocol`, remote, ports }

    /// An object, or the one-line form (`"deny tcp port 22"`).
    public init(from decoder: any Decoder) throws {
        if let line = try? decoder.singleValueContainer().decode(String.self) {
            self = try Self.parsed(line, decoder, ACLRule.parse)
            return
        }
        let c = try decoder.container(keyedBy: CodingKeys.self)
        action = try c.decode(RuleAction.self, forKey: .action)
        direction = try c.decodeIfPresent(RuleDirection.self, forKey: .direction) ?? .ingress
        self.protocol = try c.decodeIfPresent(RuleProtocol.self, forKey: .protocol) ?? .any
        remote = try c.decodeIfPresent(String.self, forKey: .remote)
        ports = try c.decodeIfPresent([PortRange].self, forKey: .ports) ?? []
    }

    /// Checks the rule's parts fit together; `field` prefixes the error's field.
    public func validate(field: String) throws {
        if let remote { _ = try IPv4Network.parse(remote, field: "\(field).remote") }
        if !ports.isEmpty && !self.protocol.hasPorts {
            throw TrellisError.invalid("\(field): ports need tcp or udp, not \(self.protocol.rawValue)", field: "\(field).ports")
        }
    }

    public var description: String {
        var words = [action.rawValue, self.protocol.rawValue, direction.rawValue]
        if let remote { words += [direction == .ingress ? "from" : "to", remote] }
        if !ports.isEmpty { words += ["port", ports.map(\.description).joined(separator: ",")] }
        return words.joined(separator: " ")
    }

    /// Parses the one-line form: `ACTION PROTOCOL [ingress|egress] [from|to CIDR] [port P[,P…]]`.
    public static func parse(_ line: String) throws -> ACLRule {
        var words = RuleWords(line)
        let action = try words.action()
        let proto = try words.protocolWord()
        var rule = ACLRule(action: action, protocol: proto)
        while let word = words.next() {
            switch word {
            case "ingress", "in": rule.direction = .ingress
            case "egress", "out": rule.direction = .egress
            case "from": rule.remote = try words.value(after: word); rule.direction = .ingress
            case "to": rule.remote = try words.value(after: word); rule.direction = .egress
            case "port", "ports": rule.ports = try words.ports()
            default: throw words.unexpected(word)
            }
        }
        try rule.validate(field: "rule")
        return rule
    }
}

/// One rule of a network policy: `allow tcp from acme/app1/web/red to acme/app1/db/green port 5432`.
/// `from` and `to` name a subnet path, a zone path, a CIDR, or `any`.
public struct PolicyRule: Hashable, Sendable, Codable, CustomStringConvertible {
    public var action: RuleAction
    public var `protocol`: RuleProtocol
    public var from: String
    public var to: String
    public var ports: [PortRange]

    public init(action: RuleAction, protocol: RuleProtocol, from: String, to: String, ports: [PortRange] = []) {
        self.action = action
        self.protocol = `protocol`
        self.from = from
        self.to = to
        self.ports = ports
    }

    enum CodingKeys: String, CodingKey { case action, `protocol`, from, to, ports }

    /// An object, or the one-line form (`"allow tcp from acme/app1/web to acme/app1/db port 5432"`).
    public init(from decoder: any Decoder) throws {
        if let line = try? decoder.singleValueContainer().decode(String.self) {
            self = try ACLRule.parsed(line, decoder, PolicyRule.parse)
            return
        }
        let c = try decoder.container(keyedBy: CodingKeys.self)
        action = try c.decode(RuleAction.self, forKey: .action)
        self.protocol = try c.decodeIfPresent(RuleProtocol.self, forKey: .protocol) ?? .any
        from = try c.decodeIfPresent(String.self, forKey: .from) ?? "any"
        to = try c.decodeIfPresent(String.self, forKey: .to) ?? "any"
        ports = try c.decodeIfPresent([PortRange].self, forKey: .ports) ?? []
    }

    public var description: String {
        var words = [action.rawValue, self.protocol.rawValue, "from", from, "to", to]
        if !ports.isEmpty { words += ["port", ports.map(\.description).joined(separator: ",")] }
        return words.joined(separator: " ")
    }

    /// Parses `ACTION PROTOCOL [from X] [to Y] [port P[,P…]]`; a missing `from` or `to` means `any`.
    public static func parse(_ line: String) throws -> PolicyRule {
        var words = RuleWords(line)
        var rule = PolicyRule(action: try words.action(), protocol: try words.protocolWord(), from: "any", to: "any")
        while let word = words.next() {
            switch word {
            case "from": rule.from = try words.value(after: word)
            case "to": rule.to = try words.value(after: word)
            case "port", "ports": rule.ports = try words.ports()
            default: throw words.unexpected(word)
            }
        }
        if !rule.ports.isEmpty && !rule.protocol.hasPorts {
            throw TrellisError.invalid("rule: ports need tcp or udp, not \(rule.protocol.rawValue)", field: "rule")
        }
        return rule
    }
}

extension ACLRule {
    /// A rule parsed from its one-line form inside a JSON body, a parse failure reported at the rule's path.
    static func parsed<Rule>(_ line: String, _ decoder: any Decoder, _ parse: (String) throws -> Rule) throws -> Rule {
        do {
            return try parse(line)
        } catch let error as TrellisError {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: error.message))
        }
    }
}

/// The tokenizer shared by the two rule grammars.
struct RuleWords {
    private var words: [String]
    private let line: String

    init(_ line: String) {
        self.line = line
        words = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map { $0.lowercased() }.reversed()
    }

    mutating func next() -> String? { words.popLast() }

    mutating func action() throws -> RuleAction {
        guard let word = next(), let action = RuleAction(rawValue: word) else {
            throw TrellisError.invalid("rule '\(line)' must start with allow or deny", field: "rule")
        }
        return action
    }

    mutating func protocolWord() throws -> RuleProtocol {
        guard let word = next(), let proto = RuleProtocol(rawValue: word) else {
            throw TrellisError.invalid("rule '\(line)': expected a protocol (tcp, udp, icmp or any) after the action", field: "rule")
        }
        return proto
    }

    mutating func value(after keyword: String) throws -> String {
        guard let value = next() else { throw TrellisError.invalid("rule '\(line)': '\(keyword)' needs a value", field: "rule") }
        return value
    }

    mutating func ports() throws -> [PortRange] {
        let list = try value(after: "port")
        do {
            return try list.split(separator: ",").map { try PortRange.parse(String($0)) }
        } catch let error as TrellisError {
            throw TrellisError.invalid("rule '\(line)': \(error.message)", field: "rule")
        }
    }

    func unexpected(_ word: String) -> TrellisError {
        TrellisError.invalid("rule '\(line)': unexpected '\(word)'", field: "rule")
    }
}

/// A rate limit in bits per second with a burst in bytes.
public struct RateLimit: Hashable, Sendable, Codable {
    public var bitsPerSecond: Int
    public var burstBytes: Int?

    public init(bitsPerSecond: Int, burstBytes: Int? = nil) {
        self.bitsPerSecond = bitsPerSecond
        self.burstBytes = burstBytes
    }

    public func validate(field: String) throws {
        guard bitsPerSecond > 0 else {
            throw TrellisError.invalid("\(field).bitsPerSecond: a rate must be above 0 (omit the limit for none)",
                                       field: "\(field).bitsPerSecond")
        }
        if let burstBytes, burstBytes <= 0 {
            throw TrellisError.invalid("\(field).burstBytes: a burst must be above 0", field: "\(field).burstBytes")
        }
        if let burstBytes, burstBytes > Self.largestBurst(bitsPerSecond: bitsPerSecond) {
            throw TrellisError.invalid("\(field).burstBytes: at most \(Self.largestBurst(bitsPerSecond: bitsPerSecond)) bytes "
                                       + "(one second at the rate, or 16000)", field: "\(field).burstBytes")
        }
    }

    /// The largest burst a limit may have: one second of traffic at its rate, or 16 kB for slow rates
    /// (far more is beyond what a token bucket filter can hold, and would break every port's shaping).
    public static func largestBurst(bitsPerSecond: Int) -> Int { max(16_000, bitsPerSecond / 8) }

    /// Parses tc-style rates: `10mbit`, `1gbit`, `500kbit`, `8000bit` or a bare number of bits/s.
    public static func parseRate(_ text: String, field: String) throws -> Int {
        let lower = text.lowercased()
        let units: [(String, Int)] = [("gbit", 1_000_000_000), ("mbit", 1_000_000), ("kbit", 1_000), ("bit", 1), ("", 1)]
        for (suffix, factor) in units where lower.hasSuffix(suffix) {
            guard let number = Double(lower.dropLast(suffix.count)), number > 0, number * Double(factor) < 1e15 else { break }
            return Int(number * Double(factor))
        }
        throw TrellisError.invalid("\(field): '\(text)' is not a rate above 0 (e.g. 10mbit, 1gbit, 500kbit)", field: field)
    }
}
