import TrellisModel

/// Bodies of Docker's plugin protocol for remote network drivers and remote IPAM drivers
/// (moby libnetwork `docs/remote.md`, `docs/ipam.md`). The engine POSTs JSON to `/Plugin.Activate`,
/// `/NetworkDriver.*` and `/IpamDriver.*`, without a Content-Type, accepting
/// `application/vnd.docker.plugins.v1.2+json`. A network driver reports failure as `{"Err": "…"}`,
/// an IPAM driver as `{"Error": "…"}`. Field names are the engine's.
public enum PluginProtocol {
    /// The content type of answers.
    public static let contentType = "application/vnd.docker.plugins.v1+json"
    /// Where an engine finds a plugin named `trellis`.
    public static let defaultSocket = "/run/docker/plugins/trellis.sock"
    /// The driver option naming the subnet a network stands for.
    public static let subnetOption = "trellis.subnet"
    static let genericOptions = "com.docker.network.generic"
    static let addressTypeOption = "RequestAddressType"
    static let gatewayAddressType = "com.docker.network.gateway"
    /// The pool answered when Docker asks for one without saying which (no `--subnet`, no `--ipam-opt`).
    static let unspecifiedPool = "0.0.0.0/0"
}

struct ActivateResponse: Encodable { var Implements: [String] }

struct CapabilitiesResponse: Encodable {
    var Scope: String
    var ConnectivityScope: String
}

struct NetworkError: Encodable { var Err: String }
struct IPAMError: Encodable { var Error: String }
struct Empty: Codable {}

/// The driver's options in a CreateNetwork: `{"com.docker.network.generic": {"trellis.subnet": "…"}, …}`.
struct CreateNetworkRequest: Decodable {
    struct IPAMData: Decodable {
        var AddressSpace: String?
        var Pool: String?
        var Gateway: String?
    }

    var NetworkID: String
    var Options: [String: JSONValue]?
    var IPv4Data: [IPAMData]?
    var IPv6Data: [IPAMData]?

    var generic: [String: String] {
        guard case .object(let values)? = Options?[PluginProtocol.genericOptions] else { return [:] }
        return values.compactMapValues { if case .string(let text) = $0 { text } else { nil } }
    }
}

struct NetworkRequest: Decodable { var NetworkID: String }

struct EndpointRequest: Decodable {
    var NetworkID: String
    var EndpointID: String
}

struct CreateEndpointRequest: Decodable {
    struct Interface: Decodable {
        var Address: String?
        var AddressIPv6: String?
        var MacAddress: String?
    }

    var NetworkID: String
    var EndpointID: String
    var Interface: Interface?
}

struct CreateEndpointResponse: Encodable {
    struct Interface: Encodable { var MacAddress: String }
    var Interface: Interface?
}

struct JoinRequest: Decodable {
    var NetworkID: String
    var EndpointID: String
    var SandboxKey: String
}

struct JoinResponse: Encodable {
    struct InterfaceName: Encodable {
        var SrcName: String
        var DstPrefix: String
    }

    var InterfaceName: InterfaceName
    var Gateway: String
}

struct OperInfoResponse: Encodable { var Value: [String: String] }

struct AddressSpacesResponse: Encodable {
    var LocalDefaultAddressSpace: String
    var GlobalDefaultAddressSpace: String
}

struct IPAMCapabilitiesResponse: Encodable {
    var RequiresMACAddress: Bool
    var RequiresRequestReplay: Bool
}

struct RequestPoolRequest: Decodable {
    var AddressSpace: String?
    var Pool: String?
    var SubPool: String?
    var Options: [String: String]?
    var V6: Bool?
}

struct RequestPoolResponse: Encodable {
    var PoolID: String
    var Pool: String
    var Data: [String: String]
}

struct PoolRequest: Decodable { var PoolID: String }

struct RequestAddressRequest: Decodable {
    var PoolID: String
    var Address: String?
    var Options: [String: String]?
}

struct RequestAddressResponse: Encodable {
    var Address: String
    var Data: [String: String]
}

struct ReleaseAddressRequest: Decodable {
    var PoolID: String
    var Address: String
}
