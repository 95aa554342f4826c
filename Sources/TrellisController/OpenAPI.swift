import TrellisModel

/// The OpenAPI 3 document of the API, built from the same route table that serves it.
enum OpenAPIDocument {
    static func build(_ routes: [APIRoute]) -> JSONValue {
        var paths: [String: [String: JSONValue]] = [:]
        for route in routes {
            var operation: [String: JSONValue] = [
                "summary": .string(route.summary),
                "operationId": .string(operationID(route)),
                "responses": .object(responses(route)),
            ]
            var parameters: [JSONValue] = route.parameters.map { name in
                .object(["name": .string(name), "in": "path", "required": true, "schema": schema(name: name),
                         "example": examples[name] ?? "x"])
            }
            parameters += route.query.map { query in
                .object(["name": .string(query.name), "in": "query", "required": false, "description": .string(query.description),
                         "schema": .object(["type": .string(query.type)])])
            }
            if !parameters.isEmpty { operation["parameters"] = .array(parameters) }
            if let body = route.body {
                operation["requestBody"] = .object(["required": true, "content": .object([
                    "application/json": .object(["schema": ref(body)])])])
            }
            if !BearerAuthMiddleware.publicPaths.contains(route.path) {
                operation["security"] = .array([.object(["bearer": .array([])])])
            }
            paths[route.path, default: [:]][route.method.rawValue.lowercased()] = .object(operation)
        }
        return .object([
            "openapi": "3.0.3",
            "info": .object(["title": "Trellis controller API", "version": "1"]),
            "paths": .object(paths.mapValues { .object($0) }),
            "components": .object([
                "securitySchemes": .object(["bearer": .object(["type": "http", "scheme": "bearer"])]),
                "schemas": .object(schemas),
            ]),
        ])
    }

    static func operationID(_ route: APIRoute) -> String {
        let words = route.path.split(separator: "/").filter { !$0.hasPrefix("{") && $0 != "api" && $0 != "v1" }
        return route.method.rawValue.lowercased() + words.map { $0.prefix(1).uppercased() + $0.dropFirst() }.joined()
            + (route.path.hasSuffix("{id}") ? "ById" : (route.path.hasSuffix("}") ? "Item" : ""))
    }

    static func responses(_ route: APIRoute) -> [String: JSONValue] {
        var answers: [String: JSONValue] = [:]
        if let response = route.response {
            var content: [String: JSONValue] = ["application/json": .object(["schema": ref(response)])]
            if route.streams {
                let item = response == "EventList" ? "Event" : "WatchMessage"
                content["application/x-ndjson"] = .object(["schema": ref(item)])
            }
            answers[String(route.status)] = .object(["description": "success", "content": .object(content)])
        } else {
            answers[String(route.status)] = .object(["description": "done"])
        }
        for (status, meaning) in [("400", "invalid input"), ("401", "missing or bad token"), ("403", "not allowed"),
                                  ("404", "no such object"), ("409", "conflict"), ("413", "body too large"),
                                  ("429", "too many failed authentications from this client"),
                                  ("503", "the store, or an agent the request waits for, did not answer in time")] {
            answers[status] = .object(["description": .string(meaning),
                                       "content": .object(["application/json": .object(["schema": ref("Error")])])])
        }
        return answers
    }

    /// Path parameter values of the objects a quick-start makes, so that tools reach real ones.
    static let examples: [String: JSONValue] = [
        "enterprise": "acme", "domain": "app1", "zone": "web", "subnet": "red", "endpoint": "web1", "host": "h1",
        "id": .number(1), "profile": "limited", "policy": "web-to-db", "user": "alice", "pool": "public", "address": "203.0.113.5",
    ]

    static func schema(name: String) -> JSONValue {
        name == "id" ? .object(["type": "integer"]) : .object(["type": "string"])
    }

    // MARK: Schemas

    static func ref(_ name: String) -> JSONValue { .object(["$ref": .string("#/components/schemas/\(name)")]) }
    static let string: JSONValue = .object(["type": "string"])
    static let nullableString: JSONValue = .object(["type": "string", "nullable": true])
    static let integer: JSONValue = .object(["type": "integer"])
    static let boolean: JSONValue = .object(["type": "boolean"])
    static let time: JSONValue = .object(["type": "string", "format": "date-time"])
    static func array(_ item: JSONValue) -> JSONValue { .object(["type": "array", "items": item]) }
    static func enumeration(_ values: [String]) -> JSONValue { .object(["type": "string", "enum": .array(values.map { .string($0) })]) }
    static func object(_ required: [String], _ properties: [String: JSONValue]) -> JSONValue {
        var schema: [String: JSONValue] = ["type": "object", "properties": .object(properties)]
        if !required.isEmpty { schema["required"] = .array(required.map { .string($0) }) }
        return .object(schema)
    }
    static func list(_ item: String) -> JSONValue {
        object(["items", "revision"], ["items": array(ref(item)), "revision": integer])
    }

