import Foundation
import TrellisClient
import TrellisFastPath
import TrellisModel
import TrellisNetlink
import TrellisNetlinkWire

extension Datapath {
    /// The router namespaces this datapath made, by domain id, for readers outside the actor.
    func routerNamespaces() -> [Int: (namespace: NetworkNamespace, netlink: RouteNetlink, fastPath: FastPathProgram?)] {
        routers.mapValues { ($0.namespace, $0.netlink, $0.fastPath?.loaded) }
    }
}

extension Agent {
    /// Reads this host's endpoint counters and flows and sends them to the controller, every `statsInterval`.
    func report() async {
        var sentEmpty = false
        while !Task.isCancelled {
            try? await Task.sleep(for: configuration.statsInterval)
            guard let desired = await state.desired else { continue }
            do {
                let report = try await collect(desired)
                // A host with nothing to count says so once, not every few seconds.
                let empty = report.endpoints.isEmpty && report.flows.isEmpty
                if empty && sentEmpty { continue }
                sentEmpty = empty
                _ = try await client.send(.POST, "/api/v1/hosts/\(configuration.host)/stats", body: try JSONCoding.encoder().encode(report))
                await counters.count(.reports)
            } catch {
                await counters.count(.reportErrors)
                logger.debug("traffic report failed: \(error)")
            }
        }
    }

    /// Endpoint counters (nftables counters where the profile asks for flow statistics, else the port's
    /// own counters) and the conntrack entries of every router namespace.
    func collect(_ desired: DesiredState) async throws -> HostStatsReport {
        let routers = await datapath.routerNamespaces(), firewall = datapath.firewall, host = configuration.host
        let bindings = datapath.bindings.current
        // Dumps of links, counters and conntrack block: on a thread of their own, not the cooperative pool.
        return try await onOwnThread { try Self.read(desired, routers: routers, bindings: bindings, firewall: firewall, host: host) }
    }

    private static func read(_ desired: DesiredState,
                             routers: [Int: (namespace: NetworkNamespace, netlink: RouteNetlink, fastPath: FastPathProgram?)],
                             bindings: LocalBindingTable, firewall: FirewallLoader, host: String) throws -> HostStatsReport {
        let now = Date()
        var endpoints: [EndpointStats] = []
        var flows: [Flow] = []
        for domain in desired.domains {
            guard let router = routers[domain.id] else { continue }
            let links = try router.netlink.links()
            let statistics = Dictionary(links.map { ($0.name, $0.statistics) }, uniquingKeysWith: { a, _ in a })
            let indexes = Dictionary(links.map { ($0.name, $0.index) }, uniquingKeysWith: { a, _ in a })
            // What the fast path handed to a port never left through it.
            let delivered = router.fastPath?.deliveries() ?? [:]
            let ruleset = firewall.ruleset(namespacePath: router.namespace.path)
            let counters = ruleset?.counters.isEmpty == false
                ? (try NFTables.table("inet", "trellis", namespacePath: router.namespace.path)?.counters ?? [:]) : [:]
            for endpoint in desired.endpoints where endpoint.domain == domain.path {
                let port = bindings.portName(of: endpoint)
                if let names = ruleset?.counters[endpoint.id], let sent = counters[names.tx], let received = counters[names.rx] {
                    endpoints.append(EndpointStats(endpoint: endpoint.path, id: endpoint.id, host: host,
                                                   sent: sent, received: received, source: "nftables", collectedAt: now))
                } else if let link = statistics[port] ?? nil {
                    // The port's receive side is what the endpoint sent.
                    var received = TrafficCounters(packets: link.sentPackets, bytes: link.sentBytes)
                    received.add(indexes[port].flatMap { delivered[$0] })
                    endpoints.append(EndpointStats(endpoint: endpoint.path, id: endpoint.id, host: host,
                                                   sent: TrafficCounters(packets: link.receivedPackets, bytes: link.receivedBytes),
                                                   received: received, source: "interface", collectedAt: now))
                }
            }
            // What the fast path carried of a connection, conntrack did not count.
            let carried = router.fastPath?.flowDeliveries() ?? [:]
            var live: Set<FastPathFlow> = []
            for entry in try router.namespace.conntrackEntries() {
                var original = TrafficCounters(packets: entry.originalPackets, bytes: entry.originalBytes)
                var reply = TrafficCounters(packets: entry.replyPackets, bytes: entry.replyBytes)
                if let key = Self.fastPathFlow(entry.original) {
                    live.formUnion([key, key.reversed])
                    original.add(carried[key])
                    reply.add(carried[key.reversed])
                }
                let name = switch entry.original.protocol {
                case 6: "tcp"
                case 17: "udp"
                case 1: "icmp"
                default: "\(entry.original.protocol)"
                }
                flows.append(Flow(domain: domain.path, host: host, protocol: name, source: entry.original.source,
                                  sourcePort: entry.original.sourcePort.map(Int.init), destination: entry.original.destination,
                                  destinationPort: entry.original.destinationPort.map(Int.init), state: entry.tcpState,
                                  original: original, reply: reply,
                                  translatedDestination: entry.reply.source == entry.original.destination ? nil : entry.reply.source))
            }
            // Only what was read before conntrack was: a connection counted since may not be in its dump yet.
            router.fastPath?.forgetFlows(carried.keys.filter { !live.contains($0) })
        }
        return HostStatsReport(collectedAt: now, endpoints: endpoints, flows: flows)
    }

