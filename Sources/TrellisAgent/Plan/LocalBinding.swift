import TrellisModel

/// How a local endpoint's port is plugged: facts only this host has (a namespace path, a tap's name),
/// kept on the host and never sent to the controller.
public enum PortBinding: Codable, Sendable, Equatable {
    /// A veth whose other end is `interface` inside the network namespace at `namespacePath`.
    case namespace(path: String, interface: String)
    /// A VM's persistent tap, `name`, in the router namespace.
    case tap(name: String)
    /// A veth whose other end, `interface`, was handed to a Docker engine to move into its container.
    case handover(interface: String)

    /// The namespace the port's other end lives in, when the agent put it there.
    public var namespacePath: String? {
        if case .namespace(let path, _) = self { return path }
        return nil
    }
}

/// One local endpoint's binding to this host: made by an attach before its port is planned, removed by
/// its detach, or once the controller says the endpoint was deleted or moved to another host.
public struct LocalBinding: Codable, Sendable, Equatable {
    public var endpointID: Int
    public var endpointPath: String
    /// The endpoint's revision when it was bound: a desired state older than that may not list it yet.
    public var revision: Int
    public var domainID: Int
    public var port: PortBinding

    public init(endpointID: Int, endpointPath: String, revision: Int, domainID: Int, port: PortBinding) {
        self.endpointID = endpointID
        self.endpointPath = endpointPath
        self.revision = revision
        self.domainID = domainID
        self.port = port
    }

    /// The binding of `endpoint` in `domainID`'s router, plugged as `port`.
    public init(_ endpoint: Endpoint, domainID: Int, port: PortBinding) {
        self.init(endpointID: endpoint.id, endpointPath: endpoint.path, revision: endpoint.revision, domainID: domainID, port: port)
    }

    /// The port's name in the router namespace: a VM's tap is named by its binding, a veth by its endpoint.
    public var portName: String {
        if case .tap(let name) = port { return name }
        return KernelNames.port(endpointID: endpointID)
    }

    /// How the planner makes the port when the router lacks it: a veth into the container's namespace
    /// (nil once that namespace is gone), a tap; a handed-over veth only its engine can move again.
    public func plug(mac: MACAddress, address: PortAddress?, namespaceExists: (String) -> Bool) -> PortPlug? {
        switch port {
        case .namespace(let path, let interface):
            namespaceExists(path) ? .veth(namespacePath: path, interface: interface, mac: mac, address: address) : nil
        case .tap: .tap
        case .handover: nil
        }
    }
}

/// The bindings of one host, by endpoint id, with the decisions the planner takes from them.
public struct LocalBindingTable: Sendable, Equatable {
    public var byEndpoint: [Int: LocalBinding]

    public init(_ bindings: [LocalBinding] = []) {
        byEndpoint = Dictionary(bindings.map { ($0.endpointID, $0) }, uniquingKeysWith: { _, last in last })
    }

    public init(byEndpoint: [Int: LocalBinding]) { self.byEndpoint = byEndpoint }

    /// The name of a local endpoint's port, bound or not.
    public func portName(of endpoint: Endpoint) -> String {
        byEndpoint[endpoint.id]?.portName ?? KernelNames.port(endpointID: endpoint.id)
    }

    /// Bindings whose endpoint `desired` does not list: attached ahead of it, or over. Their ports and
    /// router namespaces stay until the binding goes: a desired state is no proof that an endpoint is
    /// gone (a controller may publish two changes out of revision order), so only a detach, or the
    /// controller's answer to the agent, removes a binding.
    public func unlisted(in desired: DesiredState) -> [LocalBinding] {
        let listed = Set(desired.endpoints.map(\.id))
        return byEndpoint.values.filter { !listed.contains($0.endpointID) }.sorted { $0.endpointID < $1.endpointID }
    }

    /// Unlisted bindings that `desired` should have listed (it is as recent as their attach): the agent
    /// asks the controller whether their endpoint is still on this host.
    public func inDoubt(in desired: DesiredState) -> [LocalBinding] {
        Self.inDoubt(unlisted(in: desired), revision: desired.revision)
    }

    /// Of bindings a desired state of `revision` does not list, those it should have listed.
    static func inDoubt(_ unlisted: [LocalBinding], revision: Int) -> [LocalBinding] { unlisted.filter { $0.revision <= revision } }
}
