import Foundation
import Hummingbird
import TrellisModel

/// One operation of the REST API: what registers the handler also documents it in OpenAPI,
/// so the document cannot drift from the API.
struct APIRoute: Sendable {
    struct Query: Sendable {
        var name: String
        var type: String
        var description: String
    }

    var method: HTTPRequest.Method
    /// OpenAPI form, `{name}` for a path parameter.
    var path: String
    var summary: String
    var query: [Query] = []
    /// Schema name of the JSON body, if any.
    var body: String?
    var status: Int = 200
    /// Schema name of the answer; nil for 204. A streaming route's items.
    var response: String?
    var streams = false
    /// Whether a host's credential may call it; the registry then limits it to that host's own objects.
    var forHosts = false
    var handler: @Sendable (Request, TrellisRequestContext) async throws -> Response

    /// The handler behind the check that a host's credential calls only what hosts may.
    var guardedHandler: @Sendable (Request, TrellisRequestContext) async throws -> Response {
        guard !forHosts else { return handler }
        let plain = summary.range(of: " (", options: .backwards).map { String(summary[..<$0.lowerBound]) } ?? summary
        let handler = handler, what = plain.prefix(1).lowercased() + plain.dropFirst()
        return { request, context in
            if let host = context.caller?.host { throw Caller.hostForbidden(host, what) }
            return try await handler(request, context)
        }
    }

    /// The Hummingbird form of `path`. Its trie needs one parameter name per position, so an
    /// endpoint's `{id}` shares the name of the `{enterprise}` that stands there in path routes.
    var routerPath: String {
        path.replacingOccurrences(of: "endpoints/{id}", with: "endpoints/{enterprise}")
            .replacingOccurrences(of: "{", with: ":").replacingOccurrences(of: "}", with: "")
    }

    var parameters: [String] {
        path.split(separator: "/").filter { $0.hasPrefix("{") }.map { String($0.dropFirst().dropLast()) }
    }
}

/// The path parameters of an object of each kind, outermost first.
func pathParameters(_ kind: ResourceKind) -> [String] {
    switch kind {
    case .enterprise: ["enterprise"]
    case .domain: ["enterprise", "domain"]
    case .zone: ["enterprise", "domain", "zone"]
    case .subnet: ["enterprise", "domain", "zone", "subnet"]
    case .endpoint: ["enterprise", "domain", "zone", "subnet", "endpoint"]
    case .profile: ["enterprise", "profile"]
    case .fippool: ["enterprise", "pool"]
    case .dockerNetwork: ["host", "network"]
    case .policy: ["enterprise", "domain", "policy"]
    case .host: ["host"]
    case .user: ["user"]
    }
}

func itemPath(_ kind: ResourceKind) -> String {
    "/api/v1/\(kind.collection)/" + pathParameters(kind).map { "{\($0)}" }.joined(separator: "/")
}

extension TrellisRequestContext {
    func objectPath(_ kind: ResourceKind) throws -> String {
        try pathParameters(kind).map { try parameters.require($0) }.joined(separator: "/")
    }
}

