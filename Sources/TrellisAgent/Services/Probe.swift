import Foundation
import CTrellisLinux
import Glibc
import TrellisModel
import TrellisNetlink
import TrellisNetlinkWire

/// `trellis explain --verify`: one real packet from a local container's port, traced by nftables, so the
/// computed explanation can be held against what the kernel did.
///
/// A chain of a table of its own (`netdev trellis_probe`) on the port's ingress hook, ahead of every Trellis
/// chain, marks the probe (`meta nftrace set 1`); the trace events of the router namespace
/// (`NFNLGRP_NFTRACE`, as `nft monitor trace` reads them) name each rule, return and policy the packet met.
/// The table is removed afterwards whatever happens.
enum Probe {
    static let table = "trellis_probe"

    /// The tracing table for a probe from `source` leaving through `port` (the port's ingress is what the
    /// container sends).
    static func tracingRuleset(port: String, source: IPv4Address, request: ProbeRequest) -> String {
        var match = "ip saddr \(source) ip daddr \(request.to)"
        switch request.protocol {
        // Only the connection's first packet: the handshake's later packets would add their own traces.
        case .tcp: match += " tcp dport \(request.port ?? 0) tcp flags & (syn | ack) == syn"
        case .udp: match += " udp dport \(request.port ?? 0)"
        case .icmp: match += " icmp type echo-request"
        case .any: break
        }
        // The port's ingress sees the port guard; the mark does not survive into the bridge and IP hooks of the
        // router namespace, so those mark the probe again ahead of Trellis's chains there.
        return """
        table netdev \(table) {
          chain trace {
            type filter hook ingress device "\(port)" priority -1000; policy accept;
            \(match) meta nftrace set 1
          }
        }
        table bridge \(table) {
          chain trace {
            type filter hook prerouting priority -1000; policy accept;
            \(match) meta nftrace set 1
          }
        }
        table inet \(table) {
          chain trace {
            type filter hook prerouting priority -1000; policy accept;
            \(match) meta nftrace set 1
          }
        }

        """
    }

    static let removal = ["netdev", "bridge", "inet"].map { "table \($0) \(table) {}\ndelete table \($0) \(table)\n" }.joined()

    /// The steps of the first traced packet (Trellis's own chains only) and the verdict they add up to.
    static func result(of events: [NFTraceEvent], rules: [String: String], answered: Bool?) -> ProbeResult {
        let steps = events.filter { $0.table != table }.map { event in
            ProbeStep(family: familyName(event.family), table: event.table, chain: event.chain, handle: event.ruleHandle.map(Int.init),
                      rule: event.ruleHandle.flatMap { rules["\(familyName(event.family)) \(event.table) \($0)"] },
                      kind: event.kind.rawValue, verdict: event.verdict)
        }
        return ProbeResult(verdict: steps.contains { $0.verdict == "drop" } ? .deny : .allow, steps: steps, answered: answered)
    }

    static func familyName(_ family: UInt8) -> String {
        switch family {
        case 1: "inet"
        case 2: "ip"
        case 5: "netdev"
        case 7: "bridge"
        case 10: "ip6"
        default: "family \(family)"
        }
    }

    /// Rule texts of an `nft -a list ruleset` listing by `FAMILY TABLE HANDLE`.
    static func ruleTexts(_ listing: String) -> [String: String] {
        var texts: [String: String] = [:]
        var table = ""
        for line in listing.split(separator: "\n").map({ $0.trimmingCharacters(in: .whitespaces) }) {
            let words = line.split(separator: " ")
            if words.first == "table", words.count >= 3 { table = "\(words[1]) \(words[2])" }
            guard let mark = line.range(of: " # handle "), !line.hasPrefix("table"), !line.hasPrefix("chain"),
                  let handle = Int(line[mark.upperBound...].trimmingCharacters(in: .whitespaces)) else { continue }
            texts["\(table) \(handle)"] = String(line[..<mark.lowerBound])
        }
        return texts
    }
}

/// Sends the probe's one packet from inside a namespace and reports whether an answer came within the wait.
struct ProbeSender {
    var request: ProbeRequest

