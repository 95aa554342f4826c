import Foundation
import TrellisClient
import TrellisModel

/// A client of a Docker engine's API on its unix socket.
public struct DockerEngine: Sendable {
    let http: ControllerClient

    public init(socket: String) {
        var http = ControllerClient(baseURL: ControllerClient.baseURL(socket: socket), token: nil)
        http.service = "the Docker engine"
        self.http = http
    }

    /// Follows container starts and deaths and network connections from `since` (seconds since 1970)
    /// on, until the engine ends the stream or `handle` returns false.
    public func events(since: Int, _ handle: @escaping @Sendable (EngineEvent) async throws -> Bool) async throws {
        let filters = #"{"type":["container","network"],"event":["start","die","connect"]}"#
        try await http.stream("/events" + ControllerClient.query([("since", String(since)), ("filters", filters)]), as: EngineEvent.self,
                              handle)
    }

    /// The ids of the running containers.
    public func runningContainers() async throws -> [String] {
        try await http.get("/containers/json", as: [ContainerSummary].self).map(\.Id)
    }

    public func container(_ id: String) async throws -> ContainerDetails {
        try await http.get("/containers/\(id)/json")
    }

    /// The networks whose driver is `driver`, with the containers attached to each.
    public func networks(driver: String) async throws -> [NetworkDetails] {
        let filters = #"{"driver":[""# + driver + #""]}"#
        let listed: [NetworkDetails] = try await http.get("/networks" + ControllerClient.query([("filters", filters)]))
        var detailed: [NetworkDetails] = []
        for network in listed where network.Driver == driver {
            detailed.append(try await http.get("/networks/\(network.Id)"))
        }
        return detailed
    }
}
