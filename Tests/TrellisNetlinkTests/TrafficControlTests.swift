import Foundation
import Glibc
import Testing
@testable import TrellisAgent
import TrellisModel
import TrellisNetlink
import TrellisNetlinkWire
import TrellisTestSupport

/// Rate limits set over rtnetlink, read back by iproute2's `tc`, which we did not write.
@Suite(.enabled(if: getuid() == 0 && FileManager.default.fileExists(atPath: "/usr/sbin/tc"), "needs root and tc"))
struct TrafficControlTests {
    /// `tc -d qdisc show dev DEVICE root` without what differs between two devices (handle, refcount).
    func shownRoot(_ namespace: NetworkNamespace, _ device: String) throws -> String {
        let shown = try runProgram(["/usr/bin/nsenter", "--net=\(namespace.path)", "/usr/sbin/tc", "-d", "qdisc", "show", "dev", device,
                                    "root"]).output
        return shown.replacingOccurrences(of: #"[0-9a-f]+: root refcnt \d+"#, with: "ROOT", options: .regularExpression)
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }

    @Test func shapingOverNetlinkIsWhatTcWouldHaveMade() throws {
        let name = "trtc\(UInt16.random(in: 0...UInt16.max))"
        let namespace = try NetworkNamespace.create(named: name)
        defer { try? NetworkNamespace.delete(named: name) }
        let netlink = try RouteNetlink(in: namespace)
        for (port, peer) in [("trv1", "peer1"), ("cmp1", "cmpp1")] {
            try netlink.createLink(LinkSpec(name: port, kind: .veth(peerName: peer, peerMAC: nil, peerNamespace: nil), up: true))
        }
        try netlink.createLink(LinkSpec(name: "tri1", kind: .ifb, up: true))
        let tc = try TrafficControl(namespacePath: namespace.path)
        let shaping = PortShaping(port: "trv1", shaper: "tri1", egress: RateLimit(bitsPerSecond: 5_000_000, burstBytes: 30_000),
                                  ingress: RateLimit(bitsPerSecond: 10_000_000))
        let fresh = try tc.qdiscs()
        #expect(fresh.root["trv1"] == "noqueue" && fresh.ingress.isEmpty && fresh.devices["tri1"] != nil)
        let operations = shaping.operations(current: fresh)
        #expect(operations.count == 3)
        try tc.apply(operations, devices: fresh.devices)

        // The same qdiscs as tc makes from the same words on another device.
        let tcCommand = ["/usr/bin/nsenter", "--net=\(namespace.path)", "/usr/sbin/tc", "qdisc", "replace", "dev", "cmp1", "root", "tbf"]
        #expect(try runProgram(tcCommand + ["rate", "10000000bit", "burst", "16000", "latency", "50ms"]).status == 0)
        let port = try shownRoot(namespace, "trv1"), byTc = try shownRoot(namespace, "cmp1")
        #expect(port == byTc)
        #expect(port.contains("rate 10Mbit burst 16000b"))
        #expect(try runProgram(tcCommand + ["rate", "5000000bit", "burst", "30000", "latency", "50ms"]).status == 0)
        let shaper = try shownRoot(namespace, "tri1"), shaperByTc = try shownRoot(namespace, "cmp1")
        #expect(shaper == shaperByTc)
        let filters = try runProgram(["/usr/bin/nsenter", "--net=\(namespace.path)", "/usr/sbin/tc", "filter", "show", "dev", "trv1",
                                      "parent", "ffff:"]).output
        #expect(filters.contains("match 00000000/00000000 at 0"))
        #expect(filters.contains("mirred (Egress Redirect to device tri1) stolen"))

        // Read back, the plan for the same limits only renews the buckets; applying it again is harmless.
        let shaped = try tc.qdiscs()
        #expect(shaped.root["trv1"] == "tbf" && shaped.root["tri1"] == "tbf" && shaped.ingress == ["trv1"])
        #expect(try netlink.qdiscs().first { $0.index == shaped.devices["trv1"] && $0.isRoot }?.tokenBucket
            == PortShaping.tokenBucket(RateLimit(bitsPerSecond: 10_000_000)))
        let again = shaping.operations(current: shaped)
        #expect(again == [.shape(device: "trv1", PortShaping.tokenBucket(RateLimit(bitsPerSecond: 10_000_000))),
                          .shape(device: "tri1", PortShaping.tokenBucket(RateLimit(bitsPerSecond: 5_000_000, burstBytes: 30_000)))])
        try tc.apply(again, devices: shaped.devices)

        // Without limits the port is as it was; removing twice (from a stale reading) is not an error.
        let removal = PortShaping.unlimited("trv1").operations(current: shaped)
        #expect(removal == [.removeShaping(device: "trv1"), .removeIngress(device: "trv1")])
        try tc.apply(removal, devices: shaped.devices)
        try tc.apply(removal, devices: shaped.devices)
        let cleared = try tc.qdiscs()
        #expect(cleared.root["trv1"] == "noqueue" && cleared.ingress.isEmpty)
        #expect(PortShaping.unlimited("trv1").operations(current: cleared).isEmpty)
        #expect(throws: NetlinkError.self) { try tc.apply([.removeIngress(device: "nonesuch")], devices: cleared.devices) }
    }
}
