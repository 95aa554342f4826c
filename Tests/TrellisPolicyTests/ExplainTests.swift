import Foundation
import Testing
import TrellisModel
import TrellisPolicy

/// Each stage of the decision path, on a domain with two zones: web/red 10.1.1.0/24 and db/green 10.1.2.0/24.
@Suite struct ExplainTests {
    let now = Date(timeIntervalSince1970: 0)

    func subnet(_ path: String, _ cidr: String) -> DesiredSubnet {
        let network = try! IPv4Network.parse(cidr)
        return DesiredSubnet(path: path, cidr: network, gateway: IPv4Address(network.network.value + 1),
                             gatewayMAC: MACAddress("02:00:00:00:00:01")!,
                             vni: 100, dhcp: false, remoteVTEPs: [])
    }

    func endpoint(_ name: String, _ subnet: String, _ ip: String, profile: String? = nil, domain: String = "acme/app1",
                  floating: String? = nil) -> Endpoint {
        var endpoint = Endpoint(id: Int.random(in: 1...1000), path: "\(subnet)/\(name)", name: name, subnet: subnet, domain: domain,
                                enterprise: "acme", kind: .container, ip: IPv4Address(ip)!, mac: MACAddress("02:00:00:00:00:09")!,
                                state: .up, externalIds: [:], revision: 1, createdAt: now)
        endpoint.profile = profile
        endpoint.floatingIP = floating.map { IPv4Address($0)! }
        return endpoint
    }

    func policy(_ name: String, _ rules: String...) -> NetworkPolicy {
        NetworkPolicy(path: "acme/app1/\(name)", name: name, domain: "acme/app1", rules: rules.map { try! PolicyRule.parse($0) },
                      revision: 1, createdAt: now)
    }

    func profile(_ name: String, _ rules: String...) -> PortProfile {
        PortProfile(path: "acme/\(name)", name: name, enterprise: "acme", rules: rules.map { try! ACLRule.parse($0) }, flowStats: false,
                    revision: 1, createdAt: now)
    }

    func program(_ policies: [NetworkPolicy] = [], profiles: [PortProfile] = [], floating: [Endpoint] = []) -> PolicyProgram {
        let domain = DesiredDomain(path: "acme/app1", id: 1, subnets: [subnet("acme/app1/web/red", "10.1.1.0/24"),
                                                                       subnet("acme/app1/db/green", "10.1.2.0/24")], policies: policies)
        return PolicyProgram(domain: domain, profiles: profiles,
                             floatingIPs: floating.map { FloatingIPTranslation(floating: $0.floatingIP!, endpoint: $0.ip) })
    }

    var web: Endpoint { endpoint("web1", "acme/app1/web/red", "10.1.1.10") }
    var web2: Endpoint { endpoint("web2", "acme/app1/web/red", "10.1.1.11") }
    var db: Endpoint { endpoint("db1", "acme/app1/db/green", "10.1.2.10") }

    @Test func oneSubnetFlowsFreely() {
        let answer = program().explain(from: FlowEnd(endpoint: web), to: FlowEnd(endpoint: web2), protocol: .tcp, port: 80)
        #expect(answer.verdict == .allow)
        #expect(answer.steps.map(\.stage) == [.sourceProfile, .destinationProfile, .sameSubnet])
        #expect(answer.steps.map(\.outcome) == [.notApplicable, .notApplicable, .accept])
        #expect(answer.deciding?.object == "acme/app1/web/red")
    }

    @Test func subnetsAreIsolatedByDefault() {
        let answer = program().explain(from: FlowEnd(endpoint: web), to: FlowEnd(endpoint: db), protocol: .tcp, port: 5432)
        #expect(answer.verdict == .deny && answer.deciding?.stage == .isolation)
    }

    @Test func theFirstMatchingPolicyRuleDecidesAndTheOnesBeforeItAreNamed() {
        let policies = [
            policy("a-web", "allow tcp from acme/app1/web to acme/app1/db port 80"),
            policy("b-db", "allow udp from acme/app1/web to acme/app1/db port 5432", "deny tcp from 10.1.1.10/32 to any port 5000-6000",
                   "allow tcp from acme/app1/web/red to acme/app1/db/green port 5432"),
        ]
        let answer = program(policies).explain(from: FlowEnd(endpoint: web), to: FlowEnd(endpoint: db), protocol: .tcp, port: 5432)
        #expect(answer.verdict == .deny)
        #expect(answer.steps.suffix(2).map(\.outcome) == [.noMatch, .drop])
        #expect(answer.deciding?.object == "acme/app1/b-db" && answer.deciding?.ruleNumber == 2)
        #expect(answer.deciding?.rule == "deny tcp from 10.1.1.10/32 to any port 5000-6000")
        let other = program(policies).explain(from: FlowEnd(endpoint: web2), to: FlowEnd(endpoint: db), protocol: .tcp, port: 5432)
        #expect(other.verdict == .allow && other.deciding?.ruleNumber == 3, "web2 is not 10.1.1.10: rule 3 accepts it")
        let icmp = program(policies).explain(from: FlowEnd(endpoint: web2), to: FlowEnd(endpoint: db), protocol: .icmp, port: nil)
        #expect(icmp.verdict == .deny && icmp.deciding?.stage == .isolation, "no rule names ICMP")
        let any = program([policy("p", "allow any from acme/app1/web to acme/app1/db")])
            .explain(from: FlowEnd(endpoint: web2), to: FlowEnd(endpoint: db), protocol: .icmp, port: nil)
        #expect(any.verdict == .allow && any.deciding?.ruleNumber == 1)
    }