    /// The fast path's key for a connection's original direction: TCP and UDP only.
    private static func fastPathFlow(_ tuple: ConntrackTuple) -> FastPathFlow? {
        guard let sourcePort = tuple.sourcePort, let destinationPort = tuple.destinationPort, [6, 17].contains(tuple.protocol) else {
            return nil
        }
        return FastPathFlow(source: tuple.source, destination: tuple.destination, sourcePort: sourcePort, destinationPort: destinationPort,
                            protocolNumber: tuple.protocol)
    }

    /// Prometheus text exposition of the agent's state.
    func metrics() async -> String {
        let status = await status()
        let desired = await state.desired
        let host = "host=\"\(configuration.host)\""
        return [
            "# TYPE trellis_agent_connected gauge", "trellis_agent_connected{\(host)} \(status.connected ? 1 : 0)",
            "# TYPE trellis_agent_desired_revision gauge", "trellis_agent_desired_revision{\(host)} \(status.desiredRevision ?? 0)",
            "# TYPE trellis_agent_applied_revision gauge", "trellis_agent_applied_revision{\(host)} \(status.appliedRevision ?? 0)",
            "# TYPE trellis_agent_endpoints gauge", "trellis_agent_endpoints{\(host)} \(desired?.endpoints.count ?? 0)",
            "# TYPE trellis_agent_domains gauge", "trellis_agent_domains{\(host)} \(desired?.domains.count ?? 0)",
            "# TYPE trellis_agent_reconciles_total counter", "trellis_agent_reconciles_total{\(host)} \(await counters[.reconciles])",
            "# TYPE trellis_agent_reconcile_errors_total counter",
            "trellis_agent_reconcile_errors_total{\(host)} \(await counters[.reconcileErrors])",
            "# TYPE trellis_agent_reports_total counter", "trellis_agent_reports_total{\(host)} \(await counters[.reports])",
            "# TYPE trellis_agent_report_errors_total counter",
            "trellis_agent_report_errors_total{\(host)} \(await counters[.reportErrors])",
        ].joined(separator: "\n") + "\n"
    }
}

extension TrafficCounters {
    /// Adds what the fast path carried, which the kernel's own counters missed.
    mutating func add(_ delivery: FastPathDelivery?) {
        packets += delivery?.packets ?? 0
        bytes += delivery?.bytes ?? 0
    }
}
