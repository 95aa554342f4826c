import Foundation
import Glibc
import Testing
@testable import TrellisAgent
import TrellisModel
import TrellisPolicy
import TrellisNetlink
import TrellisTestSupport

struct FirewallRulesetTests {
    let red = "acme/app1/web/red", blue = "acme/app1/db/blue", green = "acme/app1/db/green"

    func subnet(_ path: String, _ cidr: String, vni: Int) throws -> DesiredSubnet {
        let network = try IPv4Network.parse(cidr)
        return DesiredSubnet(path: path, cidr: network, gateway: network.firstHost, gatewayMAC: MACAddress(UInt64(vni))!, vni: vni,
                             dhcp: false, remoteVTEPs: [])
    }

    func domain(_ rules: [String]) throws -> DesiredDomain {
        let policy = NetworkPolicy(path: "acme/app1/p", name: "p", domain: "acme/app1", rules: try rules.map(PolicyRule.parse), revision: 1,
                                   createdAt: Date())
        return DesiredDomain(path: "acme/app1", id: 1, subnets: [try subnet(red, "10.1.1.0/24", vni: 4096), try subnet(blue, "10.1.2.0/24",
            vni: 4097),
                                                                  try subnet(green, "10.1.3.0/24", vni: 4098)],
                             policies: rules.isEmpty ? [] : [policy])
    }

    func endpoint(_ id: Int, ip: String, profile: String? = nil) -> Endpoint {
        Endpoint(id: id, path: "\(red)/e\(id)", name: "e\(id)", subnet: red, domain: "acme/app1", kind: .container, host: "h1",
                 ip: IPv4Address(ip)!, mac: MACAddress.endpoint(sequence: UInt32(id)), profile: profile, state: .up, externalIds: [:],
                 revision: 1, createdAt: Date())
    }

    func policyLines(_ ruleset: FirewallRuleset) -> [String] {
        ruleset.inet().split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { $0.hasPrefix("ip saddr . ip daddr . meta l4proto") }
    }

