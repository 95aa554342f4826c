import Foundation
import TrellisModel
import TrellisNetlink
import TrellisPolicy

/// The nftables rulesets of one domain's router namespace, compiled from the domain's network policies,
/// the profiles of this host's ports in it, and its floating IPs. Pure: text in, text out.
///
/// `inet trellis` filters forwarded IPv4 (routed between subnets, and bridged where the subnet's bridge
/// hands frames to the IP hooks): established flows pass on a fast path while their conntrack mark
/// carries the ruleset's generation; a new flow (or one from before a reload, in its original
/// direction) goes through the source port's egress ACL, the destination port's ingress ACL, then is
/// accepted inside one subnet, for a floating IP, or by the network policies, first match wins, and
/// dropped otherwise. `netdev trellis` keeps each port to its own MAC and address, with one chain on
/// the port's own ingress hook; `bridge trellis` keeps DHCP off the VXLAN devices.
public struct FirewallRuleset: Sendable {
    /// The `inet trellis` table, less its counters (their values are carried over at load time).
    private var inetTables: [String]
    /// The `bridge trellis` table.
    public var bridge: String
    /// The port guard: what each port may send, by port name. Only a port that comes, goes or changes
    /// has its chain written, so the text of every port's chain is made only for a full load.
    public var guards: [String: PortGuard]
    /// Whether forwarded traffic in this domain needs the IP hooks for bridged frames too (policies,
    /// profiles with rules or flow statistics, floating IPs); without them bridging stays untouched.
    public var filtersBridgedTraffic: Bool
    /// Identifies the ruleset's verdicts: its conntrack mark, and how a reload of the `inet` table is skipped
    /// when nothing changed. The port guard is not part of it: a port that comes or goes changes its own
    /// guard chain only, and the connections of the others keep their mark (and the fast path).
    public var generation: UInt32
    /// This host's ports in the domain (veth host ends and taps).
    public var ports: [String]
    /// Rate limits of this host's ports in the domain.
    public var shaping: [PortShaping]
    /// Names of the per-endpoint counters, by endpoint id.
    public var counters: [Int: (tx: String, rx: String)]

    /// The `inet trellis` table with its counters starting from `counterValues` (by name).
    public func inet(counterValues: [String: TrafficCounters] = [:]) -> String {
        let names = counters.keys.sorted().flatMap { [counters[$0]!.tx, counters[$0]!.rx] }
        let lines = names.map { name in
            let value = counterValues[name]
            return "  counter \(name) { packets \(value?.packets ?? 0) bytes \(value?.bytes ?? 0) }"
        }
        return ([inetTables[0], inetTables[1]] + lines + inetTables.dropFirst(2)).joined(separator: "\n") + "\n"
    }

    /// Both tables, replacing whatever Trellis loaded before, as one `nft -f` transaction.
    public func script(counterValues: [String: TrafficCounters] = [:]) -> String {
        Self.removal + inet(counterValues: counterValues) + bridge + netdev
    }

    /// The transaction that brings the tables from `previous` (the ruleset in force) to this one: the `inet`
    /// table where its generation changed, the bridge table where its text did, and the guard chains of the
    /// ports that came, went or changed. A profile change leaves every port's guard chain (one ingress hook
    /// each) as it is; a new port adds its own chain and loads nothing else.
    public func script(counterValues: [String: TrafficCounters] = [:], replacing previous: FirewallRuleset?) -> String {
        guard let previous else { return script(counterValues: counterValues) }
        var text = generation == previous.generation ? "" : Self.clearing("inet") + inet(counterValues: counterValues)
        if bridge != previous.bridge { text += Self.clearing("bridge") + bridge }
        return text + guardChanges(from: previous.guards)
    }

    /// The `netdev trellis` table: one chain per port, in port name order.
    public var netdev: String { Self.guardTable(guards.sorted { $0.key < $1.key }) }

    /// The comment of each port's guard chain, by port name.
    public var guardComments: [String: String] { guards.mapValues(\.comment) }

    /// The netdev transaction from the guards `previous` to these: the chains of ports gone or changed are
    /// deleted, those of ports new or changed added, the others stay hooked as they are.
    func guardChanges(from previous: [String: PortGuard]) -> String {
        guard previous != guards else { return "" }
        guard !previous.isEmpty, !guards.isEmpty else { return Self.clearing("netdev") + netdev }
        let gone = previous.filter { guards[$0.key] != $0.value }.keys.sorted()
        let added = guards.filter { previous[$0.key] != $0.value }.sorted { $0.key < $1.key }
        return gone.map { "delete chain netdev trellis \($0)\n" }.joined() + Self.guardTable(added)
    }

    /// The netdev transaction that puts this ruleset's guard in place of a table whose chains have the
    /// comments `inForce` (read back after a restart); empty when they are the same.
    public func guardScript(inForce: [String: String]) -> String {
        inForce == guardComments ? "" : Self.clearing("netdev") + netdev
    }

