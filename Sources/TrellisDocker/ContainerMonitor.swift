import Foundation
import Logging
import ServiceLifecycle
import TrellisAgent
import TrellisModel

/// Bottom-up activation, as Nuage's per-host monitor does it: follows the Docker engine's events and
/// attaches every container started with `--net=none` and Trellis variables to its subnet, on behalf
/// of the user it names; removes the port and releases the address when the container stops or dies.
/// At start, and whenever the event stream is reopened, it resyncs: running containers that lack a
/// port get one, and ports whose container is gone are removed. It also names the endpoints the
/// remote driver made after their containers, for DNS.
public actor ContainerMonitor: Service {
    /// External ids that tie an endpoint to its container.
    public static let containerKey = "docker-container"
    public static let containerNameKey = "container-name"

    let agent: Agent
    let engine: DockerEngine
    let records: DriverRecords
    let logger: Logger
    /// Endpoints of this host's containers, by container id.
    private var attached: [String: Endpoint] = [:]

    public init(agent: Agent, engine: DockerEngine, records: DriverRecords, logger: Logger = Logger(label: "trellis.docker")) {
        self.agent = agent
        self.records = records
        self.engine = engine
        self.logger = logger
    }

    /// Follows the engine until the service group shuts down, or the task is cancelled.
    public func run() async throws {
        await cancelWhenGracefulShutdown { await self.follow() }
    }

    /// Follows the engine's events until cancelled, reconnecting with backoff.
    func follow() async {
        var backoff = Duration.milliseconds(200)
        while !Task.isCancelled {
            do {
                let since = Int(Date().timeIntervalSince1970) - 1
                try await resync()
                backoff = .milliseconds(200)
                try await engine.events(since: since) { event in
                    await self.handle(event)
                    return true
                }
            } catch {
                logger.warning("Docker engine: \(error)")
            }
            try? await Task.sleep(for: backoff)
            backoff = min(backoff * 2, .seconds(5))
        }
    }

    func handle(_ event: EngineEvent) async {
        switch (event.Type, event.Action) {
        case ("container", "start"):
            do {
                try await attach(container: event.Actor.ID, startedAt: event.timeNano)
            } catch {
                logger.error("container \(event.Actor.ID.prefix(12)): \(error)")
            }
        case ("container", "die"):
            await detach(container: event.Actor.ID)
        case ("network", "connect") where event.Actor.Attributes?["type"] == RemoteDriver.name:
            if let container = event.Actor.Attributes?["container"] {
                await nameDriverEndpoint(network: event.Actor.ID, container: container)
            }
        default:
            break
        }
    }

    /// Attaches a running container if it asks for it and has no port yet (or one into a namespace it left).
    func attach(container id: String, startedAt: Int64? = nil) async throws {
        let details = try await engine.container(id)
        guard details.State.Running, details.State.Pid > 0 else { return }
        let variables: ContainerVariables
        do {
            guard let parsed = try ContainerVariables.parse(env: details.Config.Env ?? [],
                                                            labels: details.Config.Labels ?? [:]) else { return }
            variables = parsed
        } catch let error as TrellisError {
            await agent.reportRefusal(AttachRefusal(path: details.name, reason: error.message, container: id))
            return
        }
        guard details.HostConfig.NetworkMode == "none" else {
            await agent.reportRefusal(AttachRefusal(path: variables.subnetPath,
                reason: "the container must be started with --net=none (it has \(details.HostConfig.NetworkMode ?? "no network mode"))",
                    container: id, user: variables.user))
            return
        }
        let netns = "/proc/\(details.State.Pid)/ns/net"
        if let existing = attached[id] {
            if agent.boundNamespace(of: existing.id) == netns { return }
            await detach(container: id)
        }
        let name = ContainerVariables.endpointName(container: details.name, id: id)
        let request = AttachRequest(subnet: variables.subnetPath, name: name, ip: variables.ip, profile: variables.profile,
                                    pid: details.State.Pid,
                                    user: variables.user, owner: id,
                                    externalIds: [Self.containerKey: id, Self.containerNameKey: details.name, "vm-uuid": id,
                                                  "vm-name": details.name])
        do {
            let endpoint = try await agent.attach(request)
            attached[id] = endpoint
            if let startedAt {
                let since = Date().timeIntervalSince1970 * 1000 - Double(startedAt) / 1e6
                let milliseconds = String(format: "%.1f", since)
                let attachment = "\(endpoint.path) (\(endpoint.ip))"
                logger.info("attached container \(details.name) as \(attachment) \(milliseconds) ms after its start event")
            } else {
                logger.info("attached container \(details.name) as \(endpoint.path) (\(endpoint.ip))")
            }
        } catch let error as TrellisError {
            await agent.reportRefusal(AttachRefusal(path: "\(variables.subnetPath)/\(name)",
                                                    reason: "as user \(variables.user): \(error.message)",
                                                    container: id, user: variables.user))
        }
    }

    /// Removes the ports of a container and releases their addresses.
    func detach(container id: String) async {
        guard let endpoint = attached.removeValue(forKey: id) else { return }
        do {
            try await agent.detach(DetachRequest(endpoint: endpoint.path))
            logger.info("detached container \(id.prefix(12)) (\(endpoint.path))")
        } catch let error as TrellisError where error.code == .notFound {
            // Already gone.
        } catch {
            logger.error("detaching container \(id.prefix(12)) (\(endpoint.path)) failed: \(error)")
        }
    }

    /// Brings the host's container ports in line with the engine's running containers.
    func resync() async throws {
        let running = Set(try await engine.runningContainers())
        let listed: ListBody<Endpoint> = try await agent.client.get("/api/v1/endpoints?host=\(agent.configuration.host)")
        attached = [:]
        for endpoint in listed.items {
            if let container = endpoint.externalIds[Self.containerKey] { attached[container] = endpoint }
        }
        for (container, _) in attached where !running.contains(container) {
            await detach(container: container)
        }
        for container in running {
            do {
                try await attach(container: container)
            } catch {
                logger.error("container \(container.prefix(12)): \(error)")
            }
        }
        try await RemoteDriver.removeStaleEndpoints(agent: agent, engine: engine, records: records, listed: listed.items, logger: logger)
    }

    /// Gives an endpoint of the remote driver its container's name, for DNS.
    func nameDriverEndpoint(network: String, container: String) async {
        do {
            let details = try await engine.container(container)
            let settings = details.NetworkSettings?.Networks?.values.first { $0.NetworkID == network }
            guard let endpointID = settings?.EndpointID else { return }
            guard let record = records.record(dockerEndpoint: endpointID) else { return }
            let hostname = ContainerVariables.endpointName(container: details.name, id: container)
            let _: Endpoint = try await agent.client.patch("/api/v1/endpoints/\(record.endpointID)", EndpointUpdate(
                externalIds: ["container-id": container, Self.containerNameKey: details.name], hostname: hostname))
        } catch {
            logger.warning("naming the endpoint of container \(container.prefix(12)) on network \(network.prefix(12)): \(error)")
        }
    }
}
