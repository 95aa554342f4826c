/// The parts of the Docker Engine API (v1.41) that Trellis reads: events, containers and networks.
/// Field names are the engine's.

/// One entry of `GET /events`.
public struct EngineEvent: Decodable, Sendable, Equatable {
    public struct Actor: Decodable, Sendable, Equatable {
        public var ID: String
        public var Attributes: [String: String]?
    }

    public var `Type`: String
    public var Action: String
    public var Actor: Actor
    public var timeNano: Int64?
}

/// An entry of `GET /containers/json`.
public struct ContainerSummary: Decodable, Sendable {
    public var Id: String
}

/// `GET /containers/{id}/json`, trimmed.
public struct ContainerDetails: Decodable, Sendable {
    public struct State: Decodable, Sendable {
        public var Running: Bool
        public var Pid: Int32
    }

    public struct Config: Decodable, Sendable {
        public var Env: [String]?
        public var Labels: [String: String]?
    }

    public struct HostConfig: Decodable, Sendable {
        public var NetworkMode: String?
    }

    public struct EndpointSettings: Decodable, Sendable {
        public var EndpointID: String?
        public var NetworkID: String?
    }

    public struct NetworkSettings: Decodable, Sendable {
        public var Networks: [String: EndpointSettings]?
    }

    public var Id: String
    /// With a leading `/`.
    public var Name: String
    public var State: State
    public var Config: Config
    public var HostConfig: HostConfig
    public var NetworkSettings: NetworkSettings?

    /// The name without its leading slash.
    public var name: String { Name.hasPrefix("/") ? String(Name.dropFirst()) : Name }
}

/// An entry of `GET /networks` and `GET /networks/{id}`, trimmed.
public struct NetworkDetails: Decodable, Sendable {
    public struct Member: Decodable, Sendable {
        public var EndpointID: String?
        public var Name: String?
    }

    public var Id: String
    public var Name: String
    public var Driver: String
    public var Containers: [String: Member]?
}
