import Foundation
import TrellisModel

/// The latest traffic report of each host. Kept in memory: counters and flows are measurements that
/// the next report replaces, not state worth a store write every few seconds.
actor TelemetryBoard {
    private var reports: [String: HostStatsReport] = [:]
    private(set) var received = 0

    func record(_ report: HostStatsReport, host: String) {
        reports[host] = report
        received += 1
    }

    func report(host: String) -> HostStatsReport? { reports[host] }
    func all() -> [String: HostStatsReport] { reports }
}

extension Registry {
    /// Takes an agent's report (its own host's credential, or an admin).
    public func recordStats(host: String, _ report: HostStatsReport, _ caller: Caller) async throws {
        try caller.requireOwnHost(host, "report traffic statistics")
        // A host speaks only for what it serves: its own endpoints, and flows in the domains they are in.
        let placed = try await store.read { tx -> [Endpoint] in
            _ = try tx.require(HostRecord.self, host)
            return try tx.list(Endpoint.self, boundTo: host)
        }
        let ids = Set(placed.map(\.id)), domains = Set(placed.map(\.domain))
        var report = report
        report.endpoints = report.endpoints.filter { ids.contains($0.id) }
        report.flows = report.flows.filter { domains.contains($0.domain) && $0.host == host }
        await telemetry.record(report, host: host)
    }

    /// An endpoint's latest counters, from its host's latest report.
    public func endpointStats(_ reference: String, _ caller: Caller) async throws -> EndpointStats {
        let endpoint = try await get(Endpoint.self, try await endpointPath(reference, caller), caller)
        guard let host = endpoint.host,
            let stats = await telemetry.report(host: host)?.endpoints.first(where: { $0.id == endpoint.id }) else {
            throw TrellisError.notFound("no statistics for \(endpoint.path) yet: its host reports every few seconds once it is plugged in")
        }
        return stats
    }

    /// The current flows in which an address of `subnet` takes part, from every host's latest report.
    public func flows(subnet path: String?, _ caller: Caller) async throws -> FlowList {
        guard let path, !path.isEmpty else { throw TrellisError.invalid("subnet: give the subnet whose flows to list", field: "subnet") }
        let subnet = try await get(Subnet.self, path, caller)
        let domain = Names.prefix(subnet.path, 2)
        let flows = await telemetry.all().values.flatMap(\.flows).filter { flow in
            flow.domain == domain && (subnet.cidr.contains(flow.source) || subnet.cidr.contains(flow.destination)
                                      || flow.translatedDestination.map(subnet.cidr.contains) == true)
        }
        let sorted = flows.sorted { ($0.host, $0.source, $0.sourcePort ?? 0) < ($1.host, $1.source, $1.sourcePort ?? 0) }
        return FlowList(items: try await explained(sorted))
    }

    /// Prometheus text exposition of the controller's own numbers and the hosts' latest counters.
    public func metrics(_ caller: Caller) async throws -> String {
        try caller.requireAdmin("read metrics")
        let (endpoints, revision) = try await store.read { tx in (try tx.list(Endpoint.self, under: nil), try tx.currentRevision()) }
        let listed = try await self.hosts(caller).items
        var lines = [
            "# HELP trellis_store_revision The store's current revision.", "# TYPE trellis_store_revision gauge",
            "trellis_store_revision \(revision)",
            "# HELP trellis_endpoints Endpoints by state.", "# TYPE trellis_endpoints gauge",
        ]
        for state in ["pending", "up", "down", "error"] {
            lines.append("trellis_endpoints{state=\"\(state)\"} \(endpoints.filter { $0.state.rawValue == state }.count)")
        }
        lines += ["# HELP trellis_hosts Hosts by status.", "# TYPE trellis_hosts gauge"]
        for status in ["up", "down"] {
            lines.append("trellis_hosts{status=\"\(status)\"} \(listed.filter { $0.status.rawValue == status }.count)")
        }
        lines += ["# HELP trellis_stats_reports_total Traffic reports received from agents.", "# TYPE trellis_stats_reports_total counter",
                  "trellis_stats_reports_total \(await telemetry.received)",
                  "# HELP trellis_store_commits_total Write transactions this controller committed.",
                  "# TYPE trellis_store_commits_total counter",
                  "trellis_store_commits_total \(store.commits)",
                  "# HELP trellis_store_conflict_retries_total Write transactions run again because another write changed what they read.",
                  "# TYPE trellis_store_conflict_retries_total counter", "trellis_store_conflict_retries_total \(store.conflictRetries)",
                  "# HELP trellis_store_commit_requests_total Requests that carried the commits (etcd merges concurrent ones).",
                  "# TYPE trellis_store_commit_requests_total counter", "trellis_store_commit_requests_total \(store.commitRequests)",
                  "# HELP trellis_endpoint_bytes_total Bytes an endpoint sent or received, as its host last counted them.",
                  "# TYPE trellis_endpoint_bytes_total counter"]
        let reports = await telemetry.all()
        var flows = 0
        for host in reports.keys.sorted() {
            for stats in reports[host]!.endpoints {
                lines.append("trellis_endpoint_bytes_total{endpoint=\"\(stats.endpoint)\",direction=\"sent\"} \(stats.sent.bytes)")
                lines.append("trellis_endpoint_bytes_total{endpoint=\"\(stats.endpoint)\",direction=\"received\"} \(stats.received.bytes)")
            }
            flows += reports[host]!.flows.count
        }
        lines += ["# HELP trellis_flows Tracked connections in the hosts' latest reports.", "# TYPE trellis_flows gauge",
                  "trellis_flows \(flows)"]
        return lines.joined(separator: "\n") + "\n"
    }
}