    /// A `netdev trellis` table with the chains of `guards` (added to the table when it exists); empty for none.
    static func guardTable(_ guards: [(key: String, value: PortGuard)]) -> String {
        guard !guards.isEmpty else { return "" }
        return (["table netdev trellis {"] + guards.map { $0.value.chain(port: $0.key) } + ["}"]).joined(separator: "\n") + "\n"
    }

    /// Removes the tables (a domain without local ports), as one transaction.
    public static let removal = ["inet", "bridge", "netdev"].map(clearing).joined()

    /// Deletes the `trellis` table of `family`, whether it exists or not.
    static func clearing(_ family: String) -> String { "table \(family) trellis {}\ndelete table \(family) trellis\n" }

    /// The interface in the router namespace that leads to the host namespace (floating IPs).
    public static let uplink = "trup"

    /// The ruleset of `domain` with `endpoints` local, each port named by `portNames` (a VM's tap) or by its id.
    public init(domain: DesiredDomain, endpoints: [Endpoint], portNames: [Int: String] = [:], profiles: [String: PortProfile],
                floatingIPs: [FloatingIPTranslation] = []) {
        let local = endpoints.sorted { $0.id < $1.id }
        var body: [String] = []
        var chains: [String] = []
        var counters: [Int: (tx: String, rx: String)] = [:]

        // Counters for ports whose profile asks for flow statistics.
        var txMap: [String] = [], rxMap: [String] = []
        for endpoint in local where endpoint.profile.flatMap({ profiles[$0] })?.flowStats == true {
            let names = (tx: "ep\(endpoint.id)_tx", rx: "ep\(endpoint.id)_rx")
            counters[endpoint.id] = names
            txMap.append("\(endpoint.ip) : \"\(names.tx)\"")
            rxMap.append("\(endpoint.ip) : \"\(names.rx)\"")
        }
        if !txMap.isEmpty {
            body.append("counter name ip saddr map { \(txMap.joined(separator: ", ")) }")
            body.append("counter name ip daddr map { \(rxMap.joined(separator: ", ")) }")
        }
        body.append("meta nfproto != ipv4 accept")
        body.append("ct state invalid drop")
        let fast = body.count

        // Port ACLs: one egress and one ingress chain per profile with rules, entered by the port's address.
        let used = Set(local.compactMap(\.profile)).sorted()
        let program = PolicyProgram(domain: domain, profiles: used.compactMap { profiles[$0] }, floatingIPs: floatingIPs)
        var egress: [String] = [], ingress: [String] = []
        for (index, path) in used.enumerated() {
            guard let acl = program.profileACLs[path] else { continue }
            for direction in [RuleDirection.egress, .ingress] {
                let runs = direction == .egress ? acl.egress : acl.ingress
                guard !runs.runs.isEmpty else { continue }
                let name = "profile\(index)_\(direction.rawValue)"
                let key = direction == .egress ? "ip daddr . meta l4proto . th dport" : "ip saddr . meta l4proto . th dport"
                chains.append(Self.chain(name, comment: "\(path) \(direction.rawValue)", runs.rules(key: key, allow: "return",
                    deny: "drop")))
                let jumps = local.filter { $0.profile == path }.map { "\($0.ip) : jump \(name)" }
                if direction == .egress { egress += jumps } else { ingress += jumps }
            }
        }
        if !egress.isEmpty { body.append("ip saddr vmap { \(egress.joined(separator: ", ")) }") }
        if !ingress.isEmpty { body.append("ip daddr vmap { \(ingress.joined(separator: ", ")) }") }

        // Inside one subnet traffic flows; between subnets only as the policies say.
        let subnets = program.subnets
        if !subnets.isEmpty {
            let pairs = subnets.map { "\($0.cidr) . \($0.cidr)" }.joined(separator: ", ")
            body.append("ip saddr . ip daddr { \(pairs) } ct mark set GEN accept")
        }
        if !floatingIPs.isEmpty {
            body.append("iifname \"\(Self.uplink)\" ct status dnat ct mark set GEN accept")
            let bound = floatingIPs.map(\.endpoint.description).joined(separator: ", ")
            body.append("oifname \"\(Self.uplink)\" ip saddr { \(bound) } ct mark set GEN accept")
        }
        body += program.policyRuns.rules(key: "ip saddr . ip daddr . meta l4proto . th dport", allow: "ct mark set GEN accept",
                                         deny: "drop")

        var nat: [String] = []
        if !floatingIPs.isEmpty {
            let translations = floatingIPs.sorted { $0.floating < $1.floating }
            let inward = translations.map { "\($0.floating) : \($0.endpoint)" }.joined(separator: ", ")
            let outward = translations.map { "\($0.endpoint) : \($0.floating)" }.joined(separator: ", ")
            nat.append(Self.chain("prerouting", hook: "type nat hook prerouting priority dstnat; policy accept;", [
                "iifname \"\(Self.uplink)\" dnat ip to ip daddr map { \(inward) }"]))
            nat.append(Self.chain("postrouting", hook: "type nat hook postrouting priority srcnat; policy accept;", [
                "oifname \"\(Self.uplink)\" snat ip to ip saddr map { \(outward) }"]))
        }

        // Only where the domain filters bridged traffic do the inet hooks see bridged frames.
        let filters = !domain.policies.isEmpty || !floatingIPs.isEmpty || !counters.isEmpty || !egress.isEmpty || !ingress.isEmpty
        let ports = local.map { (name: portNames[$0.id] ?? KernelNames.port(endpointID: $0.id), endpoint: $0) }
        self.ports = ports.map(\.name)
        shaping = ports.compactMap { port in
            let profile = port.endpoint.profile.flatMap { profiles[$0] }
            let egress = port.endpoint.egressRate ?? profile?.egressRate, ingress = port.endpoint.ingressRate ?? profile?.ingressRate
            guard egress != nil || ingress != nil else { return nil }
            return PortShaping(port: port.name, shaper: KernelNames.shaper(endpointID: port.endpoint.id), egress: egress, ingress: ingress)
        }
        // Every port keeps to its MAC and address, in every domain: only IPv4 from its address, ARP for its
        // address with its MAC, and DHCP requests or ARP probes from 0.0.0.0 pass; anything else is dropped
        // as the port receives it, so a container can neither take a neighbour's traffic nor poison caches.
        // - One chain on each port's own ingress hook sees only what that port sends: frames from VXLAN and
        //   the gateway pay nothing, and the usual packet leaves after three compares and no set lookup.
        // - The last rule drops, not the policy: a reload hooks the new chain in before its rules take
        //   effect, and a drop policy would drop every frame of the port meanwhile (seen in the lab).
        // - Since Linux 6.16 a chain may name a port that does not exist yet, or any more.
        guards = Dictionary(ports.map { ($0.name, PortGuard(mac: $0.endpoint.mac, ip: $0.endpoint.ip)) }, uniquingKeysWith: { a, _ in a })
        var bridgeChains: [String] = []
        if domain.subnets.contains(where: \.dhcp) {
            bridgeChains.append(Self.chain("forward", hook: "type filter hook forward priority filter; policy accept;",
                                           ["oifname \"trx*\" udp dport { 67, 68 } drop"]))
        }
        bridge = bridgeChains.isEmpty ? "" : (["table bridge trellis {"] + bridgeChains + ["}"]).joined(separator: "\n") + "\n"

        // The generation is a digest of everything but itself, the counters' values and the port guard.
        let skeleton = (body + chains + nat + [bridge] + counters.keys.sorted().map(String.init)
            + shaping.map(\.summary))
                .joined(separator: "\n")
        let generation = max(1, Self.fnv1a(skeleton))
        self.generation = generation
        body.insert("ct state established,related ct mark \(generation) accept", at: fast)
        body.insert("ct direction reply ct state established,related accept", at: fast + 1)
        let forward = Self.chain("forward", hook: "type filter hook forward priority filter; policy drop;",
                                 body.map { $0.replacingOccurrences(of: "GEN", with: "\(generation)") })
        // The router's own IGMP reports (its gateway addresses join multicast groups) are not connections: left
        // untracked, a quiet domain has no conntrack entries, and its flows are read without a dump.
        let quiet = Self.chain("output_untracked", hook: "type filter hook output priority raw; policy accept;",
                               ["ip protocol igmp notrack"])
        inetTables = ["table inet trellis {", "  comment \"generation \(generation)\""] + [forward, quiet] + chains + nat + ["}"]

        filtersBridgedTraffic = filters
        self.counters = counters
    }

