import ArgumentParser
import Foundation
import TrellisClient
import TrellisModel

/// An object whose rule list the CLI edits one line at a time: read it, change its rules, put it back.
protocol RuleListResource: Presentable {
    associatedtype Rule: CustomStringConvertible & Sendable
    associatedtype Replacement: Encodable
    static var ruleExample: String { get }
    static func parseRule(_ line: String) throws -> Rule
    var rules: [Rule] { get set }
    /// The body of the `PUT` that replaces the object with its edited rules.
    var replacement: Replacement { get }
}

extension PortProfile: RuleListResource {
    static let ruleExample = "deny tcp port 22"
    static func parseRule(_ line: String) throws -> ACLRule { try ACLRule.parse(line) }
    var replacement: ProfileUpdate {
        ProfileUpdate(rules: rules, egressRate: egressRate, ingressRate: ingressRate, flowStats: flowStats, description: description)
    }
}

extension NetworkPolicy: RuleListResource {
    static let ruleExample = "allow tcp from acme/app1/web/red to acme/app1/db/green port 5432"
    static func parseRule(_ line: String) throws -> PolicyRule { try PolicyRule.parse(line) }
    var replacement: PolicyUpdate { PolicyUpdate(rules: rules, description: description) }
}

/// `rule add` and `rule del` for any object with a rule list.
struct RuleCommand<R: RuleListResource>: AsyncParsableCommand {
    static var configuration: CommandConfiguration {
        CommandConfiguration(commandName: "rule", abstract: "Add or delete a \(R.kind.rawValue)'s rules.",
                             subcommands: [Add.self, Del.self])
    }

    /// Reads the object, changes its rules and writes it back; prints the rules it then has.
    static func edit(_ connection: ConnectionOptions, _ path: String, _ change: (inout [R.Rule]) throws -> Void) async throws {
        let client = try await connection.client()
        var object: R = try await client.get(try apiPath(R.kind, path))
        try change(&object.rules)
        let made: R = try await client.put(try apiPath(R.kind, path), object.replacement)
        for (index, rule) in made.rules.enumerated() { print("\(index)  \(rule)") }
    }

    struct Add: AsyncParsableCommand {
        static var configuration: CommandConfiguration {
            CommandConfiguration(abstract: "Append a rule, e.g. \"\(R.ruleExample)\".")
        }
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: ArgumentHelp("The \(R.kind.rawValue).", valueName: R.kind.pathShape)) var path: String
        @Argument(help: "The rule.") var rule: String

        func run() async throws {
            let parsed = try R.parseRule(rule)
            try await RuleCommand.edit(connection, path) { $0.append(parsed) }
        }
    }

    struct Del: AsyncParsableCommand {
        static var configuration: CommandConfiguration {
            CommandConfiguration(abstract: "Delete a rule by its index (see \(R.kind.rawValue) show).")
        }
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: ArgumentHelp("The \(R.kind.rawValue).", valueName: R.kind.pathShape)) var path: String
        @Argument(help: "The rule's index.") var index: Int

        func run() async throws {
            try await RuleCommand.edit(connection, path) { rules in
                guard rules.indices.contains(index) else { throw TrellisError.invalid("the \(R.kind.rawValue) has no rule \(index)") }
                rules.remove(at: index)
            }
        }
    }
}

struct ProfileCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "profile", abstract: "Manage port profiles (ACL rules, rate limits, flow accounting).",
        subcommands: [Create.self, ListCommand<PortProfile>.self, ShowCommand<PortProfile>.self, RuleCommand<PortProfile>.self,
                      DeleteCommand<PortProfile>.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a profile: trellis profile create acme/limited --egress-rate 10mbit.")
        @OptionGroup var connection: ConnectionOptions
        @OptionGroup var output: OutputOptions
        @Argument(help: ArgumentHelp("Its path.", valueName: "ENTERPRISE/PROFILE")) var path: String
        @Option(help: "Egress rate limit, e.g. 10mbit.") var egressRate: String?
        @Option(help: "Ingress rate limit, e.g. 10mbit.") var ingressRate: String?
        @Flag(help: "Account flows of its ports.") var flowStats = false
        @Option(help: "An ACL rule, e.g. \"deny tcp port 22\" (repeatable).") var rule: [String] = []
        @Option(help: "A description.") var description: String?

        func run() async throws {
            let (enterprise, name) = try parentAndName(path, .profile)
            let body = ProfileCreate(
                enterprise: enterprise, name: name, rules: try rule.map(ACLRule.parse),
                egressRate: try egressRate.map { RateLimit(bitsPerSecond: try RateLimit.parseRate($0, field: "egress-rate")) },
                ingressRate: try ingressRate.map { RateLimit(bitsPerSecond: try RateLimit.parseRate($0, field: "ingress-rate")) },
                flowStats: flowStats, description: description)
            let made: PortProfile = try await connection.client().post("/api/v1/profiles", body)
            try output.show(made, fields: made.fields)
        }
    }
}

