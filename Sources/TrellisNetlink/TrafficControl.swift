import Glibc
import TrellisNetlinkWire

/// One change to the traffic control of a namespace's devices, by device name.
public enum TrafficControlOperation: Equatable, Sendable {
    /// Shapes what the device sends with a token bucket filter as its root qdisc.
    case shape(device: String, TokenBucket)
    /// Puts back the device's default root qdisc.
    case removeShaping(device: String)
    /// Redirects everything the device receives to the egress of `target` (an ifb that shapes it).
    case redirectIngress(device: String, target: String)
    /// Removes the device's ingress qdisc and its redirect.
    case removeIngress(device: String)
}

/// Traffic control inside a network namespace over rtnetlink: qdiscs read in one dump, and changed one
/// request each, with no `tc` process.
public struct TrafficControl: Sendable {
    /// What a namespace's devices have: the kind of each root qdisc and which have an ingress qdisc.
    public struct Qdiscs: Sendable, Equatable {
        public var root: [String: String] = [:]
        public var ingress: Set<String> = []
        /// Every device of the namespace, by name, with its index.
        public var devices: [String: Int32] = [:]

        public init(root: [String: String] = [:], ingress: Set<String> = [], devices: [String: Int32] = [:]) {
            self.root = root
            self.ingress = ingress
            self.devices = devices
        }
    }

    private let netlink: RouteNetlink

    public init(namespacePath: String) throws {
        netlink = try RouteNetlink(in: NetworkNamespace(path: namespacePath))
    }

    public func qdiscs() throws -> Qdiscs {
        var result = Qdiscs()
        for link in try netlink.links() { result.devices[link.name] = link.index }
        let names = Dictionary(result.devices.map { ($0.value, $0.key) }, uniquingKeysWith: { first, _ in first })
        for qdisc in try netlink.qdiscs() {
            guard let name = names[qdisc.index] else { continue }
            // A clsact qdisc is the fast path's hook (`RouteNetlink.hookIngress`), not a rate limit's.
            if qdisc.isIngress {
                if qdisc.kind == "ingress" { result.ingress.insert(name) }
            } else if qdisc.isRoot {
                result.root[name] = qdisc.kind
            }
        }
        return result
    }

    /// Applies `operations` in order; `devices` (from `qdiscs()`) gives their indexes.
    public func apply(_ operations: [TrafficControlOperation], devices: [String: Int32]) throws {
        func index(_ name: String) throws -> Int32 {
            guard let index = devices[name] else { throw NetlinkError(code: ENODEV, operation: "find link \(name)") }
            return index
        }
        for operation in operations {
            switch operation {
            case .shape(let device, let bucket): try netlink.replaceRootTokenBucket(index: index(device), bucket)
            case .removeShaping(let device): try netlink.deleteRootQdisc(index: index(device))
            case .redirectIngress(let device, let target): try netlink.redirectIngress(index: index(device), to: index(target))
            case .removeIngress(let device): try netlink.deleteIngressQdisc(index: index(device))
            }
        }
    }
}
