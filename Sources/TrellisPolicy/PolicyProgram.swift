import TrellisModel

/// The forwarding decisions of one domain, compiled: each port profile's ACLs and the domain's network
/// policies as first-match rule runs, the subnets, and the floating IPs. The agent writes its nftables
/// ruleset from it (`FirewallRuleset`) and the controller explains flows with it, so the two cannot
/// disagree on which rule decides.
///
/// A new flow meets, in order: the source port's egress ACL, the destination port's ingress ACL (a deny
/// drops, an allow lets it on), the same-subnet accept, the floating-IP accepts, the network policies
/// (first match), and isolation (drop).
public struct PolicyProgram: Sendable {
    /// One profile's ACL rules, by direction.
    public struct ProfileACL: Sendable {
        public var profile: PortProfile
        public var egress = RuleRuns()
        public var ingress = RuleRuns()
    }

    public let subnets: [DesiredSubnet]
    public let floatingIPs: [FloatingIPTranslation]
    /// Profiles with rules, by path.
    public let profileACLs: [String: ProfileACL]
    public let policies: [NetworkPolicy]
    /// The domain's policy rules in one first-match order; a source is an index into `policyRules`.
    public let policyRuns: RuleRuns
    public let policyRules: [(policy: Int, rule: Int)]

    public init(domain: DesiredDomain, profiles: [PortProfile], floatingIPs: [FloatingIPTranslation] = []) {
        subnets = domain.subnets.sorted { $0.path < $1.path }
        self.floatingIPs = floatingIPs.sorted { $0.floating < $1.floating }
        var acls: [String: ProfileACL] = [:]
        for profile in profiles where !profile.rules.isEmpty {
            var acl = ProfileACL(profile: profile)
            for (index, rule) in profile.rules.enumerated() {
                let remote = rule.remote.flatMap { try? IPv4Network.parse($0, field: nil) }.map(FieldRange.init) ?? .anyAddress
                let elements = SetElement.of([[remote]], rule.protocol, rule.ports, addressFields: 1)
                if rule.direction == .egress { acl.egress.add(elements, rule.action, source: index) }
                else { acl.ingress.add(elements, rule.action, source: index) }
            }
            acls[profile.path] = acl
        }
        profileACLs = acls
        policies = domain.policies.sorted { $0.path < $1.path }
        var runs = RuleRuns()
        var sources: [(policy: Int, rule: Int)] = []
        for (policyIndex, policy) in policies.enumerated() {
            for (ruleIndex, rule) in policy.rules.enumerated() {
                let from = Self.networks(rule.from, in: subnets), to = Self.networks(rule.to, in: subnets)
                let pairs = from.flatMap { source in to.map { [FieldRange(source), FieldRange($0)] } }
                runs.add(SetElement.of(pairs, rule.protocol, rule.ports, addressFields: 2), rule.action, source: sources.count)
                sources.append((policyIndex, ruleIndex))
            }
        }
        policyRuns = runs
        policyRules = sources
    }

    /// The networks a policy rule's `from` or `to` names: any, a CIDR, a zone's subnets, or a subnet.
    public static func networks(_ reference: String, in subnets: [DesiredSubnet]) -> [IPv4Network] {
        if reference == "any" { return [IPv4Network(network: IPv4Address(0), prefixLength: 0)!] }
        if let network = try? IPv4Network.parse(reference, field: nil) { return [network] }
        return subnets.filter { $0.path == reference || $0.path.hasPrefix(reference + "/") }.map(\.cidr)
    }
}