struct PolicyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "policy", abstract: "Manage network policies joining subnets and zones.",
        subcommands: [Create.self, ListCommand<NetworkPolicy>.self, ShowCommand<NetworkPolicy>.self, RuleCommand<NetworkPolicy>.self,
                      DeleteCommand<NetworkPolicy>.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a policy: trellis policy create acme/app1/web-to-db.")
        @OptionGroup var connection: ConnectionOptions
        @OptionGroup var output: OutputOptions
        @Argument(help: ArgumentHelp("Its path.", valueName: "ENTERPRISE/DOMAIN/POLICY")) var path: String
        @Option(help: "A rule, e.g. \"allow tcp from acme/app1/web/red to acme/app1/db/green port 5432\" (repeatable).")
        var rule: [String] = []
        @Option(help: "A description.") var description: String?

        func run() async throws {
            let (domain, name) = try parentAndName(path, .policy)
            let body = PolicyCreate(domain: domain, name: name, rules: try rule.map(PolicyRule.parse), description: description)
            let made: NetworkPolicy = try await connection.client().post("/api/v1/policies", body)
            try output.show(made, fields: made.fields)
        }
    }
}

struct ExplainCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "explain",
        abstract: "Show which rule decides a new flow between two ends, and every stage it passes.",
        discussion: "Each end is an endpoint's path, an endpoint's address, or a CIDR. The answer is computed from the rules the "
            + "agents load: the source's egress ACL, the destination's ingress ACL, the subnet, floating IPs, the network "
            + "policies (first match), and isolation.")
    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions
    @Argument(help: ArgumentHelp("Where the flow starts.", valueName: "FROM")) var from: String
    @Argument(help: ArgumentHelp("Where it goes.", valueName: "TO")) var to: String
    @Argument(help: ArgumentHelp("tcp/PORT, udp/PORT or icmp.", valueName: "SERVICE")) var service: String
    @Flag(help: ArgumentHelp("Also send one real packet from FROM (a container endpoint) with nftables tracing on, through the "
        + "agent of its host, and show what the kernel did next to the computed answer; a disagreement exits with status 3."))
    var verify = false

    func run() async throws {
        let words = service.split(separator: "/", maxSplits: 1).map(String.init)
        let port = words.count == 2 ? words[1] : nil
        let answer: PolicyExplanation, kernel: ProbeResult?
        if verify {
            guard port.map({ Int($0) != nil }) ?? true else {
                throw TrellisError.invalid("port: '\(port ?? "")' is not a port number", field: "port")
            }
            let verified: VerifiedExplanation = try await connection.client().post(
                "/api/v1/explain/verify", FlowQuery(from: from, to: to, protocol: words.first ?? service, port: port.flatMap { Int($0) }))
            (answer, kernel) = (verified.explanation, verified.kernel)
        } else {
            var query: [(String, String?)] = [("from", from), ("to", to), ("protocol", words.first ?? service)]
            if let port { query.append(("port", port)) }
            answer = try await connection.client().get("/api/v1/explain" + ControllerClient.query(query))
            kernel = nil
        }
        let agrees = kernel.map { $0.verdict == answer.verdict }
        if output.output == .json {
            if let kernel { try printJSON(VerifiedExplanation(explanation: answer, kernel: kernel)) } else { try printJSON(answer) }
        } else {
            print("\(answer.from.label) → \(answer.to.label) \(service): \(answer.verdict == .allow ? "ALLOWED" : "DENIED")")
            printTable(answer.steps.enumerated().map { index, step in
                let rule = step.rule.map { " [\($0)]" } ?? ""
                return ["\(index + 1).", step.stage.rawValue, step.outcome.rawValue, step.detail + rule]
            })
            if let kernel {
                let answered = kernel.answered.map { $0 ? ", answered" : ", no answer" } ?? ""
                print("kernel: \(kernel.verdict == .allow ? "ALLOWED" : "DENIED")\(answered) (one traced packet)")
                printTable(kernel.steps.enumerated().map { index, step in
                    ["\(index + 1).", "\(step.family) \(step.table) \(step.chain)", step.handle.map { "handle \($0)" } ?? step.kind,
                     step.verdict, step.rule ?? ""]
                })
            }
        }
        if agrees == false {
            FileHandle.standardError.write(Data(
                "THE KERNEL DISAGREES: computed \(answer.verdict.rawValue), the kernel did \(kernel!.verdict.rawValue)\n".utf8))
            throw ExitCode(3)
        }
    }
}
