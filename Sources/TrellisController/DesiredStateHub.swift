import Foundation
import Synchronization
import TrellisModel
import TrellisStore

/// Numbers the writes of one controller as they start, and knows which are still running, without a hop
/// onto the hub: a write takes its ticket on its own task.
final class WriteTickets: Sendable {
    private let state = Mutex<(next: Int, running: Set<Int>)>((0, []))

    /// A write about to start.
    func begin() -> Int {
        state.withLock { state in
            defer { state.next += 1 }
            state.running.insert(state.next)
            return state.next
        }
    }

    /// The ticket the next write will get: every write numbered below it began before now.
    func barrier() -> Int { state.withLock { $0.next } }

    /// A write the hub has taken back (published or abandoned).
    func end(_ ticket: Int) { state.withLock { _ = $0.running.remove(ticket) } }

    /// The oldest write still running, or `Int.max`.
    func oldestRunning() -> Int { state.withLock { $0.running.min() ?? .max } }
}

/// Compiles each host's desired state and wakes the watchers a change concerns.
///
/// Each domain's view is read from the store once, then kept current from the changes themselves:
/// an endpoint change patches the view in place (it carries the object), other changes to the
/// domain drop it for a fresh read. Only the hosts that serve the changed domain are woken, so with
/// a thousand agents watching, one new endpoint costs no store read and a recompile for the hosts
/// of its domain only.
actor DesiredStateHub {
    /// What a watcher is woken for. A watcher's stream keeps only the newest signal, so a keepalive may
    /// stand in for a change it replaced: whatever wakes it, a watcher compares its state afresh.
    enum Signal: Sendable { case changed, keepalive }

    /// One domain as every host serving it sees it.
    struct DomainView: Sendable {
        var domain: Domain
        var subnets: [Subnet]
        var policies: [NetworkPolicy]
        /// Endpoints placed on a host, by host and path; unplaced ones concern no agent.
        var placed: [String: [String: Endpoint]]
        /// The store revision the view was read at; changes at or below it are already in it.
        var loadedRevision: Int
        /// The revision of the latest change applied per endpoint path, so that a change that
        /// arrives late (commits may publish out of order) never overwrites a newer one.
        var applied: [String: Int] = [:]
        var hostOf: [String: String] = [:]

        init(domain: Domain, subnets: [Subnet], policies: [NetworkPolicy], endpoints: [Endpoint], revision: Int) {
            self.domain = domain
            self.subnets = subnets
            self.policies = policies
            placed = [:]
            loadedRevision = revision
            for endpoint in endpoints { place(endpoint) }
        }

        private mutating func place(_ endpoint: Endpoint) {
            guard let host = endpoint.host else { return }
            placed[host, default: [:]][endpoint.path] = endpoint
            hostOf[endpoint.path] = host
        }

        /// Applies one endpoint change; false when the view cannot follow it and must be read again.
        mutating func apply(_ event: Event) -> Bool {
            apply(event, endpoint: event.decodedObject(Endpoint.self))
        }

        /// Applies one endpoint change whose object the caller has decoded already.
        mutating func apply(_ event: Event, endpoint: Endpoint?) -> Bool {
            guard event.revision > max(loadedRevision, applied[event.path] ?? 0) else { return true }
            guard applied.count < 100_000 else { return false }
            applied[event.path] = event.revision
            if let host = hostOf.removeValue(forKey: event.path) {
                placed[host]?[event.path] = nil
                if placed[host]?.isEmpty == true { placed[host] = nil }
            }
            guard event.action != .deleted else { return true }
            guard let endpoint else { return false }
            place(endpoint)
            return true
        }
    }

    private let store: any Store
    private var latest: Int?
    private var views: [String: DomainView] = [:]
    private var loading: [String: (generation: Int, task: Task<DomainView?, any Error>)] = [:]
    private var generations: [String: Int] = [:]
    private var hostsByName: [String: HostRecord]?
    /// Moves on with every host change, so a read of the hosts that a change overtook is not kept.
    private var hostsGeneration = 0
    /// The domains each known host serves (has endpoints in); entries may be stale supersets.
    private var hostDomains: [String: Set<String>] = [:]
    private var watchers: [String: [UUID: AsyncStream<Signal>.Continuation]] = [:]
    private var followers: [UUID: AsyncStream<Signal>.Continuation] = [:]
    /// A write that returned: published once no write begun before `barrier` (the next ticket when it returned) runs.
    private struct ReturnedWrite {
        var barrier: Int
        var revision: Int
        var events: [Event]
    }
    nonisolated let writeTickets = WriteTickets()
    private var writesReturned: [ReturnedWrite] = []

    init(store: any Store) { self.store = store }

    func revision() async throws -> Int {
        if let latest { return latest }
        let revision = try await store.read { try $0.currentRevision() }
        latest = max(latest ?? 0, revision)
        return latest!
    }

    // MARK: Publication order

    /// A write that failed: it publishes nothing, and holds back nothing any more.
    func abandonWrite(_ ticket: Int) {
        writeTickets.end(ticket)
        publishReturnedWrites()
    }

    /// Publishes the change of the write numbered `ticket` (`writeTickets`) once that is safe for revision
    /// order. Concurrent writes commit in one order and may return in another: published as they return, a
    /// watcher could be sent a state stamped with the later revision that lacks the earlier change. So a
    /// change waits until every write begun before it returned (numbered below `barrier`, taken as it
    /// returned) has been taken back too: a write begun after it commits after it. The changes that are
    /// ready then go out in revision order.
    func publish(revision: Int, events: [Event], inOrderWith ticket: Int, barrier: Int) {
        writeTickets.end(ticket)
        writesReturned.append(ReturnedWrite(barrier: barrier, revision: revision, events: events))
        publishReturnedWrites()
    }

    private func publishReturnedWrites() {
        let oldest = writeTickets.oldestRunning()
        let ready = writesReturned.filter { $0.barrier <= oldest }.sorted { $0.revision < $1.revision }
        writesReturned.removeAll { $0.barrier <= oldest }
        for write in ready where !write.events.isEmpty { publish(revision: write.revision, events: write.events) }
    }

    // MARK: Changes

    /// Takes note of a committed change: drops stale views and wakes the hosts it concerns.
    func publish(revision: Int, events: [Event]) {
        latest = max(latest ?? 0, revision)
        var wake: Set<String> = []
        for event in events where event.action.changes {
            switch event.kind {
            case .host:
                hostsByName = nil
                hostsGeneration += 1
                wake.formUnion(watchers.keys)
            case .domain, .zone, .subnet, .endpoint, .policy:
                let domain = Names.prefix(event.path, 2)
                let endpoint = event.kind == .endpoint ? event.decodedObject(Endpoint.self) : nil
                if event.kind == .endpoint, views[domain] != nil, views[domain]!.apply(event, endpoint: endpoint) {
                    // Patched in place.
                } else {
                    invalidate(domain)
                }
                if let host = endpoint?.host {
                    hostDomains[host]?.insert(domain)
                    wake.insert(host)
                }
                wake.formUnion(hostDomains.filter { $0.value.contains(domain) }.keys)
            case .profile:
                let enterprise = Names.prefix(event.path, 1) + "/"
                wake.formUnion(hostDomains.filter { $0.value.contains { $0.hasPrefix(enterprise) } }.keys)
            case .enterprise, .user, .fippool, .dockerNetwork:
                break
            }
        }
        for host in wake { watchers[host]?.values.forEach { $0.yield(.changed) } }
        followers.values.forEach { $0.yield(.changed) }
    }

    private func invalidate(_ domain: String) {
        views[domain] = nil
        loading[domain] = nil
        generations[domain, default: 0] += 1
    }

    // MARK: Subscriptions

    /// A stream that yields whenever `host`'s desired state may have changed.
    func watch(host: String) -> (UUID, AsyncStream<Signal>) {
        let id = UUID()
        let (stream, continuation) = AsyncStream.makeStream(of: Signal.self, bufferingPolicy: .bufferingNewest(1))
        watchers[host, default: [:]][id] = continuation
        return (id, stream)
    }

    func unwatch(host: String, id: UUID) {
        watchers[host]?[id]?.finish()
        watchers[host]?[id] = nil
        if watchers[host]?.isEmpty == true { watchers[host] = nil }
    }

    /// A stream that yields after every committed change, for event followers.
    func follow() -> (UUID, AsyncStream<Signal>) {
        let id = UUID()
        let (stream, continuation) = AsyncStream.makeStream(of: Signal.self, bufferingPolicy: .bufferingNewest(1))
        followers[id] = continuation
        return (id, stream)
    }

    func unfollow(id: UUID) {
        followers[id]?.finish()
        followers[id] = nil
    }

    /// Wakes one watcher for a keepalive.
    func poke(host: String, id: UUID) {
        watchers[host]?[id]?.yield(.keepalive)
    }

    // MARK: Compilation

    private func view(_ path: String) async throws -> DomainView? {
        if let view = views[path] { return view }
        let generation = generations[path, default: 0]
        if let pending = loading[path], pending.generation == generation { return try await pending.task.value }
        let store = self.store
        let task = Task<DomainView?, any Error> {
            try await store.read { tx in
                guard let domain = try tx.get(Domain.self, path) else { return nil }
                return DomainView(domain: domain, subnets: try tx.list(Subnet.self, under: path),
                                  policies: try tx.list(NetworkPolicy.self, under: path),
                                  endpoints: try tx.list(Endpoint.self, under: path), revision: try tx.currentRevision())
            }
        }
        loading[path] = (generation, task)
        let view = try await task.value
        if generations[path, default: 0] == generation {
            views[path] = view
            loading[path] = nil
        }
        return view
    }

    private func hosts() async throws -> [String: HostRecord] {
        if let hostsByName { return hostsByName }
        let generation = hostsGeneration
        let hosts = try await store.read { try $0.list(HostRecord.self, under: nil) }
        let byName = Dictionary(hosts.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        // A host change published while this read was away may be missing from it: then it is used once, not kept
        // (kept, it would hide the new host's endpoints from every other host until the next host change).
        if hostsGeneration == generation { hostsByName = byName }
        return byName
    }

    /// What a host's desired state is made of, as of the latest change the hub has seen.
    struct StateInputs: Sendable {
        var host: String
        var revision: Int
        var served: [DomainView]
        var hosts: [String: HostRecord]
        var profiles: [PortProfile]
    }

    /// The desired state of `host` as of the latest change the hub has seen. The inputs are gathered inside
    /// the hub; the state is assembled outside it, so that the watch streams of many hosts build theirs in
    /// parallel rather than one after another inside the actor.
    nonisolated func state(for host: String) async throws -> DesiredState {
        Self.assemble(try await inputs(for: host))
    }

    private func inputs(for host: String) async throws -> StateInputs {
        let revision = try await revision()
        if hostDomains[host] == nil {
            let domains = try await store.read { tx in Set(try tx.list(Endpoint.self, boundTo: host).map(\.domain)) }
            hostDomains[host, default: []].formUnion(domains)
        }
        var served: [DomainView] = []
        for path in (hostDomains[host] ?? []).sorted() {
            let generation = generations[path, default: 0]
            if let view = try await view(path), view.placed[host] != nil {
                served.append(view)
            } else if generations[path, default: 0] == generation {
                hostDomains[host]?.remove(path)
            }
        }
        let hosts = try await hosts()
        let profilePaths = Set(served.flatMap { $0.placed[host].map { $0.values.compactMap(\.profile) } ?? [] })
        let profiles = profilePaths.isEmpty ? [] : try await store.read { tx in
            try profilePaths.sorted().compactMap { try tx.get(PortProfile.self, $0) }
        }
        return StateInputs(host: host, revision: revision, served: served, hosts: hosts, profiles: profiles)
    }

    private static func assemble(_ inputs: StateInputs) -> DesiredState {
        let host = inputs.host, hosts = inputs.hosts
        let local = inputs.served.flatMap { $0.placed[host].map { Array($0.values) } ?? [] }
        var remote: [RemoteEndpoint] = []
        var domains: [DesiredDomain] = []
        for view in inputs.served {
            var vteps: Set<IPv4Address> = []
            for (owner, endpoints) in view.placed where owner != host {
                guard let vtep = hosts[owner]?.underlayIP else { continue }
                vteps.insert(vtep)
                for endpoint in endpoints.values {
                    remote.append(RemoteEndpoint(path: endpoint.path, subnet: endpoint.subnet, ip: endpoint.ip,
                                                 mac: endpoint.mac, host: owner, vtep: vtep, hostname: endpoint.hostname))
                }
            }
            let subnets = view.subnets.map {
                DesiredSubnet(path: $0.path, cidr: $0.cidr, gateway: $0.gateway, gatewayMAC: $0.gatewayMAC, vni: $0.vni,
                              dhcp: $0.dhcp, remoteVTEPs: vteps.sorted())
            }
            domains.append(DesiredDomain(path: view.domain.path, id: view.domain.id, subnets: subnets, policies: view.policies))
        }
        return DesiredState(host: host, revision: inputs.revision, underlayIP: hosts[host]?.underlayIP, domains: domains,
                            endpoints: local, remoteEndpoints: remote, profiles: inputs.profiles).canonical
    }
}