    @Test func aPortsOwnRatesTakePrecedenceOverItsProfilesInEachDirection() throws {
        let profile = PortProfile(path: "acme/limited", name: "limited", enterprise: "acme", rules: [],
                                  egressRate: RateLimit(bitsPerSecond: 10_000_000), ingressRate: RateLimit(bitsPerSecond: 20_000_000),
                                  flowStats: false, revision: 1, createdAt: Date())
        var own = endpoint(1, ip: "10.1.1.11", profile: "acme/limited")
        own.egressRate = RateLimit(bitsPerSecond: 5_000_000, burstBytes: 30_000)
        var alone = endpoint(2, ip: "10.1.1.12")
        alone.ingressRate = RateLimit(bitsPerSecond: 1_000_000)
        let ruleset = FirewallRuleset(domain: try domain([]), endpoints: [own, alone, endpoint(3, ip: "10.1.1.13")],
                                      profiles: ["acme/limited": profile])
        #expect(ruleset.shaping == [
            PortShaping(port: "trv1", shaper: "tri1", egress: RateLimit(bitsPerSecond: 5_000_000, burstBytes: 30_000),
                        ingress: RateLimit(bitsPerSecond: 20_000_000)),
            PortShaping(port: "trv2", shaper: "tri2", egress: nil, ingress: RateLimit(bitsPerSecond: 1_000_000)),
        ])
    }

    @Test func consecutiveRulesWithOneVerdictShareOneSet() throws {
        let ruleset = FirewallRuleset(domain: try domain([
            "allow tcp from acme/app1/web/red to acme/app1/db/blue port 5432",
            "allow icmp from acme/app1/web to acme/app1/db",
            "deny udp from acme/app1/web/red to acme/app1/db/blue port 53",
            "allow udp from acme/app1/web/red to 10.1.2.0/24 port 1-1000,8000-8080",
        ]), endpoints: [], profiles: [:])
        let lines = policyLines(ruleset)
        #expect(lines.count == 3, "\(lines)")
        // A zone stands for its subnets: db is blue and green.
        #expect(lines[0].contains("10.1.1.0/24 . 10.1.2.0/24 . 6 . 5432"), "\(lines[0])")
        #expect(lines[0].contains("10.1.1.0/24 . 10.1.3.0/24 . 1 . 0-65535"), "\(lines[0])")
        #expect(lines[0].hasSuffix("accept") && lines[1].hasSuffix("drop") && lines[2].hasSuffix("accept"))
        #expect(lines[2].contains("10.1.1.0/24 . 10.1.2.0/24 . 17 . 1-1000") && lines[2].contains("17 . 8000-8080"))
    }

    @Test func overlappingRulesOfOneVerdictSplitIntoTwoSets() throws {
        let lines = policyLines(FirewallRuleset(domain: try domain([
            "allow tcp from any to acme/app1/db/blue port 5432",
            "allow any from acme/app1/web/red to acme/app1/db/blue",
            "allow any from acme/app1/web/red to acme/app1/db/blue",
        ]), endpoints: [], profiles: [:]))
        #expect(lines.count == 2, "the kernel refuses overlapping elements in one set: \(lines)")
        #expect(lines[0].contains("0.0.0.0/0 . 10.1.2.0/24 . 6 . 5432") && lines[1].contains("10.1.1.0/24 . 10.1.2.0/24 . 0-255 . 0-65535"))
    }

    @Test func tenThousandRulesCostOneLookup() throws {
        let rules = (1...10_000).map { "allow tcp from 172.16.\($0 / 250).\($0 % 250)/32 to acme/app1/db/blue port \($0)" }
        let lines = policyLines(FirewallRuleset(domain: try domain(rules), endpoints: [], profiles: [:]))
        #expect(lines.count == 1)
        #expect(lines[0].components(separatedBy: ", ").count == 10_000)
    }

    @Test func generationFollowsTheRulesNotTheCounters() throws {
        let profile = PortProfile(path: "acme/counted", name: "counted", rules: [try ACLRule.parse("deny tcp port 22")], flowStats: true,
                                  revision: 1, createdAt: Date())
        let a = FirewallRuleset(domain: try domain([]), endpoints: [endpoint(5, ip: "10.1.1.5", profile: profile.path)],
                                profiles: [profile.path: profile])
        let b = FirewallRuleset(domain: try domain([]), endpoints: [endpoint(5, ip: "10.1.1.5", profile: profile.path)],
                                profiles: [profile.path: profile])
        let c = FirewallRuleset(domain: try domain(["allow icmp from any to any"]), endpoints: [endpoint(5, ip: "10.1.1.5",
            profile: profile.path)],
                                profiles: [profile.path: profile])
        #expect(a.generation == b.generation && a.generation != c.generation)
        #expect(a.filtersBridgedTraffic, "a port with ACL rules and counters needs the bridge's frames")
        #expect(!FirewallRuleset(domain: try domain([]), endpoints: [endpoint(5, ip: "10.1.1.5")], profiles: [:]).filtersBridgedTraffic)
        let text = a.inet(counterValues: ["ep5_tx": .init(packets: 7, bytes: 700)])
        #expect(text.contains("counter ep5_tx { packets 7 bytes 700 }") && text.contains("counter ep5_rx { packets 0 bytes 0 }"))
        #expect(text.contains("ip daddr vmap { 10.1.1.5 : jump profile0_ingress }"))
    }

    @Test func everyPortIsGuardedOnItsOwnIngressEvenInAPlainOverlay() throws {
        let plain = FirewallRuleset(domain: try domain([]), endpoints: [endpoint(5, ip: "10.1.1.5"), endpoint(6, ip: "10.1.1.6")],
                                    profiles: [:])
        #expect(!plain.filtersBridgedTraffic && !plain.bridge.contains("prerouting"), "no bridge hook for the guard")
        let chains = plain.netdev.components(separatedBy: "  chain ").dropFirst()
        #expect(chains.count == 2, "\(plain.netdev)")
        let five = try #require(chains.first { $0.hasPrefix("trv5 ") })
        for rule in ["type filter hook ingress device \"trv5\" priority -500; policy accept;", "ether saddr != 02:7e:00:00:00:05 drop",
                     "ip saddr 10.1.1.5 accept", "arp saddr ip 10.1.1.5 arp saddr ether 02:7e:00:00:00:05 accept",
                     "ip saddr 0.0.0.0 udp dport 67 accept", "arp saddr ip 0.0.0.0 arp saddr ether 02:7e:00:00:00:05 accept",
                     "    drop\n"] {
            #expect(five.contains(rule), "\(rule) in \(five)")
        }
        #expect(FirewallRuleset(domain: try domain([]), endpoints: [], profiles: [:]).netdev.isEmpty)
        #expect(FirewallRuleset.removal.contains("delete table netdev trellis"))
    }

    /// A profile change reloads the inet table only: the ports' guard chains (netdev) stay as they are.
    @Test func aProfileChangeLeavesThePortGuardsAlone() throws {
        let before = PortProfile(path: "acme/p", name: "p", rules: try ["deny tcp port 22"].map(ACLRule.parse), flowStats: false,
                                 revision: 1, createdAt: Date())
        var after = before
        after.rules = try ["deny tcp port 23"].map(ACLRule.parse)
        let ports = [endpoint(5, ip: "10.1.1.5", profile: "acme/p"), endpoint(6, ip: "10.1.1.6")]
        let old = FirewallRuleset(domain: try domain([]), endpoints: ports, profiles: ["acme/p": before])
        let new = FirewallRuleset(domain: try domain([]), endpoints: ports, profiles: ["acme/p": after])
        let change = new.script(replacing: old)
        #expect(change.contains("delete table inet trellis") && change.contains(new.inet()) && new.inet() != old.inet())
        #expect(!change.contains("netdev") && !change.contains("bridge"))
        #expect(new.script(replacing: nil) == new.script())
    }

    /// A port that comes or goes changes its own guard chain and nothing else: the verdicts' generation stays,
    /// so no table is reloaded and no connection loses its mark.
    @Test func aPortThatComesOrGoesChangesOnlyItsGuardChain() throws {
        let ports = [endpoint(5, ip: "10.1.1.5"), endpoint(6, ip: "10.1.1.6")]
        let policed = try domain(["deny any from acme/app1/web to 10.1.2.7/32"])
        let two = FirewallRuleset(domain: policed, endpoints: ports, profiles: [:])
        let three = FirewallRuleset(domain: policed, endpoints: ports + [endpoint(7, ip: "10.1.1.7")], profiles: [:])
        #expect(three.generation == two.generation && three.inet() == two.inet())
        let seventh = try #require(three.guards["trv7"]).chain(port: "trv7")
        #expect(three.script(replacing: two) == "table netdev trellis {\n\(seventh)\n}\n")
        #expect(two.script(replacing: three) == "delete chain netdev trellis trv7\n")
        #expect(three.script(replacing: three).isEmpty)
        // A port whose address changed gets a new chain in place of its old one.
        var moved = ports
        moved[1].ip = IPv4Address("10.1.1.66")!
        let renumbered = FirewallRuleset(domain: policed, endpoints: moved, profiles: [:])
        let change = renumbered.script(replacing: two)
        #expect(change.hasPrefix("delete chain netdev trellis trv6\ntable netdev trellis {\n") && change.contains("10.1.1.66 accept"))
        #expect(!change.contains("trv5"))
        // The first port and the last one make and remove the table.
        let none = FirewallRuleset(domain: try domain([]), endpoints: [], profiles: [:])
        #expect(none.guardChanges(from: two.guards) == "table netdev trellis {}\ndelete table netdev trellis\n")
        #expect(two.guardChanges(from: [:]).hasSuffix(two.netdev))
        #expect(two.guardScript(inForce: two.guardComments).isEmpty && !three.guardScript(inForce: two.guardComments).isEmpty)
    }

    /// Everything the compiler writes is accepted by the kernel's nftables, in one transaction.
    @Test(.enabled(if: getuid() == 0 && FileManager.default.fileExists(atPath: "/usr/sbin/nft"), "needs root and nftables"))
    func compiledRulesetsLoadIntoTheKernel() throws {
        let name = "trfw\(UInt16.random(in: 0...UInt16.max))"
        let namespace = try NetworkNamespace.create(named: name)
        defer { try? NetworkNamespace.delete(named: name) }
        let profile = PortProfile(path: "acme/limited", name: "limited", rules: try ["deny tcp port 22",
                                                                                     "allow tcp from 10.0.0.0/8 port 80",
                                                                                     "deny udp to 10.1.2.0/24 port 53"].map(ACLRule.parse),
                                  flowStats: true, revision: 1, createdAt: Date())
        let ruleset = FirewallRuleset(domain: try domain(["allow tcp from acme/app1/web/red to acme/app1/db/blue port 5432",
                                                          "deny any from acme/app1/web to 10.1.2.7/32"]),
                                      endpoints: [endpoint(5, ip: "10.1.1.5", profile: profile.path), endpoint(6, ip: "10.1.1.6")],
                                      profiles: [profile.path: profile],
                                      floatingIPs: [FloatingIPTranslation(floating: IPv4Address("10.255.0.200")!,
                                                                          endpoint: IPv4Address("10.1.1.5")!)])
        try NFTables.load(ruleset.script(), namespacePath: namespace.path)
        let state = try #require(try NFTables.table("inet", "trellis", namespacePath: namespace.path))
        #expect(state.comment == "generation \(ruleset.generation)")
        #expect(Set(state.counters.keys) == ["ep5_tx", "ep5_rx"])
        // Loaded in-process, but into the namespace asked for, as the nft program sees it there and not here.
        #expect(try runProgram(["/usr/bin/nsenter", "--net=\(namespace.path)", "/usr/sbin/nft", "list", "tables"]).output
            .contains("table inet trellis"))
        #expect(try !runProgram(["/usr/sbin/nft", "list", "tables"]).output.contains("table inet trellis"))
        // Loading again replaces it in one go, and removal leaves nothing.
        try NFTables.load(ruleset.script(counterValues: ["ep5_tx": .init(packets: 3, bytes: 300)]), namespacePath: namespace.path)
        #expect(try NFTables.table("inet", "trellis", namespacePath: namespace.path)?.counters["ep5_tx"]?.bytes == 300)
        // Replacing it with itself as the ruleset in force touches the inet table only, and the kernel takes that too.
        try NFTables.load(ruleset.script(replacing: ruleset), namespacePath: namespace.path)
        #expect(try NFTables.run("list tables", namespacePath: namespace.path).contains("table netdev trellis"))
        // Guard chains added, changed and removed one port at a time end where a full load of the same ruleset does.
        let guards = try #require(try NFTables.table("netdev", "trellis", namespacePath: namespace.path)).chainComments
        #expect(guards == ruleset.guardComments && guards["trv5"] == "02:7e:00:00:00:05 10.1.1.5")
        var moved = endpoint(6, ip: "10.1.1.66")
        moved.mac = MACAddress("02:7e:00:00:00:66")!
        let grown = FirewallRuleset(domain: try domain([]), endpoints: [moved, endpoint(7, ip: "10.1.1.7")], profiles: [:])
        try NFTables.load(grown.script(replacing: ruleset), namespacePath: namespace.path)
        let incremental = try NFTables.run("list table netdev trellis", namespacePath: namespace.path)
        try NFTables.load(grown.script(), namespacePath: namespace.path)
        #expect(try NFTables.run("list table netdev trellis", namespacePath: namespace.path) == incremental)
        #expect(try NFTables.table("netdev", "trellis", namespacePath: namespace.path)?.chainComments == grown.guardComments)
        try NFTables.load(FirewallRuleset.removal, namespacePath: namespace.path)
        #expect(try NFTables.table("inet", "trellis", namespacePath: namespace.path) == nil)
        #expect(throws: KernelToolError.self) { try NFTables.load("table inet trellis { chain c { nonsense } }",
                                                                  namespacePath: namespace.path) }
    }
}
