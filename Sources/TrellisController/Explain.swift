import Foundation
import ServiceLifecycle
import TrellisModel
import TrellisPolicy
import TrellisStore

/// A flow's end as the caller named it: an endpoint path, an address (an endpoint's, if the caller sees one
/// with it), or a CIDR.
enum FlowReference {
    case endpoint(Endpoint)
    /// An address some of the caller's endpoints have, in different domains.
    case address(IPv4Address, candidates: [Endpoint])
    case network(IPv4Network)

    var endpoint: Endpoint? { if case .endpoint(let endpoint) = self { endpoint } else { nil } }
}

extension Registry {
    /// Which rule decides a new flow from `from` to `to` (`GET /api/v1/explain`): the domain's rules compiled as
    /// the agents compile them (`PolicyProgram`), evaluated for this one flow.
    public func explain(from: String?, to: String?, protocol protoText: String?, port portText: String?,
                        _ caller: Caller) async throws -> PolicyExplanation {
        if let host = caller.host { throw Caller.hostForbidden(host, "explain flows") }
        let proto = try Self.flowProtocol(protoText)
        let port = try Self.flowPort(portText, proto)
        guard let from, !from.isEmpty else { throw Self.missingEnd("from") }
        guard let to, !to.isEmpty else { throw Self.missingEnd("to") }
        let scope = caller.admin ? nil : caller.enterprise ?? ""
        let programs = self.programs
        return try await store.read { tx in
            var ends = [try Self.flowReference(from, field: "from", scope: scope, caller, tx),
                        try Self.flowReference(to, field: "to", scope: scope, caller, tx)]
            // An address several domains use is the endpoint in the domain of the other end.
            for (index, field) in [(0, "from"), (1, "to")] {
                guard case .address(let address, let candidates) = ends[index] else { continue }
                let other = ends[1 - index].endpoint?.domain
                guard let other, let chosen = candidates.first(where: { $0.domain == other }) else {
                    throw TrellisError.invalid("\(field): \(address) is an address in several domains; name the endpoint by its path",
                                               field: field)
                }
                ends[index] = .endpoint(chosen)
            }
            guard let anchor = ends[0].endpoint ?? ends[1].endpoint else {
                throw TrellisError.invalid("from: one end at least must be an endpoint (a path or its address)", field: "from")
            }
            let endpoints = ends.compactMap(\.endpoint)
            let program = try Self.policyProgram(domain: anchor.domain, endpoints: endpoints.filter { $0.domain == anchor.domain }, tx,
                                                 programs)
            let flowEnds = ends.map { end -> FlowEnd in
                switch end {
                case .endpoint(let endpoint): FlowEnd(endpoint: endpoint)
                case .network(let network): FlowEnd(network: network)
                case .address(let address, _): FlowEnd(network: IPv4Network(single: address))
                }
            }
            return program.explain(from: flowEnds[0], to: flowEnds[1], protocol: proto, port: port)
        }
    }

    /// The explanation of a flow from a container endpoint beside what the kernel of its host did with one real
    /// packet of it (`POST /api/v1/explain/verify`): the source host's agent sends and traces the packet.
    public func verify(_ query: FlowQuery, _ caller: Caller) async throws -> VerifiedExplanation {
        let explanation = try await explain(from: query.from, to: query.to, protocol: query.protocol, port: query.port.map(String.init),
                                            caller)
        guard let source = explanation.from.endpoint else {
            throw TrellisError.invalid("from: the probe is sent from an endpoint; name one by its path or address", field: "from")
        }
        let single = explanation.to.address.hasSuffix("/32") ? String(explanation.to.address.dropLast(3)) : explanation.to.address
        guard let destination = IPv4Address(single) else {
            throw TrellisError.invalid("to: the probe goes to one address; name an endpoint or an address, not \(explanation.to.address)",
                                       field: "to")
        }
        let endpoint = try await store.read { try $0.require(Endpoint.self, source) }
        guard endpoint.kind == .container else {
            throw TrellisError.invalid("from: a probe is sent from a container's namespace; \(source) is a VM", field: "from")
        }
        guard let host = endpoint.host else {
            throw TrellisError(.conflict, "\(source) is not attached to a host: there is no port to send the probe from")
        }
        let request = ProbeRequest(from: source, to: destination, protocol: explanation.protocol, port: explanation.port)
        // A stopping controller does not wait for agents.
        let report = try await cancelWhenGracefulShutdown { [probes] in try await probes.submit(host: host, request) }
        guard let result = report.result else {
            throw TrellisError(.conflict, "host '\(host)' could not send the probe: \(report.error ?? "it gave no reason")")
        }
        return VerifiedExplanation(explanation: explanation, kernel: result)
    }

    /// The probes for `host`'s agent to send, waiting up to `wait` seconds for one (the agent's long poll).
    public func hostProbes(_ host: String, wait: Int, _ caller: Caller) async throws -> ListBody<HostProbe> {
        try caller.requireOwnHost(host, "take probes")
        let revision = try await store.read { tx in
            _ = try tx.require(HostRecord.self, host)
            return try tx.currentRevision()
        }
        let probes = self.probes
        let items = await cancelWhenGracefulShutdown { await probes.take(host: host, wait: .seconds(wait)) }
        return ListBody(items: items, revision: revision)
    }