    static let ports = array(.object(["oneOf": .array([string, integer])]))
    static let rate = object(["bitsPerSecond"], ["bitsPerSecond": integer, "burstBytes": integer])
    static let aclRule = object(["action"], [
        "action": enumeration(["allow", "deny"]), "direction": enumeration(["ingress", "egress"]),
        "protocol": enumeration(["tcp", "udp", "icmp", "any"]), "remote": string, "ports": ports,
    ])
    static let policyRule = object(["action"], [
        "action": enumeration(["allow", "deny"]), "protocol": enumeration(["tcp", "udp", "icmp", "any"]),
        "from": string, "to": string, "ports": ports,
    ])
    /// A rule in a request body: an object, or its one-line form as the CLI writes it.
    static func ruleInput(_ rule: JSONValue, example: String) -> JSONValue {
        .object(["oneOf": .array([.object(["type": "string", "example": .string(example)]), rule])])
    }
    static let aclRuleInput = ruleInput(aclRule, example: "deny tcp port 22")
    static let policyRuleInput = ruleInput(policyRule, example: "allow tcp from any to any port 80")
    static let common: [String: JSONValue] = ["path": string, "name": string, "revision": integer, "createdAt": time, "description": string]

    static var schemas: [String: JSONValue] {
        let enterprise = object(["name", "revision", "createdAt"], ["name": string, "description": string, "revision": integer,
                                                                    "createdAt": time])
        let domain = object(["path", "name", "enterprise", "id", "revision"], common.merging(["enterprise": string,
                                                                                              "id": integer]) { a, _ in a })
        let zone = object(["path", "name", "domain", "revision"], common.merging(["domain": string, "enterprise": string]) { a, _ in a })
        let subnet = object(["path", "name", "zone", "domain", "cidr", "gateway", "gatewayMAC", "vni", "dhcp", "reserved", "revision"],
                            common.merging(["zone": string, "domain": string, "enterprise": string, "cidr": string, "gateway": string,
                                            "gatewayMAC": string, "vni": integer, "dhcp": boolean,
                                            "reserved": array(string)]) { a, _ in a })
        let endpoint = object(["id", "path", "name", "subnet", "domain", "kind", "ip", "mac", "state", "externalIds", "revision"],
                              common.merging([
                                  "id": integer, "subnet": string, "domain": string, "enterprise": string,
                                  "kind": enumeration(["container", "vm"]), "owner": string, "host": string, "ip": string, "mac": string,
                                  "profile": string, "state": enumeration(["pending", "up", "down", "error"]), "interface": string,
                                  "externalIds": .object(["type": "object", "additionalProperties": string]),
                                  "floatingIP": string, "floatingPool": string, "hostname": string, "egressRate": rate, "ingressRate": rate,
                              ]) { a, _ in a })
        let host = object(["name", "underlayIP", "status", "revision"], [
            "name": string, "underlayIP": string, "lastHeartbeat": time, "status": enumeration(["up", "down"]),
            "appliedRevision": integer, "revision": integer, "registeredAt": time,
        ])
        let profile = object(["path", "name", "rules", "flowStats", "revision"], common.merging([
            "enterprise": string, "rules": array(aclRule), "egressRate": rate, "ingressRate": rate, "flowStats": boolean,
        ]) { a, _ in a })
        let policy = object(["path", "name", "domain", "rules", "revision"], common.merging([
            "domain": string, "enterprise": string, "rules": array(policyRule),
        ]) { a, _ in a })
        let user = object(["name", "admin", "revision"], ["name": string, "enterprise": string, "admin": boolean, "revision": integer,
                                                          "createdAt": time])
        let actions = enumeration(["created", "updated", "deleted", "refused", "joined", "unauthenticated"])
        let event = object(["id", "revision", "time", "actor", "action", "kind", "path"], [
            "id": integer, "revision": integer, "time": time, "actor": string, "action": actions,
            "kind": enumeration(ResourceKind.allCases.map(\.rawValue)), "path": string, "enterprise": string, "object": .object([:]),
        ])
        let desiredSubnet = object(["path", "cidr", "gateway", "gatewayMAC", "vni", "dhcp", "remoteVTEPs"], [
            "path": string, "cidr": string, "gateway": string, "gatewayMAC": string, "vni": integer, "dhcp": boolean,
                "remoteVTEPs": array(string),
        ])
        let remote = object(["path", "subnet", "ip", "mac", "host", "vtep"], [
            "path": string, "subnet": string, "ip": string, "mac": string, "host": string, "vtep": string, "hostname": string,
        ])
        let desired = object(["host", "revision", "domains", "endpoints", "remoteEndpoints", "profiles"], [
            "host": string, "revision": integer, "underlayIP": string,
            "domains": array(object(["path", "id", "subnets", "policies"], [
                "path": string, "id": integer, "subnets": array(desiredSubnet), "policies": array(ref("Policy")),
            ])),
            "endpoints": array(ref("Endpoint")), "remoteEndpoints": array(remote), "profiles": array(ref("Profile")),
        ])
        let counters = object(["packets", "bytes"], ["packets": integer, "bytes": integer])
        let binding = object(["address", "pool", "endpoint", "endpointIP"], [
            "address": string, "pool": string, "endpoint": string, "endpointIP": string, "host": string,
        ])
        let flow = object(["domain", "host", "protocol", "source", "destination", "original", "reply"], [
            "domain": string, "host": string, "protocol": string, "source": string, "sourcePort": integer, "destination": string,
            "destinationPort": integer, "state": string, "original": counters, "reply": counters, "translatedDestination": string,
            "decidedBy": ref("PolicyStep"),
        ])
        return [
            "Error": object(["error"], ["error": string, "field": string]),
            "Health": object(["status", "revision"], ["status": string, "revision": string]),
            "Enterprise": enterprise, "EnterpriseList": list("Enterprise"),
            "EnterpriseCreate": object(["name"], ["name": string, "description": string]),
            "DescriptionUpdate": object([], ["description": string]),
            "Domain": domain, "DomainList": list("Domain"),
            "DomainCreate": object(["enterprise", "name"], ["enterprise": string, "name": string, "description": string]),
            "Zone": zone, "ZoneList": list("Zone"),
            "ZoneCreate": object(["domain", "name"], ["domain": string, "name": string, "description": string]),
            "Subnet": subnet, "SubnetList": list("Subnet"),
            "SubnetCreate": object(["zone", "name", "cidr"], [
                "zone": string, "name": string, "cidr": string, "gateway": string, "dhcp": boolean, "reserved": array(string),
                    "description": string,
            ]),
            "SubnetUpdate": object([], ["dhcp": boolean, "description": string]),
            "SubnetUsage": object(["used", "capacity", "free"], ["used": integer, "capacity": integer, "free": integer]),
            "Endpoint": endpoint, "EndpointList": list("Endpoint"),
            "EndpointCreate": object(["subnet", "name"], [
                "subnet": string, "name": string, "kind": enumeration(["container", "vm"]), "owner": string, "host": string,
                "ip": string, "profile": string, "externalIds": .object(["type": "object", "additionalProperties": string]),
                "hostname": string, "egressRate": rate, "ingressRate": rate,
            ]),
            "EndpointUpdate": object([], [
                "host": string, "state": enumeration(["pending", "up", "down", "error"]), "profile": string, "owner": string,
                "interface": string, "externalIds": .object(["type": "object", "additionalProperties": string]),
                "hostname": string,
            ]),
            "Host": host, "HostList": list("Host"),
            "HostRegistration": object(["underlayIP"], ["underlayIP": string]),
            "HostHeartbeat": object([], ["appliedRevision": integer]),
            "JoinTokenCreate": object([], ["ttlSeconds": integer, "host": string]),
            "JoinToken": object(["token", "expiresAt"], ["token": string, "expiresAt": time, "host": string]),
            "HostJoin": object(["host", "joinToken"], ["host": string, "joinToken": string]),
            "HostCredential": object(["host", "credential"], ["host": string, "credential": string]),
            "Profile": profile, "ProfileList": list("Profile"),
            "ProfileCreate": object(["enterprise", "name"], [
                "enterprise": string, "name": string, "rules": array(aclRuleInput), "egressRate": rate, "ingressRate": rate,
                "flowStats": boolean, "description": string,
            ]),
            "ProfileUpdate": object(["rules", "flowStats"], [
                "rules": array(aclRuleInput), "egressRate": rate, "ingressRate": rate, "flowStats": boolean, "description": string,
            ]),
            "Policy": policy, "PolicyList": list("Policy"),
            "PolicyCreate": object(["domain", "name"], [
                "domain": string, "name": string, "rules": array(policyRuleInput), "description": string,
            ]),
            "PolicyUpdate": object(["rules"], ["rules": array(policyRuleInput), "description": string]),
            "User": user, "UserList": list("User"),
            "UserCreate": object(["name"], ["name": string, "enterprise": string, "admin": boolean]),
            "UserWithToken": object(["user", "token"], ["user": ref("User"), "token": string]),
            "Event": event, "EventList": object(["items"], ["items": array(ref("Event"))]),
            "DesiredState": desired,
            "EndpointStats": object(["endpoint", "id", "host", "sent", "received", "source", "collectedAt"], [
                "endpoint": string, "id": integer, "host": string, "sent": counters, "received": counters, "source": string,
                    "collectedAt": string,
            ]),
            "Flow": flow,
            "FloatingIPPool": object(["path", "name", "cidr", "revision", "createdAt"], [
                "path": string, "name": string, "enterprise": string, "cidr": string, "description": string, "revision": integer,
                "createdAt": string,
            ]),
            "FloatingIPPoolList": list("FloatingIPPool"),
            "DockerNetwork": object(["path", "host", "networkID", "subnet", "poolID", "revision"], [
                "path": string, "host": string, "networkID": string, "subnet": string, "enterprise": string, "poolID": string,
                "revision": integer, "createdAt": time,
            ]),
            "DockerNetworkList": list("DockerNetwork"),
            "AttachRefusal": object(["path", "reason"], ["path": string, "reason": string, "container": string, "user": string]),
            "DockerNetworkCreate": object(["host", "networkID", "subnet", "poolID"], [
                "host": string, "networkID": string, "subnet": string, "poolID": string,
            ]),
            "FloatingIPPoolCreate": object(["enterprise", "name", "cidr"], ["enterprise": string, "name": string, "cidr": string,
                                                                            "description": string]),
            "FloatingIPBind": object(["endpoint"], ["endpoint": string, "address": string]),
            "FloatingIPMove": object(["endpoint"], ["endpoint": string]),
            "FloatingIPBinding": binding,
            "FloatingIPList": object(["items"], ["items": array(binding)]),
            "FlowList": object(["items"], ["items": array(ref("Flow"))]),
            "FlowEnd": object(["address"], [
                "endpoint": string, "address": string, "subnet": string, "profile": string, "floatingIP": string,
            ]),
            "PolicyStep": object(["stage", "outcome", "detail"], [
                "stage": enumeration(["routing", "source-profile", "destination-profile", "same-subnet", "floating-ip",
                                      "network-policy", "isolation"]),
                "outcome": enumeration(["accept", "drop", "pass", "no-match", "not-applicable"]),
                "object": string, "rule": string, "ruleNumber": integer, "detail": string,
            ]),
            "PolicyExplanation": object(["from", "to", "protocol", "verdict", "steps"], [
                "from": ref("FlowEnd"), "to": ref("FlowEnd"), "protocol": enumeration(["tcp", "udp", "icmp"]), "port": integer,
                "verdict": enumeration(["allow", "deny"]), "steps": array(ref("PolicyStep")),
            ]),
            "FlowQuery": object(["from", "to"], [
                "from": string, "to": string, "protocol": enumeration(["tcp", "udp", "icmp"]), "port": integer,
            ]),
            "ProbeRequest": object(["from", "to", "protocol"], [
                "from": string, "to": string, "protocol": enumeration(["tcp", "udp", "icmp"]), "port": integer,
            ]),
            "ProbeStep": object(["family", "table", "chain", "kind", "verdict"], [
                "family": string, "table": string, "chain": string, "handle": integer, "rule": string, "kind": string, "verdict": string,
            ]),
            "ProbeResult": object(["verdict", "steps"], [
                "verdict": enumeration(["allow", "deny"]), "steps": array(ref("ProbeStep")), "answered": boolean,
            ]),
            "ProbeReport": object([], ["result": ref("ProbeResult"), "error": string]),
            "HostProbeList": object(["items", "revision"], [
                "items": array(object(["id", "request"], ["id": string, "request": ref("ProbeRequest")])), "revision": integer,
            ]),
            "VerifiedExplanation": object(["explanation"], [
                "explanation": ref("PolicyExplanation"), "kernel": ref("ProbeResult"), "agrees": boolean,
            ]),
            "HostStatsReport": object(["collectedAt", "endpoints", "flows"], [
                "collectedAt": string, "endpoints": array(ref("EndpointStats")), "flows": array(ref("Flow")),
            ]),
            "DesiredStateDelta": object([], [
                "underlayIP": string, "domains": array(.object(["type": "object"])), "removedDomains": array(string),
                "endpoints": array(ref("Endpoint")), "removedEndpoints": array(string),
                "remoteEndpoints": array(remote), "removedRemoteEndpoints": array(string),
                "profiles": array(ref("Profile")), "removedProfiles": array(string),
            ]),
            "WatchMessage": object(["type", "revision"], [
                "type": enumeration(["snapshot", "delta", "bookmark"]), "revision": integer,
                "state": ref("DesiredState"), "delta": ref("DesiredStateDelta"),
            ]),
        ]
    }
}

extension JSONValue: ExpressibleByStringLiteral, ExpressibleByBooleanLiteral {
    public init(stringLiteral value: String) { self = .string(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
}
