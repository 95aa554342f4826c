import Foundation

/// Packets and bytes in one direction.
public struct TrafficCounters: Codable, Sendable, Equatable {
    public var packets: UInt64
    public var bytes: UInt64

    public init(packets: UInt64, bytes: UInt64) {
        self.packets = packets
        self.bytes = bytes
    }
}

/// Traffic of one endpoint as its host counted it.
public struct EndpointStats: Codable, Sendable, Equatable {
    public var endpoint: String
    public var id: Int
    public var host: String
    /// What the endpoint sent and what it received.
    public var sent: TrafficCounters
    public var received: TrafficCounters
    /// `nftables` (IPv4 packets forwarded, for profiles with flow statistics) or `interface` (every
    /// frame through the port, otherwise).
    public var source: String
    public var collectedAt: Date

    public init(endpoint: String, id: Int, host: String, sent: TrafficCounters, received: TrafficCounters, source: String,
                collectedAt: Date) {
        self.endpoint = endpoint; self.id = id; self.host = host; self.sent = sent; self.received = received
        self.source = source; self.collectedAt = collectedAt
    }
}

/// One tracked connection in a domain's router namespace on a host.
public struct Flow: Codable, Sendable, Equatable {
    public var domain: String
    public var host: String
    /// `tcp`, `udp`, `icmp` or a protocol number.
    public var `protocol`: String
    public var source: IPv4Address
    public var sourcePort: Int?
    public var destination: IPv4Address
    public var destinationPort: Int?
    /// The TCP state, e.g. `ESTABLISHED`.
    public var state: String?
    public var original: TrafficCounters
    public var reply: TrafficCounters
    /// The address the destination answered from when it differs (a floating IP's endpoint).
    public var translatedDestination: IPv4Address?
    /// The stage and rule that let the flow in, as the controller explains it under the current rules.
    public var decidedBy: PolicyStep?

    public init(domain: String, host: String, protocol: String, source: IPv4Address, sourcePort: Int?, destination: IPv4Address,
                destinationPort: Int?, state: String?, original: TrafficCounters, reply: TrafficCounters,
                translatedDestination: IPv4Address?,
                decidedBy: PolicyStep? = nil) {
        self.domain = domain; self.host = host; self.protocol = `protocol`; self.source = source; self.sourcePort = sourcePort
        self.destination = destination; self.destinationPort = destinationPort; self.state = state; self.original = original
        self.reply = reply; self.translatedDestination = translatedDestination; self.decidedBy = decidedBy
    }
}

/// What an agent reports every few seconds: its endpoints' counters and its current flows.
public struct HostStatsReport: Codable, Sendable, Equatable {
    public var collectedAt: Date
    public var endpoints: [EndpointStats]
    public var flows: [Flow]

    public init(collectedAt: Date, endpoints: [EndpointStats], flows: [Flow]) {
        self.collectedAt = collectedAt; self.endpoints = endpoints; self.flows = flows
    }
}

/// The answer of `GET /flows`.
public struct FlowList: Codable, Sendable, Equatable {
    public var items: [Flow]
    public init(items: [Flow]) { self.items = items }
}