    /// An agent's report on a probe it was handed.
    public func reportProbe(_ host: String, id: String, _ report: ProbeReport, _ caller: Caller) throws {
        try caller.requireOwnHost(host, "report probes")
        guard (report.result == nil) != (report.error == nil) else {
            throw TrellisError.invalid("result: give either the probe's result or the error that stopped it", field: "result")
        }
        guard report.error.map({ (1...2048).contains($0.utf8.count) }) ?? true else {
            throw TrellisError.invalid("error: 1 to 2048 bytes", field: "error")
        }
        guard (report.result?.steps.count ?? 0) <= 1000 else {
            throw TrellisError.invalid("result.steps: at most 1000 steps", field: "result.steps")
        }
        try probes.complete(host: host, id: id, report)
    }

    /// The domain's rules compiled as an agent with `endpoints` compiles them (once per change of what goes in).
    static func policyProgram(domain: String, endpoints: [Endpoint], _ tx: any StoreReader, _ programs: CompiledPrograms) throws
        -> PolicyProgram {
        let storedSubnets = try tx.list(Subnet.self, under: domain)
        let subnets = storedSubnets.map {
            DesiredSubnet(path: $0.path, cidr: $0.cidr, gateway: $0.gateway, gatewayMAC: $0.gatewayMAC, vni: $0.vni, dhcp: $0.dhcp,
                          remoteVTEPs: [])
        }
        let policies = try tx.list(NetworkPolicy.self, under: domain)
        let profiles = try Set(endpoints.compactMap(\.profile)).sorted().compactMap { try tx.get(PortProfile.self, $0) }
        let floating = endpoints.compactMap { endpoint in
            endpoint.floatingIP.map { FloatingIPTranslation(floating: $0, endpoint: endpoint.ip) }
        }
        let inputs = storedSubnets.map { "\($0.path)@\($0.revision)" } + policies.map { "\($0.path)@\($0.revision)" }
            + profiles.map { "\($0.path)@\($0.revision)" } + floating.map { "\($0.floating)>\($0.endpoint)" }
        return programs.program(for: ([domain] + inputs).joined(separator: " ")) {
            PolicyProgram(domain: DesiredDomain(path: domain, id: 0, subnets: subnets, policies: policies), profiles: profiles,
                          floatingIPs: floating)
        }
    }

    /// Each flow with the step that let it in under the current rules (flows of unknown protocols are left as they are).
    func explained(_ flows: [Flow]) async throws -> [Flow] {
        let domains = Set(flows.map(\.domain))
        guard !domains.isEmpty else { return flows }
        let programs = self.programs
        return try await store.read { tx in
            var byDomain: [String: (program: PolicyProgram, endpoints: [IPv4Address: Endpoint])] = [:]
            for domain in domains {
                let endpoints = try tx.list(Endpoint.self, under: domain)
                byDomain[domain] = (try Self.policyProgram(domain: domain, endpoints: endpoints, tx, programs),
                                    Dictionary(endpoints.map { ($0.ip, $0) }, uniquingKeysWith: { a, _ in a }))
            }
            return flows.map { reported in
                // What an agent said decided the flow is not taken from it.
                var flow = reported
                flow.decidedBy = nil
                guard let compiled = byDomain[flow.domain], let proto = RuleProtocol(rawValue: flow.protocol), proto != .any else {
                    return flow
                }
                func end(_ address: IPv4Address) -> FlowEnd {
                    compiled.endpoints[address].map(FlowEnd.init(endpoint:)) ?? FlowEnd(network: IPv4Network(single: address))
                }
                flow.decidedBy = compiled.program.explain(from: end(flow.source), to: end(flow.translatedDestination ?? flow.destination),
                                                          protocol: proto, port: proto.hasPorts ? flow.destinationPort : nil).deciding
                return flow
            }
        }
    }

    static func missingEnd(_ field: String) -> TrellisError {
        TrellisError.invalid("\(field): give an endpoint path, an address or a CIDR", field: field)
    }

    static func flowProtocol(_ text: String?) throws -> RuleProtocol {
        guard let text else { return .tcp }
        guard let proto = RuleProtocol(rawValue: text.lowercased()), proto != .any else {
            throw TrellisError.invalid("protocol: '\(text)' is not tcp, udp or icmp", field: "protocol")
        }
        return proto
    }

    static func flowPort(_ text: String?, _ proto: RuleProtocol) throws -> Int? {
        guard proto.hasPorts else {
            guard text == nil else { throw TrellisError.invalid("port: \(proto.rawValue) has no ports", field: "port") }
            return nil
        }
        guard let text else { throw TrellisError.invalid("port: give the destination port of the \(proto.rawValue) flow", field: "port") }
        guard let port = Int(text), (1...65535).contains(port) else {
            throw TrellisError.invalid("port: '\(text)' is not a port from 1 to 65535", field: "port")
        }
        return port
    }

    static func flowReference(_ text: String, field: String, scope: String?, _ caller: Caller,
                              _ tx: any StoreReader) throws -> FlowReference {
        if let address = IPv4Address(text) {
            let candidates = try tx.list(Endpoint.self, under: scope).filter { $0.ip == address && caller.sees($0.enterprise) }
            if candidates.count == 1 { return .endpoint(candidates[0]) }
            return candidates.isEmpty ? .network(IPv4Network(single: address)) : .address(address, candidates: candidates)
        }
        if let first = text.split(separator: "/").first, IPv4Address(first) != nil {
            return .network(try IPv4Network.parse(text, field: field))
        }
        guard text.utf8.count <= 512 else { throw TrellisError.invalid("\(field): at most 512 bytes", field: field) }
        return .endpoint(try caller.visible(try tx.get(Endpoint.self, text), text, field: field))
    }
}
