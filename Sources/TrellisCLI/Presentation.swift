import Foundation
import TrellisModel

/// How the CLI prints one kind of object: as a table row and as `show` fields.
protocol Presentable: Resource {
    static var columns: [String] { get }
    var row: [String] { get }
    var fields: [(String, String)] { get }
}

extension Presentable {
    var fields: [(String, String)] { zip(Self.columns, row).map { ($0.lowercased(), $1) } }
}

extension Enterprise: Presentable {
    static let columns = ["NAME", "DESCRIPTION"]
    var row: [String] { [name, text(description)] }
}

extension Domain: Presentable {
    static let columns = ["PATH", "ID", "DESCRIPTION"]
    var row: [String] { [path, String(id), text(description)] }
}

extension Zone: Presentable {
    static let columns = ["PATH", "DESCRIPTION"]
    var row: [String] { [path, text(description)] }
}

extension Subnet: Presentable {
    static let columns = ["PATH", "CIDR", "GATEWAY", "VNI", "DHCP", "RESERVED"]
    var row: [String] {
        [path, cidr.description, gateway.description, String(vni), dhcp ? "on" : "off",
         reserved.isEmpty ? "-" : reserved.map(\.description).joined(separator: ",")]
    }
    var fields: [(String, String)] {
        zip(Self.columns, row).map { ($0.lowercased(), $1) } + [("gateway-mac", gatewayMAC.description), ("description", text(description))]
    }
}

extension Endpoint: Presentable {
    static let columns = ["PATH", "ID", "KIND", "HOST", "INTERFACE", "MAC", "IP", "STATE", "PROFILE"]
    var row: [String] {
        [path, String(id), kind.rawValue, text(host), text(interface), mac.description, ip.description, state.rawValue, text(profile)]
    }
    var fields: [(String, String)] {
        zip(Self.columns, row).map { ($0.lowercased(), $1) } + [("owner", text(owner))]
            + (egressRate == nil && ingressRate == nil ? [] : [("egress", rate(egressRate)), ("ingress", rate(ingressRate))])
            + externalIds.sorted(by: { $0.key < $1.key }).map { ("external-id \($0.key)", $0.value) }
    }
}

extension HostRecord: Presentable {
    static let columns = ["NAME", "UNDERLAY", "STATUS", "LAST-HEARTBEAT", "APPLIED-REVISION"]
    var row: [String] {
        [name, underlayIP.description, status.rawValue, lastHeartbeat.map { ISO8601DateFormatter().string(from: $0) } ?? "never",
         text(appliedRevision)]
    }
}

extension PortProfile: Presentable {
    static let columns = ["PATH", "RULES", "EGRESS", "INGRESS", "FLOW-STATS"]
    var row: [String] {
        [path, String(rules.count), rate(egressRate), rate(ingressRate), flowStats ? "on" : "off"]
    }
    var fields: [(String, String)] {
        [("path", path)]
            + [("egress", rate(egressRate)), ("ingress", rate(ingressRate)), ("flow-stats", flowStats ? "on" : "off")]
            + rules.enumerated().map { ("rule \($0)", $1.description) }
    }
}

extension NetworkPolicy: Presentable {
    static let columns = ["PATH", "RULES", "DESCRIPTION"]
    var row: [String] { [path, String(rules.count), text(description)] }
    var fields: [(String, String)] {
        [("path", path), ("description", text(description))] + rules.enumerated().map { ("rule \($0)", $1.description) }
    }
}

extension User: Presentable {
    static let columns = ["NAME", "ENTERPRISE", "ADMIN"]
    var row: [String] { [name, text(enterprise), admin ? "yes" : "no"] }
}

func rate(_ limit: RateLimit?) -> String {
    guard let limit else { return "-" }
    let bits = limit.bitsPerSecond
    let shown = bits % 1_000_000_000 == 0 ? "\(bits / 1_000_000_000)gbit"
        : bits % 1_000_000 == 0 ? "\(bits / 1_000_000)mbit" : bits % 1000 == 0 ? "\(bits / 1000)kbit" : "\(bits)bit"
    return limit.burstBytes.map { "\(shown) burst \($0)b" } ?? shown
}
