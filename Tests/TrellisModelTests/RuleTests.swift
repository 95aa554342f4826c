import Foundation
import Testing
@testable import TrellisModel

@Suite struct RuleTests {
    @Test func rulesDecodeFromTheirOneLineFormWithTheErrorAtTheirPath() throws {
        struct Body: Decodable { var rules: [PolicyRule]; var acl: [ACLRule] }
        let json = #"{"rules": ["allow tcp from acme/app1/web to acme/app1/db port 5432", {"action": "deny"}],"#
            + #" "acl": ["deny tcp port 22"]}"#
        let body = try JSONCoding.decoder().decode(Body.self, from: Data(json.utf8))
        #expect(body.rules == [try PolicyRule.parse("allow tcp from acme/app1/web to acme/app1/db port 5432"),
                               PolicyRule(action: .deny, protocol: .any, from: "any", to: "any")])
        #expect(body.acl == [try ACLRule.parse("deny tcp port 22")])
        do {
            _ = try JSONCoding.decoder().decode(Body.self, from: Data(#"{"rules": ["allow tcp", "permit all"], "acl": []}"#.utf8))
            Issue.record("a bad rule line was accepted")
        } catch let error as DecodingError {
            let described = JSONCoding.describe(error)
            #expect(described.field == "rules[1]" && described.message.contains("allow or deny"), "\(described)")
        }
    }

    @Test func parsesPolicyRules() throws {
        let rule = try PolicyRule.parse("allow tcp from acme/app1/web/red to acme/app1/db/green port 5432")
        #expect(rule == PolicyRule(action: .allow, protocol: .tcp, from: "acme/app1/web/red", to: "acme/app1/db/green",
                                   ports: [try PortRange(5432)]))
        #expect(rule.description == "allow tcp from acme/app1/web/red to acme/app1/db/green port 5432")
        let ranges = try PolicyRule.parse("deny udp to 10.0.0.0/8 port 53,8000-8080")
        #expect(ranges.from == "any" && ranges.ports.map(\.description) == ["53", "8000-8080"])
        #expect(try PolicyRule.parse("allow icmp from acme/app1/web").ports.isEmpty)
    }

    @Test func rejectsMalformedPolicyRules() {
        for bad in ["", "permit tcp", "allow", "allow tcpx", "allow tcp from", "allow tcp port 0", "allow tcp port 70000",
                    "allow tcp port 90-80", "allow icmp port 22", "allow tcp sideways"] {
            #expect(throws: TrellisError.self, "\(bad)") { try PolicyRule.parse(bad) }
        }
    }

    @Test func parsesProfileRules() throws {
        let rule = try ACLRule.parse("deny tcp port 22")
        #expect(rule.action == .deny && rule.protocol == .tcp && rule.direction == .ingress && rule.ports.map(\.first) == [22])
        let egress = try ACLRule.parse("allow udp to 10.0.0.0/8 port 53")
        #expect(egress.direction == .egress && egress.remote == "10.0.0.0/8")
        #expect(try ACLRule.parse(egress.description) == egress)
        #expect(throws: TrellisError.self) { try ACLRule.parse("allow tcp from 10.0.0.1/8") }
        #expect(throws: TrellisError.self) { try ACLRule.parse("deny icmp port 1") }
    }

    @Test func portRangesDecodeFromNumbersAndStrings() throws {
        let decoded = try JSONDecoder().decode([PortRange].self, from: Data(#"[80, "8000-8080"]"#.utf8))
        #expect(decoded.map(\.description) == ["80", "8000-8080"])
        #expect(throws: DecodingError.self) { try JSONDecoder().decode([PortRange].self, from: Data(#"[0]"#.utf8)) }
    }

    @Test func parsesRates() throws {
        #expect(try RateLimit.parseRate("10mbit", field: "rate") == 10_000_000)
        #expect(try RateLimit.parseRate("1.5gbit", field: "rate") == 1_500_000_000)
        #expect(try RateLimit.parseRate("8000", field: "rate") == 8000)
        for bad in ["0", "0mbit", "-1mbit", "fast", "mbit"] {
            #expect(throws: TrellisError.self, "\(bad)") { try RateLimit.parseRate(bad, field: "rate") }
        }
        #expect(throws: TrellisError.self) { try RateLimit(bitsPerSecond: 0).validate(field: "egressRate") }
    }

    @Test func decodingErrorsNameTheField() {
        #expect(decodingError(#"{"nested": []}"#)?.field == "cidr")
        #expect(decodingError(#"{"cidr": 5, "nested": []}"#)?.field == "cidr")
        #expect(decodingError(#"{"cidr": "x", "nested": [{"port": "a"}]}"#)?.field == "nested[0].port")
        #expect(decodingError(#"{"cidr": "#)?.message.contains("not valid JSON") == true)
    }
}

private struct Body: Decodable {
    var cidr: String
    var nested: [Inner]
}

private struct Inner: Decodable { var port: Int }

/// The error a request body would be answered with.
private func decodingError(_ json: String) -> TrellisError? {
    do {
        _ = try JSONDecoder().decode(Body.self, from: Data(json.utf8))
        return nil
    } catch {
        return (error as? DecodingError).map(JSONCoding.describe)
    }
}