    static func chain(_ name: String, hook: String? = nil, comment: String? = nil, _ rules: [String]) -> String {
        var lines = ["  chain \(name) {"]
        if let hook { lines.append("    \(hook)") }
        if let comment { lines.append("    comment \"\(comment)\"") }
        lines += rules.map { "    " + $0 }
        lines.append("  }")
        return lines.joined(separator: "\n")
    }

    static func fnv1a(_ text: String) -> UInt32 {
        var hash: UInt32 = 2_166_136_261
        for byte in text.utf8 { hash = (hash ^ UInt32(byte)) &* 16_777_619 }
        return hash
    }
}

/// What one port may send, enforced by its own chain on its ingress hook: frames from its MAC, IPv4 from its
/// address, ARP for its address with its MAC, and DHCP requests or ARP probes from 0.0.0.0.
public struct PortGuard: Equatable, Sendable {
    public var mac: MACAddress
    public var ip: IPv4Address

    /// The chain's comment, which shows an agent that restarts which guard is in force.
    public var comment: String { "\(mac) \(ip)" }

    /// The chain of the port named `port`.
    func chain(port: String) -> String {
        FirewallRuleset.chain(port, hook: "type filter hook ingress device \"\(port)\" priority -500; policy accept;", comment: comment, [
            "ether saddr != \(mac) drop",
            "ip saddr \(ip) accept",
            "arp saddr ip \(ip) arp saddr ether \(mac) accept",
            "ip saddr 0.0.0.0 udp dport 67 accept",
            "arp saddr ip 0.0.0.0 arp saddr ether \(mac) accept",
            "drop",
        ])
    }
}