    @Test func portACLsComeFirstAndAnAllowLetsTheFlowOn() {
        let locked = profile("locked", "allow tcp egress to 10.1.2.0/24 port 5432", "deny any egress")
        let guarded = profile("guarded", "deny tcp ingress from 10.1.1.11/32 port 5432", "allow tcp ingress port 5432")
        var source = web, source2 = web2, target = db
        source.profile = "acme/locked"; source2.profile = "acme/locked"; target.profile = "acme/guarded"
        let compiled = program([policy("p", "allow tcp from acme/app1/web to acme/app1/db port 5432")], profiles: [locked, guarded])

        let allowed = compiled.explain(from: FlowEnd(endpoint: source), to: FlowEnd(endpoint: target), protocol: .tcp, port: 5432)
        #expect(allowed.verdict == .allow)
        #expect(allowed.steps.map(\.outcome) == [.pass, .pass, .accept])
        #expect(allowed.steps[0].ruleNumber == 1 && allowed.steps[1].ruleNumber == 2 && allowed.steps[1].object == "acme/guarded")

        let egressDenied = compiled.explain(from: FlowEnd(endpoint: source), to: FlowEnd(endpoint: target), protocol: .tcp, port: 22)
        #expect(egressDenied.verdict == .deny && egressDenied.deciding?.stage == .sourceProfile && egressDenied.deciding?.ruleNumber == 2)
        #expect(egressDenied.steps.count == 1, "nothing after a drop")

        let ingressDenied = compiled.explain(from: FlowEnd(endpoint: source2), to: FlowEnd(endpoint: target), protocol: .tcp, port: 5432)
        #expect(ingressDenied.verdict == .deny && ingressDenied.deciding?.stage == .destinationProfile)
        #expect(ingressDenied.deciding?.rule == "deny tcp ingress from 10.1.1.11/32 port 5432")
    }

    @Test func theOutsideComesInOnlyThroughAFloatingIP() throws {
        let outside = FlowEnd(network: try IPv4Network.parse("203.0.113.0/24"))
        let plain = program().explain(from: outside, to: FlowEnd(endpoint: web), protocol: .tcp, port: 80)
        #expect(plain.verdict == .deny && plain.deciding?.stage == .routing)

        let exposed = endpoint("web1", "acme/app1/web/red", "10.1.1.10", profile: "acme/closed", floating: "198.51.100.7")
        let compiled = program(floating: [exposed])
        let answer = compiled.explain(from: outside, to: FlowEnd(endpoint: exposed), protocol: .tcp, port: 80)
        #expect(answer.verdict == .allow && answer.deciding?.stage == .floatingIP)
        #expect(answer.steps[0].detail.contains("198.51.100.7"))
        let closed = program(profiles: [profile("closed", "deny tcp ingress from 203.0.113.0/24 port 80")], floating: [exposed])
            .explain(from: outside, to: FlowEnd(endpoint: exposed), protocol: .tcp, port: 80)
        #expect(closed.verdict == .deny && closed.deciding?.stage == .destinationProfile)
        let out = compiled.explain(from: FlowEnd(endpoint: exposed), to: outside, protocol: .udp, port: 53)
        #expect(out.verdict == .allow)
    }

    @Test func twoDomainsShareNoRoute() {
        let other = endpoint("x", "acme/app2/web/red", "10.1.1.20", domain: "acme/app2")
        let answer = program().explain(from: FlowEnd(endpoint: web), to: FlowEnd(endpoint: other), protocol: .tcp, port: 80)
        #expect(answer.verdict == .deny && answer.steps.count == 1 && answer.deciding?.stage == .routing)
    }

    /// The compiled runs against a plain reading of the rules: for random rules and flows, the rule `firstMatch`
    /// names is the first one in order whose fields contain the flow.
    @Test func compiledRunsPickTheFirstMatchingRule() {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<200 {
            var runs = RuleRuns()
            var rules: [(SetElement, RuleAction)] = []
            for index in 0..<Int.random(in: 1...30, using: &generator) {
                let base = UInt32.random(in: 0...15, using: &generator) << 4
                let size = UInt32(1) << UInt32.random(in: 0...4, using: &generator)
                let low = UInt16.random(in: 0...20, using: &generator)
                let fields = [FieldRange(low: base, high: base + size - 1), FieldRange.of([.tcp, .udp, .any].randomElement()!),
                              FieldRange(low: UInt32(low), high: UInt32(low) + UInt32.random(in: 0...5))]
                let element = SetElement(fields: fields, addressFields: 1)
                let action: RuleAction = Bool.random() ? .allow : .deny
                runs.add([element], action, source: index)
                rules.append((element, action))
            }
            for _ in 0..<50 {
                let flow = [FieldRange.exactly(UInt32.random(in: 0...260)), FieldRange.exactly([6, 17].randomElement()!),
                            FieldRange.exactly(UInt32.random(in: 0...30))]
                let expected = rules.firstIndex { rule in zip(rule.0.fields, flow).allSatisfy { $0.contains($1) } }
                let found = runs.firstMatch(flow)
                #expect(found?.source == expected && found?.verdict == expected.map { rules[$0].1 })
            }
        }
    }
}