/// Every operation of the API.
func apiRoutes(_ registry: Registry, caFingerprint: String? = nil) -> [APIRoute] {
    var routes: [APIRoute] = []
    func add(_ method: HTTPRequest.Method, _ path: String, _ summary: String, query: [APIRoute.Query] = [], body: String? = nil,
             status: Int = 200, response: String?, streams: Bool = false, forHosts: Bool = false,
             _ handler: @escaping @Sendable (Request, TrellisRequestContext) async throws -> Response) {
        routes.append(APIRoute(method: method, path: path, summary: summary, query: query, body: body, status: status,
                               response: response, streams: streams, forHosts: forHosts, handler: handler))
    }
    let created = HTTPResponse.Status.created

    add(.get, "/healthz", "Liveness and the store revision", response: "Health") { _, _ in
        try JSONResponse.make(["status": "ok", "revision": String(try await registry.hub.revision())], .ok)
    }

    // Enterprises
    add(.get, "/api/v1/enterprises", "List enterprises", response: "EnterpriseList") { _, ctx in
        try JSONResponse.make(try await registry.enterprises(try ctx.requireCaller()), .ok)
    }
    add(.post, "/api/v1/enterprises", "Create an enterprise (admin)", body: "EnterpriseCreate", status: 201,
        response: "Enterprise") { req, ctx in
        try JSONResponse.make(try await registry.createEnterprise(try await req.decodeJSON(EnterpriseCreate.self, context: ctx),
                                                                  try ctx.requireCaller()), created)
    }
    add(.get, itemPath(.enterprise), "Get an enterprise", response: "Enterprise") { _, ctx in
        try JSONResponse.make(try await registry.get(Enterprise.self, try ctx.objectPath(.enterprise), try ctx.requireCaller()), .ok)
    }
    add(.patch, itemPath(.enterprise), "Change an enterprise's description", body: "DescriptionUpdate",
        response: "Enterprise") { req, ctx in
        try JSONResponse.make(try await registry.updateDescription(Enterprise.self, try ctx.objectPath(.enterprise),
                                                      try await req.decodeJSON(DescriptionUpdate.self, context: ctx),
                                                      try ctx.requireCaller()), .ok)
    }
    add(.delete, itemPath(.enterprise), "Delete an empty enterprise (admin)", status: 204, response: nil) { _, ctx in
        try await registry.deleteEnterprise(try ctx.objectPath(.enterprise), try ctx.requireCaller())
        return JSONResponse.noContent
    }

    // Domains
    add(.get, "/api/v1/domains", "List domains", query: [.init(name: "enterprise", type: "string", description: "only this enterprise's")],
        response: "DomainList") { req, ctx in
        try JSONResponse.make(try await registry.list(Domain.self, under: req.query("enterprise"), try ctx.requireCaller()), .ok)
    }
    add(.post, "/api/v1/domains", "Create a domain", body: "DomainCreate", status: 201, response: "Domain") { req, ctx in
        try JSONResponse.make(try await registry.createDomain(try await req.decodeJSON(DomainCreate.self, context: ctx),
                                                              try ctx.requireCaller()), created)
    }
    add(.get, itemPath(.domain), "Get a domain", response: "Domain", forHosts: true) { _, ctx in
        try JSONResponse.make(try await registry.get(Domain.self, try ctx.objectPath(.domain), try ctx.requireCaller()), .ok)
    }
    add(.patch, itemPath(.domain), "Change a domain's description", body: "DescriptionUpdate", response: "Domain") { req, ctx in
        try JSONResponse.make(try await registry.updateDescription(Domain.self, try ctx.objectPath(.domain),
                                                      try await req.decodeJSON(DescriptionUpdate.self, context: ctx),
                                                      try ctx.requireCaller()), .ok)
    }
    add(.delete, itemPath(.domain), "Delete a domain without zones or policies", status: 204, response: nil) { _, ctx in
        try await registry.deleteDomain(try ctx.objectPath(.domain), try ctx.requireCaller())
        return JSONResponse.noContent
    }

    // Zones
    add(.get, "/api/v1/zones", "List zones", query: [.init(name: "domain", type: "string",
                                                           description: "only this domain's (ENTERPRISE/DOMAIN)")],
        response: "ZoneList") { req, ctx in
        try JSONResponse.make(try await registry.list(Zone.self, under: req.query("domain"), try ctx.requireCaller()), .ok)
    }
    add(.post, "/api/v1/zones", "Create a zone", body: "ZoneCreate", status: 201, response: "Zone") { req, ctx in
        try JSONResponse.make(try await registry.createZone(try await req.decodeJSON(ZoneCreate.self, context: ctx),
                                                            try ctx.requireCaller()), created)
    }
    add(.get, itemPath(.zone), "Get a zone", response: "Zone") { _, ctx in
        try JSONResponse.make(try await registry.get(Zone.self, try ctx.objectPath(.zone), try ctx.requireCaller()), .ok)
    }
    add(.patch, itemPath(.zone), "Change a zone's description", body: "DescriptionUpdate", response: "Zone") { req, ctx in
        try JSONResponse.make(try await registry.updateDescription(Zone.self, try ctx.objectPath(.zone),
                                                      try await req.decodeJSON(DescriptionUpdate.self, context: ctx),
                                                      try ctx.requireCaller()), .ok)
    }
    add(.delete, itemPath(.zone), "Delete a zone without subnets", status: 204, response: nil) { _, ctx in
        try await registry.deleteZone(try ctx.objectPath(.zone), try ctx.requireCaller())
        return JSONResponse.noContent
    }

    // Subnets
    add(.get, "/api/v1/subnets", "List subnets",
        query: [.init(name: "zone", type: "string", description: "only this zone's (ENTERPRISE/DOMAIN/ZONE)"),
                .init(name: "domain", type: "string", description: "only this domain's (ENTERPRISE/DOMAIN)")],
        response: "SubnetList") { req, ctx in
        try JSONResponse.make(try await registry.list(Subnet.self, under: req.query("zone") ?? req.query("domain"),
                                                      try ctx.requireCaller()), .ok)
    }
    add(.post, "/api/v1/subnets", "Create a subnet (allocates its VNI)", body: "SubnetCreate", status: 201,
        response: "Subnet") { req, ctx in
        try JSONResponse.make(try await registry.createSubnet(try await req.decodeJSON(SubnetCreate.self, context: ctx),
                                                              try ctx.requireCaller()), created)
    }
    add(.get, itemPath(.subnet), "Get a subnet", response: "Subnet", forHosts: true) { _, ctx in
        try JSONResponse.make(try await registry.get(Subnet.self, try ctx.objectPath(.subnet), try ctx.requireCaller()), .ok)
    }
    add(.patch, itemPath(.subnet), "Change a subnet's DHCP setting or description", body: "SubnetUpdate", response: "Subnet") { req, ctx in
        try JSONResponse.make(try await registry.updateSubnet(try ctx.objectPath(.subnet), try await req.decodeJSON(SubnetUpdate.self,
            context: ctx),
                                                 try ctx.requireCaller()), .ok)
    }
    add(.delete, itemPath(.subnet), "Delete a subnet without endpoints", status: 204, response: nil) { _, ctx in
        try await registry.deleteSubnet(try ctx.objectPath(.subnet), try ctx.requireCaller())
        return JSONResponse.noContent
    }
    add(.get, itemPath(.subnet) + "/usage", "Addresses used and available", response: "SubnetUsage") { _, ctx in
        let usage = try await registry.subnetUsage(try ctx.objectPath(.subnet), try ctx.requireCaller())
        return try JSONResponse.make(["used": usage.used, "capacity": usage.capacity, "free": usage.capacity - usage.used], .ok)
    }

    // Endpoints
    add(.get, "/api/v1/endpoints", "List endpoints",
        query: [.init(name: "subnet", type: "string", description: "only this subnet's (ENTERPRISE/DOMAIN/ZONE/SUBNET)"),
                .init(name: "host", type: "string", description: "only those placed on this host (a host's credential must give its own)")],
        response: "EndpointList", forHosts: true) { req, ctx in
        try JSONResponse.make(try await registry.endpoints(subnet: req.query("subnet"), host: req.query("host"), try ctx.requireCaller()),
                              .ok)
    }
    add(.post, "/api/v1/endpoints", "Create an endpoint (allocates its address and MAC)", body: "EndpointCreate", status: 201,
        response: "Endpoint", forHosts: true) { req, ctx in
        try JSONResponse.make(try await registry.createEndpoint(try await req.decodeJSON(EndpointCreate.self, context: ctx),
                                                                try ctx.requireCaller()), created)
    }
    typealias Reference = @Sendable (TrellisRequestContext) throws -> String
    let endpointReferences: [(String, Reference)] = [
        (itemPath(.endpoint), { ctx in try ctx.objectPath(.endpoint) }),
        ("/api/v1/endpoints/{id}", { ctx in try ctx.parameters.require("enterprise") }),
    ]
    for (path, reference) in endpointReferences {
        let by = path.hasSuffix("{id}") ? " by id" : ""
        add(.get, path, "Get an endpoint" + by, response: "Endpoint", forHosts: true) { _, ctx in
            let caller = try ctx.requireCaller()
            return try JSONResponse.make(try await registry.get(Endpoint.self, try await registry.endpointPath(try reference(ctx), caller),
                                                                caller), .ok)
        }
        add(.patch, path, "Change an endpoint's host, state, profile or ids" + by, body: "EndpointUpdate", response: "Endpoint",
            forHosts: true) { req, ctx in
            let caller = try ctx.requireCaller()
            let body = try await req.decodeJSON(EndpointUpdate.self, context: ctx)
            return try JSONResponse.make(try await registry.updateEndpoint(try await registry.endpointPath(try reference(ctx), caller),
                                                                           body, caller), .ok)
        }
        add(.delete, path, "Delete an endpoint and release its address" + by, status: 204, response: nil, forHosts: true) { _, ctx in
            let caller = try ctx.requireCaller()
            try await registry.deleteEndpoint(try await registry.endpointPath(try reference(ctx), caller), caller)
            return JSONResponse.noContent
        }
    }

    add(.get, "/api/v1/endpoints/{id}/stats", "An endpoint's traffic counters, as its host last reported them",
        response: "EndpointStats") { _, ctx in
        try JSONResponse.make(try await registry.endpointStats(try ctx.parameters.require("enterprise"), try ctx.requireCaller()), .ok)
    }
    add(.get, "/api/v1/explain", "Which rule decides a new flow between two ends, and the stages it passes",
        query: [.init(name: "from", type: "string", description: "an endpoint path, an endpoint's address, or a CIDR; required"),
                .init(name: "to", type: "string", description: "an endpoint path, an endpoint's address, or a CIDR; required"),
                .init(name: "protocol", type: "string", description: "tcp (default), udp or icmp"),
                .init(name: "port", type: "integer", description: "the destination port; required for tcp and udp")],
        response: "PolicyExplanation") { req, ctx in
        try JSONResponse.make(try await registry.explain(from: req.query("from"), to: req.query("to"), protocol: req.query("protocol"),
                                                         port: req.query("port"), try ctx.requireCaller()), .ok)
    }
    add(.post, "/api/v1/explain/verify",
        "Explain a flow from a container endpoint and send one real packet of it, traced in its host's kernel, to compare",
        body: "FlowQuery", response: "VerifiedExplanation") { req, ctx in
        let query = try await req.decodeJSON(FlowQuery.self, context: ctx)
        return try JSONResponse.make(try await registry.verify(query, try ctx.requireCaller()), .ok)
    }
    add(.get, "/api/v1/flows", "Current flows in which a subnet's addresses take part",
        query: [.init(name: "subnet", type: "string", description: "the subnet (ENTERPRISE/DOMAIN/ZONE/SUBNET); required")],
        response: "FlowList") { req, ctx in
        try JSONResponse.make(try await registry.flows(subnet: req.query("subnet"), try ctx.requireCaller()), .ok)
    }

    // Docker networks made with the remote driver
    add(.get, "/api/v1/docker-networks", "List Docker networks backed by subnets",
        query: [.init(name: "host", type: "string", description: "only those of this host's engine")], response: "DockerNetworkList",
        forHosts: true) { req, ctx in
        try JSONResponse.make(try await registry.dockerNetworks(host: req.query("host"), try ctx.requireCaller()), .ok)
    }
    add(.post, "/api/v1/docker-networks", "Record a Docker network backed by a subnet", body: "DockerNetworkCreate", status: 201,
        response: "DockerNetwork", forHosts: true) { req, ctx in
        try JSONResponse.make(try await registry.createDockerNetwork(try await req.decodeJSON(DockerNetworkCreate.self, context: ctx),
                                                                     try ctx.requireCaller()), created)
    }
    add(.get, itemPath(.dockerNetwork), "Get a Docker network", response: "DockerNetwork", forHosts: true) { _, ctx in
        try JSONResponse.make(try await registry.get(DockerNetwork.self, try ctx.objectPath(.dockerNetwork), try ctx.requireCaller()), .ok)
    }
    add(.delete, itemPath(.dockerNetwork), "Forget a Docker network", status: 204, response: nil, forHosts: true) { _, ctx in
        try await registry.deleteDockerNetwork(try ctx.objectPath(.dockerNetwork), try ctx.requireCaller())
        return JSONResponse.noContent
    }

    // Floating IPs
    add(.get, "/api/v1/fip-pools", "List floating IP pools", query: [.init(name: "enterprise", type: "string",
                                                                           description: "only this enterprise's")],
        response: "FloatingIPPoolList") { req, ctx in
        try JSONResponse.make(try await registry.list(FloatingIPPool.self, under: req.query("enterprise"), try ctx.requireCaller()), .ok)
    }
    add(.post, "/api/v1/fip-pools",
        "Create a floating IP pool for an enterprise (admin; never over a host, a reserved underlay range or another pool)",
        body: "FloatingIPPoolCreate", status: 201, response: "FloatingIPPool") { req, ctx in
        try JSONResponse.make(try await registry.createFloatingIPPool(try await req.decodeJSON(FloatingIPPoolCreate.self, context: ctx),
                                                                      try ctx.requireCaller()), created)
    }
    add(.get, itemPath(.fippool), "Get a floating IP pool", response: "FloatingIPPool") { _, ctx in
        try JSONResponse.make(try await registry.get(FloatingIPPool.self, try ctx.objectPath(.fippool), try ctx.requireCaller()), .ok)
    }
    add(.delete, itemPath(.fippool), "Delete a floating IP pool with no bound address (admin)", status: 204, response: nil) { _, ctx in
        try await registry.deleteFloatingIPPool(try ctx.objectPath(.fippool), try ctx.requireCaller())
        return JSONResponse.noContent
    }
    add(.post, itemPath(.fippool) + "/bind", "Bind an address of the pool to an endpoint", body: "FloatingIPBind", status: 201,
        response: "FloatingIPBinding") { req, ctx in
        try JSONResponse.make(try await registry.bindFloatingIP(pool: try ctx.objectPath(.fippool),
                                                                try await req.decodeJSON(FloatingIPBind.self, context: ctx),
                                                                try ctx.requireCaller()), created)
    }
    add(.get, "/api/v1/fips", "List bound floating IPs", response: "FloatingIPList") { _, ctx in
        try JSONResponse.make(try await registry.floatingIPs(try ctx.requireCaller()), .ok)
    }
    add(.put, "/api/v1/fips/{address}", "Move a bound floating IP to another endpoint", body: "FloatingIPMove",
        response: "FloatingIPBinding") { req, ctx in
        try JSONResponse.make(try await registry.moveFloatingIP(try ctx.parameters.require("address"),
                                                                try await req.decodeJSON(FloatingIPMove.self, context: ctx),
                                                                try ctx.requireCaller()), .ok)
    }
    add(.delete, "/api/v1/fips/{address}", "Unbind a floating IP", status: 204, response: nil) { _, ctx in
        try await registry.unbindFloatingIP(try ctx.parameters.require("address"), try ctx.requireCaller())
        return JSONResponse.noContent
    }

    // Hosts
    add(.get, "/api/v1/hosts", "List hosts with their status (admin)", response: "HostList") { _, ctx in
        try JSONResponse.make(try await registry.hosts(try ctx.requireCaller()), .ok)
    }
    add(.get, itemPath(.host), "Get a host (admin)", response: "Host") { _, ctx in
        try JSONResponse.make(try await registry.host(try ctx.objectPath(.host), try ctx.requireCaller()), .ok)
    }
    add(.put, itemPath(.host), "Register a host or change its underlay address (admin, or the host itself)", body: "HostRegistration",
        response: "Host", forHosts: true) { req, ctx in
        try JSONResponse.make(try await registry.registerHost(try ctx.objectPath(.host), try await req.decodeJSON(HostRegistration.self,
            context: ctx),
                                                 try ctx.requireCaller()), .ok)
    }
    add(.delete, itemPath(.host), "Remove a host without endpoints and revoke its credential (admin)", status: 204,
        response: nil) { _, ctx in
        try await registry.deleteHost(try ctx.objectPath(.host), try ctx.requireCaller())
        return JSONResponse.noContent
    }
    add(.post, "/api/v1/join-tokens", "Make a short-lived, single-use token a host exchanges for its credential (admin)",
        body: "JoinTokenCreate", status: 201, response: "JoinToken") { req, ctx in
        try JSONResponse.make(try await registry.createJoinToken(try await req.decodeJSON(JoinTokenCreate.self, context: ctx),
                                                                 caFingerprint: caFingerprint, try ctx.requireCaller()), created)
    }
    add(.post, BearerAuthMiddleware.joinPath, "Exchange a join token for the host's credential (the token is in the body, not a header)",
        body: "HostJoin", response: "HostCredential") { req, ctx in
        try JSONResponse.make(try await registry.join(try await req.decodeJSON(HostJoin.self, context: ctx)), .ok)
    }
    add(.post, itemPath(.host) + "/refusals", "Record that the host's agent refused to attach a container (admin, or the host itself)",
        body: "AttachRefusal", status: 204, response: nil, forHosts: true) { req, ctx in
        try await registry.recordRefusal(host: try ctx.objectPath(.host), try await req.decodeJSON(AttachRefusal.self, context: ctx),
                                         try ctx.requireCaller())
        return JSONResponse.noContent
    }
    add(.post, itemPath(.host) + "/heartbeat", "Report a host alive, with the revision it has applied (admin, or the host itself)",
        body: "HostHeartbeat", response: "Host", forHosts: true) { req, ctx in
        try JSONResponse.make(try await registry.heartbeat(try ctx.objectPath(.host), try await req.decodeJSON(HostHeartbeat.self,
            context: ctx),
                                              try ctx.requireCaller()), .ok)
    }
    add(.post, itemPath(.host) + "/stats", "Report a host's endpoint counters and flows (admin, or the host itself)",
        body: "HostStatsReport",
        status: 204, response: nil, forHosts: true) { req, ctx in
        try await registry.recordStats(host: try ctx.objectPath(.host), try await req.decodeJSON(HostStatsReport.self, context: ctx),
                                       try ctx.requireCaller())
        return JSONResponse.noContent
    }
    add(.get, itemPath(.host) + "/probes",
        "Probes for the host's agent to send; waits up to `wait` seconds for one (admin, or the host itself)",
        query: [.init(name: "wait", type: "integer", description: "seconds to wait for a probe when none is queued (0-25, default 0)")],
        response: "HostProbeList", forHosts: true) { req, ctx in
        let wait = try req.queryInt("wait", default: 0, range: 0...25)
        return try JSONResponse.make(try await registry.hostProbes(try ctx.objectPath(.host), wait: wait, try ctx.requireCaller()), .ok)
    }
    add(.post, itemPath(.host) + "/probes/{probe}", "Report what the kernel did with a probe (the host itself, or admin)",
        body: "ProbeReport", status: 204, response: nil, forHosts: true) { req, ctx in
        try registry.reportProbe(try ctx.objectPath(.host), id: try ctx.parameters.require("probe"),
                                 try await req.decodeJSON(ProbeReport.self, context: ctx), try ctx.requireCaller())
        return JSONResponse.noContent
    }
    add(.get, itemPath(.host) + "/desired",
        "A host's desired state; with watch=1, a stream of WatchMessage lines (admin, or the host itself)",
        query: [.init(name: "watch", type: "boolean", description: "stream newline-delimited WatchMessage objects"),
                .init(name: "since", type: "integer",
                      description: "the revision the watcher has; a bookmark replaces the first snapshot if nothing changed since"),
                .init(name: "digest", type: "string",
                      description: "the contentDigest of the watcher's state; a bookmark replaces the first snapshot if it is current")],
        response: "DesiredState", streams: true, forHosts: true) { req, ctx in
        let caller = try ctx.requireCaller()
        let host = try ctx.objectPath(.host)
        let since = try req.queryInt("since", default: -1, range: -1...Int.max)
        let digest = req.query("digest")
        if let digest, digest.count != 64 || !digest.allSatisfy(\.isHexDigit) {
            throw TrellisError.invalid("digest: a SHA-256 in 64 hex digits, as the watch's contentDigest", field: "digest")
        }
        let state = try await registry.desiredState(host: host, caller)
        guard req.queryFlag("watch") else { return try JSONResponse.make(state, .ok) }
        return JSONResponse.stream { send in
            try await registry.streamDesiredState(host: host, since: since, digest: digest, send: send)
        }
    }

    // Profiles
    add(.get, "/api/v1/profiles", "List port profiles", query: [.init(name: "enterprise", type: "string",
                                                                      description: "only this enterprise's")],
        response: "ProfileList") { req, ctx in
        try JSONResponse.make(try await registry.list(PortProfile.self, under: req.query("enterprise"), try ctx.requireCaller()), .ok)
    }
    add(.post, "/api/v1/profiles", "Create a port profile", body: "ProfileCreate", status: 201, response: "Profile") { req, ctx in
        try JSONResponse.make(try await registry.createProfile(try await req.decodeJSON(ProfileCreate.self, context: ctx),
                                                               try ctx.requireCaller()), created)
    }
    add(.get, itemPath(.profile), "Get a port profile", response: "Profile") { _, ctx in
        try JSONResponse.make(try await registry.get(PortProfile.self, try ctx.objectPath(.profile), try ctx.requireCaller()), .ok)
    }
    add(.put, itemPath(.profile), "Redefine a port profile; every port using it follows", body: "ProfileUpdate",
        response: "Profile") { req, ctx in
        try JSONResponse.make(try await registry.replaceProfile(try ctx.objectPath(.profile), try await req.decodeJSON(ProfileUpdate.self,
            context: ctx),
                                                   try ctx.requireCaller()), .ok)
    }
    add(.delete, itemPath(.profile), "Delete a port profile no endpoint uses", status: 204, response: nil) { _, ctx in
        try await registry.deleteProfile(try ctx.objectPath(.profile), try ctx.requireCaller())
        return JSONResponse.noContent
    }

    // Policies
    add(.get, "/api/v1/policies", "List network policies", query: [.init(name: "domain", type: "string",
                                                                         description: "only this domain's")],
        response: "PolicyList") { req, ctx in
        try JSONResponse.make(try await registry.list(NetworkPolicy.self, under: req.query("domain"), try ctx.requireCaller()), .ok)
    }
    add(.post, "/api/v1/policies", "Create a network policy", body: "PolicyCreate", status: 201, response: "Policy") { req, ctx in
        try JSONResponse.make(try await registry.createPolicy(try await req.decodeJSON(PolicyCreate.self, context: ctx),
                                                              try ctx.requireCaller()), created)
    }
    add(.get, itemPath(.policy), "Get a network policy", response: "Policy") { _, ctx in
        try JSONResponse.make(try await registry.get(NetworkPolicy.self, try ctx.objectPath(.policy), try ctx.requireCaller()), .ok)
    }
    add(.put, itemPath(.policy), "Replace a policy's rules", body: "PolicyUpdate", response: "Policy") { req, ctx in
        try JSONResponse.make(try await registry.replacePolicy(try ctx.objectPath(.policy), try await req.decodeJSON(PolicyUpdate.self,
            context: ctx),
                                                  try ctx.requireCaller()), .ok)
    }
    add(.delete, itemPath(.policy), "Delete a network policy", status: 204, response: nil) { _, ctx in
        try await registry.delete(NetworkPolicy.self, try ctx.objectPath(.policy), try ctx.requireCaller())
        return JSONResponse.noContent
    }

    // Users
    add(.get, "/api/v1/users", "List users (an enterprise member sees its own enterprise's)", response: "UserList") { _, ctx in
        let caller = try ctx.requireCaller()
        let all = try await registry.list(User.self, under: nil, .system)
        return try JSONResponse.make(ListBody(items: all.items.filter { caller.admin || ($0.enterprise != nil
            && $0.enterprise == caller.enterprise) },
                                 revision: all.revision), .ok)
    }
    add(.post, "/api/v1/users", "Create a user and its token (admin)", body: "UserCreate", status: 201,
        response: "UserWithToken") { req, ctx in
        try JSONResponse.make(try await registry.createUser(try await req.decodeJSON(UserCreate.self, context: ctx),
                                                            try ctx.requireCaller()), created)
    }
    add(.get, itemPath(.user), "Get a user", response: "User") { _, ctx in
        let caller = try ctx.requireCaller()
        let name = try ctx.objectPath(.user)
        let user = try await registry.get(User.self, name, .system)
        guard caller.admin || user.name == caller.name || (user.enterprise != nil && user.enterprise == caller.enterprise) else {
            throw TrellisError.notFound("no user '\(name)'")
        }
        return try JSONResponse.make(user, .ok)
    }
    add(.delete, itemPath(.user), "Delete a user (admin)", status: 204, response: nil) { _, ctx in
        try await registry.deleteUser(try ctx.objectPath(.user), try ctx.requireCaller())
        return JSONResponse.noContent
    }
    add(.post, itemPath(.user) + "/token", "Replace a user's token (admin, or the user itself)", response: "UserWithToken") { _, ctx in
        try JSONResponse.make(try await registry.rotateToken(try ctx.objectPath(.user), try ctx.requireCaller()), .ok)
    }

    // Events
    add(.get, "/api/v1/events", "Recorded changes, oldest first; with follow=1, a stream of Event lines",
        query: [.init(name: "since", type: "integer", description: "only events with a larger id (default: the latest `limit`)"),
                .init(name: "limit", type: "integer", description: "at most this many (1-1000, default 100)"),
                .init(name: "follow", type: "boolean", description: "keep the answer open and stream new events as lines")],
        response: "EventList", streams: true) { req, ctx in
        let caller = try ctx.requireCaller()
        let limit = try req.queryInt("limit", default: 100, range: 1...1000)
        let since = try req.queryInt("since", default: -1, range: -1...Int.max)
        let start = since >= 0 ? since : max(0, try await registry.lastEventID() - limit)
        guard req.queryFlag("follow") else {
            return try JSONResponse.make(["items": try await registry.events(afterID: start, limit: limit, caller)], .ok)
        }
        return JSONResponse.stream { send in
            try await registry.followEvents(afterID: start, caller, send: send)
        }
    }
    return routes
}
