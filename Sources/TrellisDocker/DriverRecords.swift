import Foundation
import TrellisAgent
import TrellisModel

/// What the remote driver handed a Docker engine, kept on the host: the endpoint behind each address of
/// a pool and, once the engine has made its endpoint, that endpoint's id. Only this host's driver and
/// container monitor read it, so it stays here instead of in the endpoint's external ids, and survives
/// an agent restart (the engine still calls Leave, DeleteEndpoint and ReleaseAddress after one).
public struct DriverRecord: JournalEntry {
    public var endpointID: Int
    public var pool: String
    public var address: IPv4Address
    public var dockerEndpoint: String?
    public var key: Int { endpointID }
}

/// The driver's records, in a journal beside the agent's socket (`agent.sock` → `agent.docker.json`).
public typealias DriverRecords = Journal<DriverRecord>

extension Journal where Entry == DriverRecord {
    public static func path(agentSocket: String) -> String {
        ((agentSocket as NSString).deletingPathExtension as String) + ".docker.json"
    }

    /// The record of the address `address` of `pool`.
    func record(pool: String, address: IPv4Address) -> DriverRecord? {
        entries.values.first { $0.pool == pool && $0.address == address }
    }

    /// The record of the engine's endpoint `id`.
    func record(dockerEndpoint id: String) -> DriverRecord? { entries.values.first { $0.dockerEndpoint == id } }
}
