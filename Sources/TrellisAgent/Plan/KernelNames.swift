import TrellisModel
import TrellisNetlinkWire

/// Names of the kernel objects Trellis owns. Interface names have at most 15 bytes (IFNAMSIZ),
/// so they come from short numbers (VNI, endpoint id), never from user-chosen names.
public enum KernelNames {
    /// The router namespace of a domain on a host; the host name keeps lab hosts on one machine apart.
    public static func routerNamespace(host: String, domainID: Int) -> String { "\(routerPrefix(host: host))\(domainID)" }
    public static func routerPrefix(host: String) -> String { "trellis-\(host)-d" }
    public static func bridge(vni: Int) -> String { "trb\(vni)" }
    public static func vxlan(vni: Int) -> String { "trx\(vni)" }
    /// The host end of an endpoint's veth in its router namespace. A VM's port is its tap, named by its
    /// binding: `LocalBindingTable.portName(of:)` names every port.
    public static func port(endpointID: Int) -> String { "trv" + String(endpointID, radix: 36) }

    /// The ifb that shapes what an endpoint sends (its port's ingress is redirected there).
    public static func shaper(endpointID: Int) -> String { "tri" + String(endpointID, radix: 36) }

    /// A default tap name for a VM endpoint, from a random token (chosen before the endpoint has an id).
    public static func tap(token: UInt32) -> String { "trt" + String(token, radix: 36) }

    /// True for the links of a router namespace that Trellis made and may remove: its bridges, VXLAN
    /// devices and ports, and any tap (taps there are VM ports, whatever their name).
    static func isOwned(_ link: Link) -> Bool {
        link.name.hasPrefix("trb") || link.name.hasPrefix("trx") || link.name.hasPrefix("trv") || link.name.hasPrefix("tri")
            || link.kind == "tun"
    }
}
