import Foundation
import Hummingbird
import Logging
import Synchronization
import TrellisNetlink
import TrellisNetlinkWire

/// The floor of every remote driver: Docker's network and IPAM plugin protocols answered at once,
/// with no work behind them. Addresses are what `--ip` asked for; Join hands over a veth made before
/// the run (outside the timing), whose other end is on a bridge in the engine's host. What remains
/// is what the engine's own plugin calls cost over its in-process bridge driver.
final class NullDriver: Sendable {
    static let name = "trellis-null"
    static let bridge = "trnull"
    static let gateway = "10.70.0.1"

    let socketPath: String
    let host: NetworkNamespace
    private let spares = Mutex<[String]>([])
    private let handedOver = Mutex<[String: String]>([:])
    private let counter = Mutex(0)

    /// A driver for the engine whose plugin directory is `plugins`, running in the network namespace `host`.
    init(plugins: String, host: NetworkNamespace) throws {
        socketPath = "\(plugins)/\(Self.name).sock"
        self.host = host
        let netlink = try RouteNetlink(in: host)
        if try netlink.link(named: Self.bridge) == nil {
            try netlink.createLink(LinkSpec(name: Self.bridge, kind: .bridge, up: true))
        }
    }

    /// Makes the veth the next Join hands over.
    func prepareSpare() throws {
        let number = counter.withLock { $0 += 1; return $0 }
        let name = "tnull\(number)"
        let netlink = try RouteNetlink(in: host)
        let bridge = try netlink.requireLink(named: Self.bridge)
        try netlink.createLink(LinkSpec(name: "tnpeer\(number)", kind: .veth(peerName: name, peerMAC: nil, peerNamespace: nil),
                                        master: bridge.index, up: true))
        spares.withLock { $0.append(name) }
    }

    /// Serves the plugin socket until the task is cancelled.
    func run() async throws {
        try? FileManager.default.removeItem(atPath: socketPath)
        let router = Router()
        let answers: [String: @Sendable ([String: Any]) throws -> Any] = [
            "/Plugin.Activate": { _ in ["Implements": ["NetworkDriver", "IpamDriver"]] },
            "/NetworkDriver.GetCapabilities": { _ in ["Scope": "local", "ConnectivityScope": "global"] },
            "/NetworkDriver.EndpointOperInfo": { _ in ["Value": [String: String]()] },
            "/NetworkDriver.Join": { body in
                guard let name = self.spares.withLock({ $0.isEmpty ? nil : $0.removeFirst() }) else { return ["Err": "no spare veth"] }
                self.handedOver.withLock { $0[body["EndpointID"] as? String ?? ""] = name }
                return ["InterfaceName": ["SrcName": name, "DstPrefix": "eth"], "Gateway": Self.gateway]
            },
            "/NetworkDriver.Leave": { body in
                // The engine has moved the interface back to the host: remove it, as a real driver would.
                if let name = self.handedOver.withLock({ $0.removeValue(forKey: body["EndpointID"] as? String ?? "") }) {
                    let netlink = try RouteNetlink(in: self.host)
                    if let link = try netlink.link(named: name) { try netlink.deleteLink(index: link.index) }
                }
                return [String: String]()
            },
            "/IpamDriver.GetCapabilities": { _ in ["RequiresMACAddress": false] },
            "/IpamDriver.GetDefaultAddressSpaces": { _ in ["LocalDefaultAddressSpace": "null", "GlobalDefaultAddressSpace": "null"] },
            "/IpamDriver.RequestPool": { _ in ["PoolID": "null", "Pool": "10.70.0.0/16", "Data": [String: String]()] },
            "/IpamDriver.RequestAddress": { body in
                let options = body["Options"] as? [String: String] ?? [:]
                if options["RequestAddressType"] == "com.docker.network.gateway" { return ["Address": "\(Self.gateway)/16",
                                                                                           "Data": [String: String]()] }
                guard let address = body["Address"] as? String, !address.isEmpty else { return ["Error": "the null driver needs --ip"] }
                return ["Address": "\(address)/16", "Data": [String: String]()]
            },
        ]
        for method in ["CreateNetwork", "DeleteNetwork", "CreateEndpoint", "DeleteEndpoint", "ProgramExternalConnectivity",
                       "RevokeExternalConnectivity", "DiscoverNew", "DiscoverDelete", "AllocateNetwork", "FreeNetwork"] {
            router.post(RouterPath("/NetworkDriver.\(method)")) { _, _ in Self.reply([String: String]()) }
        }
        for method in ["ReleasePool", "ReleaseAddress", "DiscoverNew", "DiscoverDelete"] {
            router.post(RouterPath("/IpamDriver.\(method)")) { _, _ in Self.reply([String: String]()) }
        }
        for (path, answer) in answers {
            router.post(RouterPath(path)) { request, _ -> Response in
                let data = Data(try await request.body.collect(upTo: 1 << 20).readableBytesView)
                let body = (try? JSONSerialization.jsonObject(with: data.isEmpty ? Data("{}".utf8) : data)) as? [String: Any] ?? [:]
                do {
                    return Self.reply(try answer(body))
                } catch {
                    return Self.reply(["Err": "\(error)"])
                }
            }
        }
        // Quiet: being cancelled at the end of the run is how this server stops, not an error.
        var logger = Logger(label: Self.name)
        logger.logLevel = .critical
        let app = Application(router: router, configuration: .init(address: .unixDomainSocket(path: socketPath), serverName: Self.name),
                              logger: logger)
        try await app.run()
    }

    static func reply(_ value: Any) -> Response {
        let data = (try? JSONSerialization.data(withJSONObject: value)) ?? Data("{}".utf8)
        return Response(status: .ok, headers: [.contentType: "application/vnd.docker.plugins.v1+json"],
                        body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}
