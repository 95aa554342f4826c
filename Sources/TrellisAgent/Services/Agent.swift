import Foundation
import Logging
import ServiceLifecycle
import TrellisClient
import TrellisFastPath
import TrellisModel
import TrellisNetlink

/// How an agent is run.
public struct AgentConfiguration: Sendable {
    /// The base URLs (`https://…`, `http://…` or `http+unix://…`) of the controllers, one or several of one
    /// cluster: the agent uses one and moves to the next when it cannot be reached.
    public var controllers: [String]
    public var token: String?
    public var host: String
    public var underlayIP: IPv4Address
    /// The local API's unix socket.
    public var socketPath: String
    /// The controller's CA when it is reached over HTTPS.
    public var trust: ControllerTrust?
    /// Who may connect to the local sockets besides root.
    public var socketAccess = LocalSocketAccess.rootOnly
    public var overlayMTU: UInt32
    /// Which path traffic between a subnet's local ports takes.
    public var datapath = DatapathChoice.auto
    public var heartbeatInterval: Duration = .seconds(5)
    public var resyncInterval: Duration = .seconds(30)
    /// How often endpoint counters and flows are reported to the controller.
    public var statsInterval: Duration = .seconds(5)
    /// Where the local bindings are kept: beside the socket (`agent.sock` → `agent.bindings.json`).
    public var bindingsPath: String { (socketPath as NSString).deletingPathExtension + ".bindings.json" }

    public init(controllers: [String], token: String?, host: String, underlayIP: IPv4Address, socketPath: String, overlayMTU: UInt32) {
        self.controllers = controllers
        self.token = token
        self.host = host
        self.underlayIP = underlayIP
        self.socketPath = socketPath
        self.overlayMTU = overlayMTU
    }
}

/// The packet path between a subnet's local ports: the eBPF fast path, the bridge, or the fast path where
/// the kernel runs it.
public enum DatapathChoice: String, CaseIterable, Sendable {
    case auto, fast, bridge

    /// Whether to use the fast path here: `fast` on a kernel that cannot load it is an error.
    public func usesFastPath() throws -> Bool {
        switch self {
        case .bridge: return false
        case .auto: return FastPathProgram.isSupported()
        case .fast:
            _ = try FastPathProgram()
            return true
        }
    }
}

/// Counts of what the agent did, for its `/metrics`.
actor AgentCounters {
    enum Kind: Hashable { case reconciles, reconcileErrors, reports, reportErrors }
    private var counts: [Kind: Int] = [:]
    func count(_ kind: Kind) { counts[kind, default: 0] += 1 }
    subscript(_ kind: Kind) -> Int { counts[kind] ?? 0 }
}

/// What the agent knows: the desired state it follows and what it has applied.
actor AgentState {
    private(set) var desired: DesiredState?
    private(set) var applied: Int?
    /// The state the kernel was last brought to, for its digest in the status.
    private(set) var appliedState: DesiredState?
    private(set) var connected = false
    private(set) var lastError: String?
    /// Whether the last reconcile left something undone, to be tried again soon rather than at the next resync.
    private(set) var reconcileFailed = false
    /// Whether the next reconcile reads the kernel whole (at start, on the resync tick, after a failure)
    /// rather than planning against what the last one left.
    private var resyncDue = true

    /// The digest of the applied state, once asked for: a status poll must not encode the whole state each time.
    private var appliedDigest: (revision: Int, digest: String)?

    func follow(_ state: DesiredState) { desired = state }
    func digest(ofRevision revision: Int) -> String? { appliedDigest?.revision == revision ? appliedDigest?.digest : nil }
    func remember(digest: String, ofRevision revision: Int) { appliedDigest = (revision, digest) }
    func markApplied(_ state: DesiredState) { applied = state.revision; appliedState = state; lastError = nil; reconcileFailed = false }
    func markReconcileFailed(_ error: String) { lastError = error; reconcileFailed = true; resyncDue = true }
    func requestResync() { resyncDue = true }
    /// Whether a resync is due, which the reconcile about to run carries out.
    func takeResync() -> Bool {
        defer { resyncDue = false }
        return resyncDue
    }
    func markConnected(_ value: Bool, error: String? = nil) {
        connected = value
        if let error { lastError = error }
    }
    func record(error: String) { lastError = error }
}

