import TrellisModel

/// One end of a flow to explain: an endpoint, or an address range that is none.
public struct FlowEnd: Sendable {
    public var range: FieldRange
    public var endpoint: Endpoint?
    public var network: IPv4Network

    public init(endpoint: Endpoint) {
        self.endpoint = endpoint
        network = IPv4Network(single: endpoint.ip)
        range = FieldRange(network)
    }

    public init(network: IPv4Network) {
        self.network = network
        range = FieldRange(network)
    }

    var description: FlowEndDescription {
        FlowEndDescription(endpoint: endpoint?.path, address: endpoint.map { "\($0.ip)" } ?? "\(network)", subnet: endpoint?.subnet,
                           profile: endpoint?.profile, floatingIP: endpoint?.floatingIP)
    }
}

extension PolicyProgram {
    /// The verdict on a new flow from `from` to `to` and the stages that reached it, in the ruleset's order.
    /// `port` is the destination port of TCP and UDP (nil for ICMP). For an address range, a rule decides only
    /// if it covers the whole range.
    public func explain(from: FlowEnd, to: FlowEnd, protocol proto: RuleProtocol, port: Int?) -> PolicyExplanation {
        var steps: [PolicyStep] = []
        func finish(_ verdict: RuleAction) -> PolicyExplanation {
            PolicyExplanation(from: from.description, to: to.description, protocol: proto, port: port, verdict: verdict, steps: steps)
        }
        let portField = port.map { FieldRange.exactly(UInt32($0)) } ?? .anyPort
        let l4 = [FieldRange.of(proto), portField]

        // Routing: two domains share no route, and the outside reaches a domain only through floating IPs.
        if let a = from.endpoint, let b = to.endpoint, a.domain != b.domain {
            steps.append(PolicyStep(stage: .routing, outcome: .drop,
                                    detail: "\(a.path) and \(b.path) are in different domains, which share no route"))
            return finish(.deny)
        }
        let fromOutside = isOutside(from), toOutside = isOutside(to)
        if fromOutside || toOutside {
            let inside = fromOutside ? to : from, outside = fromOutside ? from : to
            guard let floating = inside.endpoint?.floatingIP else {
                steps.append(PolicyStep(stage: .routing, outcome: .drop, detail: "\(outside.network) is outside the domain, "
                                        + "which only floating IPs connect to; \(inside.description.label) has none"))
                return finish(.deny)
            }
            steps.append(PolicyStep(stage: .routing, outcome: .pass, detail: fromOutside
                ? "\(outside.network) reaches \(inside.description.label) at its floating IP \(floating)"
                : "\(inside.description.label) reaches \(outside.network) from its floating IP \(floating)"))
        }

        // The ports' ACLs: the source's egress rules, then the destination's ingress rules.
        for (end, direction, remote) in [(from, RuleDirection.egress, to.range), (to, .ingress, from.range)] {
            let stage: PolicyStep.Stage = direction == .egress ? .sourceProfile : .destinationProfile
            guard let endpoint = end.endpoint else { continue }
            guard let path = endpoint.profile else {
                steps.append(PolicyStep(stage: stage, outcome: .notApplicable, detail: "\(endpoint.path) has no profile"))
                continue
            }
            guard let acl = profileACLs[path] else {
                steps.append(PolicyStep(stage: stage, outcome: .notApplicable, object: path, detail: "profile \(path) has no rules"))
                continue
            }
            let runs = direction == .egress ? acl.egress : acl.ingress
            guard let match = runs.firstMatch([remote] + l4) else {
                steps.append(PolicyStep(stage: stage, outcome: .noMatch, object: path,
                                        detail: "no \(direction.rawValue) rule of profile \(path) matches; the flow goes on"))
                continue
            }
            let rule = acl.profile.rules[match.source]
            let denied = match.verdict == .deny
            steps.append(PolicyStep(stage: stage, outcome: denied ? .drop : .pass, object: path, rule: rule.description,
                                    ruleNumber: match.source + 1, detail: "rule \(match.source + 1) of profile \(path) "
                                    + (denied ? "drops it" : "allows it on")))
            if denied { return finish(.deny) }
        }

        // Inside one subnet everything flows.
        if let subnet = subnets.first(where: { FieldRange($0.cidr).contains(from.range) && FieldRange($0.cidr).contains(to.range) }) {
            steps.append(PolicyStep(stage: .sameSubnet, outcome: .accept, object: subnet.path,
                                    detail: "both ends are in subnet \(subnet.path) (\(subnet.cidr))"))
            return finish(.allow)
        }
        if fromOutside || toOutside {
            steps.append(PolicyStep(stage: .floatingIP, outcome: .accept, detail: "flows through a floating IP are accepted"))
            return finish(.allow)
        }

        // The network policies, first match in the order of their paths.
        let match = policyRuns.firstMatch([from.range, to.range] + l4)
        let decidingPolicy = match.map { policyRules[$0.source].policy }
        for (index, policy) in policies.enumerated() {
            if let match, index == decidingPolicy {
                let number = policyRules[match.source].rule + 1
                let denied = match.verdict == .deny
                let before = number == 2 ? "; rule 1 does not match" : number > 2 ? "; rules 1–\(number - 1) do not match" : ""
                steps.append(PolicyStep(stage: .networkPolicy, outcome: denied ? .drop : .accept, object: policy.path,
                                        rule: policy.rules[number - 1].description, ruleNumber: number,
                                        detail: "rule \(number) of policy \(policy.path) \(denied ? "drops" : "accepts") it\(before)"))
                return finish(match.verdict)
            }
            steps.append(PolicyStep(stage: .networkPolicy, outcome: .noMatch, object: policy.path, detail: policy.rules.count == 1
                                    ? "the rule of policy \(policy.path) does not match"
                                    : "none of the \(policy.rules.count) rules of policy \(policy.path) matches"))
        }
        steps.append(PolicyStep(stage: .isolation, outcome: .drop,
                                detail: "no network policy allows it, and subnets are isolated from each other by default"))
        return finish(.deny)
    }

    /// Whether an end lies outside every subnet of the domain.
    func isOutside(_ end: FlowEnd) -> Bool {
        end.endpoint == nil && !subnets.contains { FieldRange($0.cidr).intersects(end.range) }
    }
}
