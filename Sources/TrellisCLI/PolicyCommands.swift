import ArgumentParser
import Foundation
import TrellisClient
import TrellisModel

struct ProfileCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "profile", abstract: "Manage port profiles (ACL rules, rate limits, flow accounting).",
        subcommands: [Create.self, ListCommand<PortProfile>.self, ShowCommand<PortProfile>.self, Rule.self, DeleteCommand<PortProfile>.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a profile: trellis profile create acme/limited --egress-rate 10mbit.")
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

    struct Rule: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add or delete a profile's ACL rules.", subcommands: [Add.self, Del.self])

        struct Add: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Append a rule: trellis profile rule add acme/limited \"deny tcp port 22\".")
            @OptionGroup var connection: ConnectionOptions
            @Argument(help: ArgumentHelp("The profile.", valueName: "ENTERPRISE/PROFILE")) var path: String
            @Argument(help: "The rule.") var rule: String

            func run() async throws {
                let parsed = try ACLRule.parse(rule)
                try await editProfile(connection, path) { $0.append(parsed) }
            }
        }

        struct Del: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Delete a rule by its index (see profile show).")
            @OptionGroup var connection: ConnectionOptions
            @Argument(help: ArgumentHelp("The profile.", valueName: "ENTERPRISE/PROFILE")) var path: String
            @Argument(help: "The rule's index.") var index: Int

            func run() async throws {
                try await editProfile(connection, path) { rules in
                    guard rules.indices.contains(index) else { throw TrellisError.invalid("the profile has no rule \(index)") }
                    rules.remove(at: index)
                }
            }
        }
    }
}

/// Reads a profile, changes its rules and writes it back.
func editProfile(_ connection: ConnectionOptions, _ path: String, _ edit: (inout [ACLRule]) throws -> Void) async throws {
    let client = connection.client()
    var profile: PortProfile = try await client.get(try apiPath(.profile, path))
    try edit(&profile.rules)
    let body = ProfileUpdate(rules: profile.rules, egressRate: profile.egressRate, ingressRate: profile.ingressRate,
                             flowStats: profile.flowStats, description: profile.description)
    let made: PortProfile = try await client.put(try apiPath(.profile, path), body)
    for (index, rule) in made.rules.enumerated() { print("\(index)  \(rule)") }
}

struct PolicyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "policy", abstract: "Manage network policies joining subnets and zones.",
        subcommands: [Create.self, ListCommand<NetworkPolicy>.self, ShowCommand<NetworkPolicy>.self, Rule.self, DeleteCommand<NetworkPolicy>.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a policy: trellis policy create acme/app1/web-to-db.")
        @OptionGroup var connection: ConnectionOptions
        @OptionGroup var output: OutputOptions
        @Argument(help: ArgumentHelp("Its path.", valueName: "ENTERPRISE/DOMAIN/POLICY")) var path: String
        @Option(help: "A rule, e.g. \"allow tcp from acme/app1/web/red to acme/app1/db/green port 5432\" (repeatable).") var rule: [String] = []
        @Option(help: "A description.") var description: String?

        func run() async throws {
            let (domain, name) = try parentAndName(path, .policy)
            let body = PolicyCreate(domain: domain, name: name, rules: try rule.map(PolicyRule.parse), description: description)
            let made: NetworkPolicy = try await connection.client().post("/api/v1/policies", body)
            try output.show(made, fields: made.fields)
        }
    }

    struct Rule: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add or delete a policy's rules.", subcommands: [Add.self, Del.self])

        struct Add: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Append a rule: trellis policy rule add E/D/P \"allow tcp from X to Y port 5432\".")
            @OptionGroup var connection: ConnectionOptions
            @Argument(help: ArgumentHelp("The policy.", valueName: "ENTERPRISE/DOMAIN/POLICY")) var path: String
            @Argument(help: "The rule.") var rule: String

            func run() async throws {
                let parsed = try PolicyRule.parse(rule)
                try await editPolicy(connection, path) { $0.append(parsed) }
            }
        }

        struct Del: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Delete a rule by its index (see policy show).")
            @OptionGroup var connection: ConnectionOptions
            @Argument(help: ArgumentHelp("The policy.", valueName: "ENTERPRISE/DOMAIN/POLICY")) var path: String
            @Argument(help: "The rule's index.") var index: Int

            func run() async throws {
                try await editPolicy(connection, path) { rules in
                    guard rules.indices.contains(index) else { throw TrellisError.invalid("the policy has no rule \(index)") }
                    rules.remove(at: index)
                }
            }
        }
    }
}

/// Reads a policy, changes its rules and writes it back.
func editPolicy(_ connection: ConnectionOptions, _ path: String, _ edit: (inout [PolicyRule]) throws -> Void) async throws {
    let client = connection.client()
    var policy: NetworkPolicy = try await client.get(try apiPath(.policy, path))
    try edit(&policy.rules)
    let made: NetworkPolicy = try await client.put(try apiPath(.policy, path), PolicyUpdate(rules: policy.rules, description: policy.description))
    for (index, rule) in made.rules.enumerated() { print("\(index)  \(rule)") }
}