/// The per-host agent: registers the host, follows its desired state from the controller and keeps
/// the kernel matching it. When the controller is away the datapath stays as it is, and the agent
/// reconnects with backoff and resyncs.
public final class Agent: Sendable {
    public let configuration: AgentConfiguration
    public let client: ControllerClient
    let datapath: Datapath
    let state = AgentState()
    let counters = AgentCounters()
    let dhcp: DHCPService
    let dns: DNSService
    let logger: Logger
    /// Port records the controller has yet to take (a CNI ADD or a Docker join returns before its record),
    /// sent by the "port records" service, which finishes them before the agent stops.
    private let portRecords = AsyncStream.makeStream(of: (endpoint: Endpoint, update: EndpointUpdate).self)
    /// Attaches not plugged yet, which a reconcile lets go first.
    let attachesInFlight = AttachesInFlight()

    public init(configuration: AgentConfiguration, logger: Logger = Logger(label: "trellis.agent")) throws {
        self.configuration = configuration
        client = ControllerClient(baseURLs: configuration.controllers, token: configuration.token, trust: configuration.trust)
        let dns = DNSService(host: configuration.host)
        let directory = (configuration.socketPath as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let fastPath = try configuration.datapath.usesFastPath()
        let described = fastPath ? "eBPF fast path for ports and tunnels, filtered traffic as the ruleset accepts it" : "bridges only"
        logger.info("datapath: \(described)")
        datapath = try Datapath(configuration: DatapathConfiguration(host: configuration.host, underlayIP: configuration.underlayIP,
                                                                     overlayMTU: configuration.overlayMTU, fastPath: fastPath),
                                bindings: try LocalBindingStore(path: configuration.bindingsPath),
                                routerMade: { dns.serveNew(namespace: $0) })
        dhcp = DHCPService(host: configuration.host, mtu: configuration.overlayMTU)
        self.dns = dns
        self.logger = logger
    }

    /// Runs the agent's services in one ServiceGroup until SIGTERM or SIGINT, or until one of them fails,
    /// with `adapters` (the Docker monitor, the plugin driver) after them.
    ///
    /// Services start in order and stop in reverse: first what takes requests (adapters, the local API),
    /// then the loops that talk to the controller, then the reconciler, and last the DHCP and DNS servers
    /// in the router namespaces. The datapath stays as it is, so forwarding goes on while the agent is away.
    public func run(alongside adapters: [any Service] = []) async throws {
        let (signals, trigger) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        let services: [any Service] = [
            // Waits for the shutdown, then stops the listener threads, after every service started later has stopped.
            DrainingService("namespace servers") {
                try? await gracefulShutdown()
                self.dhcp.stopAll()
                self.dns.serve(namespaces: [])
            },
            AgentLoop("reconciler") { await self.reconcile(signals) },
            AgentLoop("resync timer") {
                while !Task.isCancelled {
                    try await Task.sleep(for: self.configuration.resyncInterval)
                    await self.state.requestResync()
                    trigger.yield()
                }
            },
            // A reconcile that failed (a port the kernel refused, a busy namespace) is tried again every two
            // seconds until it succeeds, not only at the next resync.
            AgentLoop("retry timer") {
                while !Task.isCancelled {
                    try await Task.sleep(for: .seconds(2))
                    if await self.state.reconcileFailed { trigger.yield() }
                }
            },
            AgentLoop("controller watch") { await self.follow(trigger) },
            AgentLoop("heartbeat") { await self.beat() },
            AgentLoop("traffic reports") { await self.report() },
            AgentLoop("probes") { await self.takeProbes() },
            AgentLoop("CNI sweep") { await self.sweepCNI() },
            // Stops after the local API and the adapters, which hand it records, and sends what they left.
            DrainingService("port records") { await self.sendPortRecords() },
            localAPI(),
        ]
        var group = ServiceGroupConfiguration(services: services + adapters, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        // A record the controller cannot take (it is away) is not waited for long: after 3 s the rest is cancelled.
        group.maximumGracefulShutdownDuration = .seconds(3)
        try await ServiceGroup(configuration: group).run()
    }

    /// Registers the host and follows its desired state, reconnecting with backoff.
    func follow(_ trigger: AsyncStream<Void>.Continuation) async {
        var backoff = Duration.milliseconds(200)
        while !Task.isCancelled {
            do {
                let _: HostRecord = try await client.put("/api/v1/hosts/\(configuration.host)",
                                                         HostRegistration(underlayIP: configuration.underlayIP.description))
                var desired = await state.desired
                // The revision and digest of what the agent has: the same controller, or another of its cluster,
                // answers with a bookmark instead of the whole state when it is still current.
                let since = desired?.revision ?? -1
                let resume = desired.map { "&digest=\($0.contentDigest)" } ?? ""
                try await client.stream("/api/v1/hosts/\(configuration.host)/desired?watch=1&since=\(since)\(resume)",
                                        as: WatchMessage.self) { message in
                    backoff = .milliseconds(200)
                    await self.state.markConnected(true)
                    switch message.type {
                    case .snapshot: desired = message.state
                    case .delta: if let delta = message.delta { desired = desired?.applying(delta, revision: message.revision) }
                    case .bookmark: return true
                    }
                    if let desired {
                        await self.state.follow(desired)
                        self.dns.follow(desired)
                        trigger.yield()
                    }
                    return true
                }
                await state.markConnected(false, error: "the controller closed the watch")
            } catch {
                logger.warning("controller unreachable, keeping the datapath as it is: \(error)")
                await state.markConnected(false, error: "\(error)")
            }
            try? await Task.sleep(for: backoff)
            backoff = min(backoff * 2, .seconds(5))
        }
    }

    /// Reconciles whenever the desired state changed (coalesced), reading the kernel whole on every resync tick.
    func reconcile(_ signals: AsyncStream<Void>) async {
        for await _ in signals {
            // At most a few milliseconds: the reconcile would otherwise hold the datapath's thread while an attach
            // (whose endpoint it cannot plug, not being bound yet) waits for it.
            await attachesInFlight.drained(within: .milliseconds(20))
            guard let desired = await state.desired else { continue }
            do {
                var report = try await datapath.reconcile(desired, resync: await state.takeResync())
                if await settle(report.bindingsInDoubt) { report = try await datapath.reconcile(desired, resync: false) }
                let firewall = datapath.firewall
                // On a thread of its own: a large ruleset takes a while to load, and must hold up neither the
                // datapath's thread (attaches) nor the cooperative pool.
                if firewall.hasPendingWork { try await onOwnThread { try firewall.sync() } }
                dhcp.update(desired, ports: datapath.bindings.current)
                dns.serve(namespaces: await datapath.routerNames())
                await state.markApplied(desired)
                await counters.count(.reconciles)
                if !report.isEmpty {
                    logger.info("reconciled revision \(desired.revision): created \(report.created), removed \(report.removed)")
                }
            } catch {
                logger.error("reconcile of revision \(desired.revision) failed: \(error)")
                await counters.count(.reconcileErrors)
                await state.markReconcileFailed("\(error)")
            }
        }
    }

    /// Asks the controller about the bindings a reconcile kept although its desired state should have listed
    /// them. An endpoint deleted or moved to another host loses its binding, and so its port at the next
    /// reconcile; one that the desired state only lags behind (a controller published two changes out of
    /// order) keeps both. Returns whether a binding went.
    func settle(_ bindingsInDoubt: [LocalBinding]) async -> Bool {
        var over: [Int] = []
        for binding in bindingsInDoubt {
            do {
                let endpoint: Endpoint = try await client.get("/api/v1/endpoints/\(binding.endpointID)")
                if endpoint.path != binding.endpointPath || endpoint.host != configuration.host { over.append(binding.endpointID) }
            } catch let error as TrellisError where error.code == .notFound || error.code == .forbidden {
                over.append(binding.endpointID)
            } catch {
                logger.warning("keeping the port of \(binding.endpointPath) until the controller can say whether it is gone: \(error)")
            }
        }
        guard !over.isEmpty else { return false }
        do {
            try datapath.bindings.unbind(over)
        } catch {
            logger.error("\(error)")
            return false
        }
        return true
    }

    /// Tells the controller the host is alive and which revision it has applied.
    func beat() async {
        while !Task.isCancelled {
            let applied = await state.applied
            let _: HostRecord? = try? await client.post("/api/v1/hosts/\(configuration.host)/heartbeat",
                                                        HostHeartbeat(appliedRevision: applied))
            try? await Task.sleep(for: configuration.heartbeatInterval)
        }
    }

    /// The digest of the state last applied, computed once per revision.
    private func appliedDigest() async -> String? {
        guard let applied = await state.appliedState else { return nil }
        if let digest = await state.digest(ofRevision: applied.revision) { return digest }
        let digest = applied.contentDigest
        await state.remember(digest: digest, ofRevision: applied.revision)
        return digest
    }

    func status() async -> AgentStatus {
        AgentStatus(host: configuration.host, underlayIP: configuration.underlayIP, connected: await state.connected,
                    desiredRevision: await state.desired?.revision, appliedRevision: await state.applied,
                    appliedDigest: await appliedDigest(), lastError: await state.lastError)
    }

    // MARK: Attach and detach

    /// Creates the endpoint at the controller, plugs it in, and records the port; on any failure the
    /// port is removed and the endpoint deleted (releasing its address) before the error is reported.
    /// With `recordInBackground` the call returns once the port is in the kernel and the controller
    /// learns it is up right after (a CNI runtime waits only for the interface, as OVN's CMS does not
    /// wait for `up`); the endpoint returned is then the one created, still pending.
    public func attach(_ request: AttachRequest, recordInBackground: Bool = false) async throws -> Endpoint {
        if request.vm == true { return try await attachVM(request) }
        let attaching = attachesInFlight.begin()
        defer { attaching.end() }
        let interface = request.ifname ?? "eth0"
        guard (1...15).contains(interface.utf8.count), !interface.contains("/"), !interface.contains(" ") else {
            throw TrellisError.invalid("ifname: '\(interface)' is not an interface name (1 to 15 bytes)", field: "ifname")
        }
        guard (request.pid == nil) != (request.netns == nil) else {
            throw TrellisError.invalid("give either pid or netns", field: "pid")
        }
        let path = request.pid.map { "/proc/\($0)/ns/net" } ?? request.netns!
        do {
            _ = try NetworkNamespace(path: path)
        } catch {
            throw TrellisError.invalid("\(request.pid != nil ? "pid" : "netns"): cannot open the network namespace \(path): \(error)",
                                       field: request.pid != nil ? "pid" : "netns")
        }
        let name = request.name ?? "ep-" + String(UInt32.random(in: 0...UInt32.max), radix: 16)
        let body = EndpointCreate(subnet: request.subnet, name: name, kind: .container,
                                  owner: request.owner ?? request.pid.map { "pid:\($0)" } ?? path,
                                  host: configuration.host, ip: request.ip, profile: request.profile,
                                  externalIds: request.externalIds, egressRate: request.egressRate, ingressRate: request.ingressRate)
        let endpoint: Endpoint = try await client(for: request.user).post("/api/v1/endpoints", body)
        return try await plugOrUndo(endpoint, attaching, recordInBackground: recordInBackground) { domain, subnet in
            let (port, _) = try await self.datapath.attach(endpoint, domain: domain, subnet: subnet,
                                                           as: .namespace(path: path, interface: interface))
            return EndpointUpdate(state: .up, interface: port, externalIds: ["iface-id": port, "attached-mac": endpoint.mac.description])
        }
    }

    /// The controller's client, acting for `user` when one is named.
    func client(for user: String?) throws -> ControllerClient {
        guard let user else { return client }
        try Names.validate(user, field: "user")
        return client.acting(for: user)
    }

    /// A VM's port: the endpoint, then a persistent tap on its subnet's bridge in the router namespace.
    func attachVM(_ request: AttachRequest) async throws -> Endpoint {
        guard request.pid == nil, request.netns == nil else { throw TrellisError.invalid("a VM is attached by its tap, not by pid or netns",
                                                                                         field: "vm") }
        if let tap = request.tap, !(1...15).contains(tap.utf8.count) || tap.contains("/") || tap.contains(" ") {
            throw TrellisError.invalid("tap: '\(tap)' is not an interface name (1 to 15 bytes)", field: "tap")
        }
        let attaching = attachesInFlight.begin()
        defer { attaching.end() }
        let name = request.name ?? "vm-" + String(UInt32.random(in: 0...UInt32.max), radix: 16)
        let tap = request.tap ?? KernelNames.tap(token: UInt32.random(in: 0...UInt32.max))
        let created: Endpoint = try await client(for: request.user).post("/api/v1/endpoints", EndpointCreate(
            subnet: request.subnet, name: name, kind: .vm, owner: name, host: configuration.host, ip: request.ip, profile: request.profile,
            externalIds: ["vm-name": name], egressRate: request.egressRate, ingressRate: request.ingressRate))
        return try await plugOrUndo(created, attaching) { domain, subnet in
            let (_, router) = try await self.datapath.attach(created, domain: domain, subnet: subnet, as: .tap(name: tap))
            return EndpointUpdate(state: .up, interface: tap, externalIds: ["iface-id": tap, "attached-mac": created.mac.description,
                                                                            "router-netns": router])
        }
    }

    /// Plugs a new endpoint in with `plug` and records the result; on failure removes its port and
    /// deletes the endpoint (releasing its address) before reporting the error. The attach stops holding
    /// reconciles back once its port is plugged.
    private func plugOrUndo(_ endpoint: Endpoint, _ attaching: AttachesInFlight.Ticket, recordInBackground: Bool = false,
                            _ plug: @Sendable (DesiredDomain, DesiredSubnet) async throws -> EndpointUpdate) async throws -> Endpoint {
        do {
            let (domain, subnet) = try await placement(of: endpoint)
            let update = try await plug(domain, subnet)
            attaching.end()
            if recordInBackground {
                self.recordInBackground(endpoint, update)
                return endpoint
            }
            return try await client.patch("/api/v1/endpoints/\(endpoint.id)", update)
        } catch {
            logger.error("attach of \(endpoint.path) failed, undoing it: \(error)")
            try? await unplug(endpoint)
            try? await client.delete("/api/v1/endpoints/\(endpoint.id)")
            throw error
        }
    }

    /// Records a plugged port at the controller off the caller's path: the "port records" service sends it.
    public func recordInBackground(_ endpoint: Endpoint, _ update: EndpointUpdate) {
        portRecords.continuation.yield((endpoint, update))
    }

    /// Sends the port records as they come, each retried while the controller is unreachable (an endpoint
    /// deleted meanwhile, a DEL right after the ADD, needs no record). On shutdown it takes no new ones and
    /// returns once those taken are sent or given up.
    func sendPortRecords() async {
        let client = client, logger = logger, records = portRecords
        await withGracefulShutdownHandler {
            await withDiscardingTaskGroup { group in
                for await (endpoint, update) in records.stream {
                    group.addTask {
                        for attempt in 1...10 {
                            do {
                                let _: Endpoint = try await client.patch("/api/v1/endpoints/\(endpoint.id)", update)
                                return
                            } catch let error as TrellisError where error.code == .notFound {
                                return
                            } catch {
                                logger.warning("recording \(endpoint.path) as up failed (attempt \(attempt)): \(error)")
                                try? await Task.sleep(for: .milliseconds(100 * attempt))
                            }
                        }
                    }
                }
            }
        } onGracefulShutdown: {
            records.continuation.finish()
        }
    }

    /// The domain and subnet an endpoint is plugged into: from the desired state when this host already
    /// serves them (no round trip on the attach path), else from the controller.
    func placement(of endpoint: Endpoint) async throws -> (DesiredDomain, DesiredSubnet) {
        if let domain = await state.desired?.domains.first(where: { $0.path == endpoint.domain }),
           let subnet = domain.subnets.first(where: { $0.path == endpoint.subnet }) {
            return (domain, subnet)
        }
        async let subnetRecord: Subnet = client.get("/api/v1/subnets/\(endpoint.subnet)")
        async let domainRecord: Domain = client.get("/api/v1/domains/\(endpoint.domain)")
        let (subnet, domain) = try await (subnetRecord, domainRecord)
        let desired = DesiredSubnet(path: subnet.path, cidr: subnet.cidr, gateway: subnet.gateway, gatewayMAC: subnet.gatewayMAC,
                                    vni: subnet.vni, dhcp: subnet.dhcp, remoteVTEPs: [])
        return (DesiredDomain(path: domain.path, id: domain.id, subnets: [desired], policies: []), desired)
    }

    /// Plugs an endpoint made beforehand (by a Docker engine's IPAM request) as a veth whose other end,
    /// `handover`, stays in this host's namespace for the engine to move into the container; returns the
    /// port's name. On failure the port is removed; the endpoint stays for its creator to release.
    public func plugForHandover(_ endpoint: Endpoint, handover: String) async throws -> String {
        let attaching = attachesInFlight.begin()
        defer { attaching.end() }
        do {
            let (domain, subnet) = try await placement(of: endpoint)
            return try await datapath.attach(endpoint, domain: domain, subnet: subnet, as: .handover(interface: handover)).port
        } catch {
            logger.error("plugging \(endpoint.path) failed, removing its port: \(error)")
            try? await unplug(endpoint)
            throw error
        }
    }

    /// What records at the controller that an endpoint is plugged in as `port`.
    public func pluggedUpdate(_ endpoint: Endpoint, port: String, externalIds: [String: String] = [:]) -> EndpointUpdate {
        EndpointUpdate(state: .up, interface: port,
                       externalIds: externalIds.merging(["iface-id": port, "attached-mac": endpoint.mac.description]) { _, own in own })
    }

    /// The network namespace a local endpoint's port was plugged into, nil when it has none here.
    public func boundNamespace(of endpointID: Int) -> String? { datapath.bindings.binding(of: endpointID)?.port.namespacePath }

    /// Removes an endpoint's port and leaves the endpoint (and its address) in place.
    public func unplug(_ endpoint: Endpoint) async throws {
        try await datapath.detach(endpoint, domainID: try await domainID(of: endpoint))
    }

    /// The id of an endpoint's domain: from the desired state when this host serves it, else from the controller.
    private func domainID(of endpoint: Endpoint) async throws -> Int {
        if let domain = await state.desired?.domains.first(where: { $0.path == endpoint.domain }) { return domain.id }
        let domain: Domain = try await client.get("/api/v1/domains/\(endpoint.domain)")
        return domain.id
    }

    /// Puts a refused attachment in the controller's event log (best effort: the agent's log has it too).
    public func reportRefusal(_ refusal: AttachRefusal) async {
        logger.warning("refused to attach \(refusal.container ?? refusal.path): \(refusal.reason)")
        _ = try? await client.send(.POST, "/api/v1/hosts/\(configuration.host)/refusals", body: try JSONCoding.encoder().encode(refusal))
    }

    /// Removes the endpoint's port, then deletes it at the controller, releasing its address.
    public func detach(_ request: DetachRequest) async throws {
        try await detach(try await client.get("/api/v1/endpoints/\(request.endpoint)") as Endpoint)
    }

    /// Removes the port of an endpoint read just before, then deletes it at the controller.
    func detach(_ endpoint: Endpoint) async throws {
        guard endpoint.host == configuration.host else {
            throw TrellisError.conflict("\(endpoint.path) is on host \(endpoint.host ?? "none"), not \(configuration.host)")
        }
        try await unplug(endpoint)
        try await client.delete("/api/v1/endpoints/\(endpoint.id)")
    }
}
