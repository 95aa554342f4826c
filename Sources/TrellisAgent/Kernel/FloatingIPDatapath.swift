import Foundation
import TrellisModel
import TrellisPolicy
import TrellisNetlink
import TrellisNetlinkWire

/// Floating IPs on the host of their endpoint: a veth "uplink" joins the domain's router namespace to
/// the host namespace (a link-local /30 per domain), the host routes each floating IP into the router
/// and answers ARP for it on the underlay (proxy ARP), and the router translates it (DNAT in, SNAT
/// out, in its nftables ruleset).
extension Datapath {
    /// The host end of a domain's uplink; the router end is `FirewallRuleset.uplink`.
    static func uplinkName(domainID: Int) -> String { "tru" + String(domainID, radix: 36) }

    /// The /30 of a domain's uplink in 169.254.0.0/16: the host end takes .1, the router end .2.
    static func uplinkAddresses(domainID: Int) -> (host: IPv4Address, router: IPv4Address) {
        let base = 0xA9FE_0000 as UInt32 + UInt32(truncatingIfNeeded: domainID % 16_384) * 4
        return (IPv4Address(base + 1), IPv4Address(base + 2))
    }

    /// Makes (or, with no floating IP, removes) the uplink of one domain and the host's routes to its floating IPs.
    func syncUplink(_ domain: DesiredDomain, _ router: RouterNamespace, _ floating: [FloatingIPTranslation],
                    _ report: inout ReconcileReport) throws {
        // With no floating IP anywhere since the host side was last found clean, there is nothing to look at.
        if floating.isEmpty && hostSideClean { return }
        let name = Self.uplinkName(domainID: domain.id)
        var link = try hostNetlink.link(named: name)
        guard !floating.isEmpty else {
            if let link {
                try hostNetlink.deleteLink(index: link.index)
                report.removed.append(name)
            }
            return
        }
        let (hostAddress, routerAddress) = Self.uplinkAddresses(domainID: domain.id)
        if link == nil {
            try hostNetlink.createLink(LinkSpec(name: name, kind: .veth(peerName: FirewallRuleset.uplink, peerMAC: nil,
                                                                        peerNamespace: router.namespace.fd), up: true))
            link = try hostNetlink.requireLink(named: name)
            report.created.append(name)
        }
        guard let link else { return }
        if !(try hostNetlink.addresses()).contains(where: { $0.index == link.index && $0.address == hostAddress }) {
            try hostNetlink.addAddress(index: link.index, hostAddress, prefixLength: 30)
        }
        let inside = try router.netlink.requireLink(named: FirewallRuleset.uplink)
        if !inside.isUp { try router.netlink.setLink(index: inside.index, up: true) }
        if !(try router.netlink.addresses()).contains(where: { $0.index == inside.index && $0.address == routerAddress }) {
            try router.netlink.addAddress(index: inside.index, routerAddress, prefixLength: 30)
        }
        if !(try router.netlink.routes()).contains(where: { $0.destination == nil && $0.gateway == hostAddress }) {
            try router.netlink.replaceRoute(to: nil, via: hostAddress, index: inside.index)
        }
        let routes = try hostNetlink.routes().filter { $0.index == link.index && $0.destination?.prefixLength == 32 }
        let wanted = Set(floating.map(\.floating))
        for address in wanted where !routes.contains(where: { $0.destination?.network == address }) {
            try hostNetlink.replaceRoute(to: IPv4Network(network: address, prefixLength: 32), via: routerAddress, index: link.index)
        }
        for route in routes {
            guard let destination = route.destination, !wanted.contains(destination.network) else { continue }
            try hostNetlink.deleteRoute(to: destination, index: link.index)
        }
    }

    /// The host namespace's share: forwarding on when any floating IP is here, proxy ARP for exactly the
    /// floating IPs of this host on its underlay link, and no uplink of a domain it no longer serves.
    func syncHostSide(_ uplinks: [Int: [FloatingIPTranslation]], _ report: inout ReconcileReport) throws {
        let wanted = Set(uplinks.values.flatMap { $0.map(\.floating) })
        if wanted.isEmpty && hostSideClean { return }
        for link in try hostNetlink.links() where link.name.hasPrefix("tru") {
            guard let id = Int(link.name.dropFirst(3), radix: 36), uplinks[id] == nil else { continue }
            try hostNetlink.deleteLink(index: link.index)
            report.removed.append(link.name)
        }
        guard let underlay = try hostNetlink.addresses().first(where: { $0.address == configuration.underlayIP }) else { return }
        let proxies = try hostNetlink.proxyNeighbours().filter { $0.index == underlay.index }
        for address in wanted where !proxies.contains(where: { $0.address == address }) {
            try hostNetlink.replaceProxyNeighbour(index: underlay.index, address)
        }
        for proxy in proxies {
            guard let address = proxy.address, !wanted.contains(address) else { continue }
            try hostNetlink.deleteProxyNeighbour(index: underlay.index, address)
        }
        if !wanted.isEmpty {
            try (hostNamespace ?? NetworkNamespace.current()).setSysctl("net.ipv4.ip_forward", "1")
        }
        hostSideClean = wanted.isEmpty
    }
}
