import Testing
@testable import TrellisAgent
import TrellisModel
import TrellisNetlinkWire

/// The pure parts of `explain --verify`: the tracing table, the verdict of a trace, the rule texts by handle.
@Suite struct ProbeTests {
    static let request = ProbeRequest(from: "acme/app/web/red/web1", to: IPv4Address(0x0A08_020B), protocol: .tcp, port: 5432)

    @Test func theProbeMarksOnlyTheFirstPacketOfItsFlowOnEveryHook() {
        let ruleset = Probe.tracingRuleset(port: "trv1", source: IPv4Address(0x0A08_010B), request: Self.request)
        let match = "ip saddr 10.8.1.11 ip daddr 10.8.2.11 tcp dport 5432 tcp flags & (syn | ack) == syn meta nftrace set 1"
        #expect(ruleset.components(separatedBy: match).count == 4, "netdev, bridge and inet chains mark the probe:\n\(ruleset)")
        #expect(ruleset.contains("hook ingress device \"trv1\" priority -1000"))
        let icmp = ProbeRequest(from: "a/b/c/d/e", to: IPv4Address(0x0A08_020B), protocol: .icmp, port: nil)
        #expect(Probe.tracingRuleset(port: "trv1", source: IPv4Address(0x0A08_010B), request: icmp).contains("icmp type echo-request meta"))
        #expect(Probe.removal.contains("delete table netdev trellis_probe") && Probe.removal.contains("delete table inet trellis_probe"))
    }

    @Test func anyDropDecidesAndTheProbesOwnChainsAreLeftOut() {
        let mark = NFTraceEvent(family: 5, table: "trellis_probe", chain: "trace", ruleHandle: 2, kind: .rule, verdict: "continue", id: 1)
        let guardRule = NFTraceEvent(family: 5, table: "trellis", chain: "trv1", ruleHandle: 3, kind: .rule, verdict: "accept", id: 1)
        let policyDrop = NFTraceEvent(family: 1, table: "trellis", chain: "forward", ruleHandle: nil, kind: .policy, verdict: "drop", id: 1)
        let rules = ["netdev trellis 3": "ip saddr 10.8.1.11 accept"]
        let dropped = Probe.result(of: [mark, guardRule, policyDrop], rules: rules, answered: false)
        #expect(dropped.verdict == .deny && dropped.steps.count == 2 && dropped.steps[0].rule == "ip saddr 10.8.1.11 accept")
        #expect(dropped.steps[1] == ProbeStep(family: "inet", table: "trellis", chain: "forward", handle: nil, rule: nil, kind: "policy",
                                              verdict: "drop"))
        #expect(Probe.result(of: [mark, guardRule], rules: rules, answered: true).verdict == .allow)
    }

    @Test func ruleTextsAreReadByFamilyTableAndHandle() {
        let listing = """
        table inet trellis { # handle 7
        \tchain forward { # handle 1
        \t\ttype filter hook forward priority filter; policy drop;
        \t\tct state established,related accept # handle 4
        \t}
        }
        table netdev trellis { # handle 8
        \tchain trv1 { # handle 1
        \t\tip saddr 10.8.1.11 accept # handle 4
        \t}
        }
        """
        #expect(Probe.ruleTexts(listing) == ["inet trellis 4": "ct state established,related accept",
                                             "netdev trellis 4": "ip saddr 10.8.1.11 accept"])
    }
}