    func send(waiting milliseconds: Int32) throws -> Bool? {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(request.port ?? 0).bigEndian
        address.sin_addr.s_addr = request.to.value.bigEndian
        let type: Int32, proto: Int32
        switch request.protocol {
        case .tcp: (type, proto) = (Int32(SOCK_STREAM.rawValue), Int32(IPPROTO_TCP))
        case .udp: (type, proto) = (Int32(SOCK_DGRAM.rawValue), Int32(IPPROTO_UDP))
        default: (type, proto) = (Int32(SOCK_RAW.rawValue), Int32(IPPROTO_ICMP))
        }
        let fd = socket(AF_INET, type | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), proto)
        guard fd >= 0 else { throw NetlinkError(code: errno, operation: "socket for the probe") }
        defer { close(fd) }
        let length = socklen_t(MemoryLayout<sockaddr_in>.size)
        switch request.protocol {
        case .tcp:
            _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, length) } }
            var waiting = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            guard poll(&waiting, 1, milliseconds) > 0 else { return false }
            var error: Int32 = 0
            var size = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &size)
            // Connected, or refused by the destination: either way the SYN arrived and was answered.
            return error == 0 || error == ECONNREFUSED
        case .udp:
            let payload: [UInt8] = Array("trellis probe".utf8)
            _ = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(fd, payload, payload.count, 0, $0, length) }
            }
            return nil
        default:
            let packet = Self.echoRequest(identifier: UInt16.random(in: 1...UInt16.max))
            _ = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(fd, packet, packet.count, 0, $0, length) }
            }
            var waiting = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let deadline = DispatchTime.now().uptimeNanoseconds + UInt64(milliseconds) * 1_000_000
            var buffer = [UInt8](repeating: 0, count: 1500)
            while DispatchTime.now().uptimeNanoseconds < deadline {
                let left = Int32((deadline - DispatchTime.now().uptimeNanoseconds) / 1_000_000)
                guard poll(&waiting, 1, max(1, left)) > 0 else { return false }
                let count = recv(fd, &buffer, buffer.count, 0)
                // An IPv4 header, then ICMP type 0 (echo reply) with our identifier.
                guard count > 0 else { continue }
                let headerLength = Int(buffer[0] & 0x0f) * 4
                if count >= headerLength + 8, buffer[headerLength] == 0, buffer[headerLength + 4] == packet[4],
                   buffer[headerLength + 5] == packet[5] { return true }
            }
            return false
        }
    }

    /// An ICMP echo request with its checksum.
    static func echoRequest(identifier: UInt16) -> [UInt8] {
        var packet: [UInt8] = [8, 0, 0, 0, UInt8(identifier >> 8), UInt8(identifier & 0xff), 0, 1] + Array("trellis probe".utf8)
        var sum: UInt32 = 0
        for index in stride(from: 0, to: packet.count, by: 2) {
            sum += UInt32(packet[index]) << 8 | UInt32(index + 1 < packet.count ? packet[index + 1] : 0)
        }
        while sum >> 16 != 0 { sum = (sum & 0xffff) + (sum >> 16) }
        let checksum = ~UInt16(sum)
        packet[2] = UInt8(checksum >> 8)
        packet[3] = UInt8(checksum & 0xff)
        return packet
    }
}

extension Agent {
    /// Sends the probes the controller hands this host (`explain/verify` from the console or the API) and reports
    /// what the kernel did, one at a time, over a long poll that is open again as soon as it answers.
    func takeProbes() async {
        var backoff = Duration.milliseconds(500)
        let host = configuration.host
        while !Task.isCancelled {
            do {
                let probes: ListBody<HostProbe> = try await client.get("/api/v1/hosts/\(host)/probes?wait=20")
                backoff = .milliseconds(500)
                for probe in probes.items {
                    let report: ProbeReport
                    do {
                        report = ProbeReport(result: try await self.probe(probe.request))
                    } catch {
                        report = ProbeReport(error: String("\(error)".prefix(2048)))
                    }
                    _ = try await client.send(.POST, "/api/v1/hosts/\(host)/probes/\(probe.id)",
                                              body: try JSONCoding.encoder().encode(report))
                }
            } catch {
                logger.debug("taking probes: \(error)")
                try? await Task.sleep(for: backoff)
                backoff = min(backoff * 2, .seconds(5))
            }
        }
    }
}

private let probeInProgress = NSLock()

extension Agent {
    /// Sends a traced probe from a container endpoint attached on this host and reports what the kernel did.
    func probe(_ request: ProbeRequest) async throws -> ProbeResult {
        guard let desired = await state.desired,
              let endpoint = desired.endpoints.first(where: { $0.path == request.from && $0.host == configuration.host }) else {
            throw TrellisError.invalid("from: '\(request.from)' is not an endpoint attached on this host (\(configuration.host))",
                                       field: "from")
        }
        let binding = datapath.bindings.binding(of: endpoint.id)
        guard let binding, let path = binding.port.namespacePath else {
            let what = endpoint.kind == .vm ? "is a VM" : binding == nil ? "has no port here yet" : "was handed to its engine by Docker"
            throw TrellisError.invalid("from: a probe is sent from a namespace the agent plugged; \(request.from) \(what)", field: "from")
        }
        guard request.protocol != .any, request.protocol == .icmp || (1...65535).contains(request.port ?? 0) else {
            throw TrellisError.invalid("port: tcp and udp probes need a port from 1 to 65535", field: "port")
        }
        guard let domain = desired.domains.first(where: { $0.path == endpoint.domain }) else {
            throw TrellisError.invalid("from: the domain of \(request.from) is not on this host yet", field: "from")
        }
        let router = try NetworkNamespace(named: KernelNames.routerNamespace(host: configuration.host, domainID: domain.id))
        let container = try NetworkNamespace(path: path)
        let port = binding.portName
        let source = endpoint.ip
        // The probe blocks on the netlink socket and on the packet's answer for up to a second or two: a thread of its
        // own, never the cooperative pool.
        return try await onOwnThread { try Self.traced(request, from: source, port: port, router: router, container: container) }
    }

    /// The probe itself: marks, sends, collects the trace, removes its tables.
    private static func traced(_ request: ProbeRequest, from source: IPv4Address, port: String, router: NetworkNamespace,
                               container: NetworkNamespace) throws -> ProbeResult {
        // One probe at a time: each loads the same tracing tables.
        probeInProgress.lock()
        defer { probeInProgress.unlock() }
        let trace = try router.run { try NetlinkSocket(family: Conntrack.NETLINK_NETFILTER) }
        try trace.join(group: NFTraceEvent.group)
        try NFTables.load(Probe.tracingRuleset(port: port, source: source, request: request), namespacePath: router.path)
        defer { try? NFTables.load(Probe.removal, namespacePath: router.path) }
        let answered = try container.run { try ProbeSender(request: request).send(waiting: 1000) }
        var events: [NFTraceEvent] = []
        while case let messages = try trace.events(within: 300), !messages.isEmpty {
            events += messages.compactMap { try? NFTraceEvent($0) }
        }
        let listing = try NFTables.run("list ruleset", namespacePath: router.path, handles: true)
        return Probe.result(of: events, rules: Probe.ruleTexts(listing), answered: answered)
    }
}
