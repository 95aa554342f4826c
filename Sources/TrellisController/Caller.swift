import TrellisModel

/// Who is making a request: an admin, a member of one enterprise who sees only that enterprise, or a
/// host's agent with its host credential (on its own, or acting for a user).
public struct Caller: Sendable, Equatable {
    public var name: String
    public var enterprise: String?
    public var admin: Bool
    /// The host whose credential made the request. Such a caller may use only the operations a host
    /// needs, and only on that host's own objects (`Registry.requireOwnHost`, `visible`).
    public var host: String?

    public init(name: String, enterprise: String?, admin: Bool, host: String? = nil) {
        self.name = name
        self.enterprise = enterprise
        self.admin = admin
        self.host = host
    }

    /// The controller itself, for work it does on its own behalf.
    public static let system = Caller(name: "system", enterprise: nil, admin: true)

    /// A host's agent using its own credential.
    public static func host(_ name: String) -> Caller { Caller(name: "host \(name)", enterprise: nil, admin: false, host: name) }

    /// A host on its own authority may place endpoints of any enterprise on itself (the workloads its
    /// operator runs there), so it sees every enterprise; its reach is limited by operation and by host instead.
    var isHostOnItsOwn: Bool { host != nil && enterprise == nil }

    /// Whether objects of `enterprise` exist for this caller. Others' objects answer 404, never 403,
    /// so that a tenant cannot even learn their names.
    public func sees(_ enterprise: String?) -> Bool {
        admin || isHostOnItsOwn || (enterprise != nil && enterprise == self.enterprise)
    }

    public func requireAdmin(_ what: String) throws {
        if let host { throw Self.hostForbidden(host, what) }
        guard admin else { throw TrellisError.forbidden("only an admin may \(what)") }
    }

    /// Refuses unless the caller is an admin or the credential of `name` itself.
    public func requireOwnHost(_ name: String, _ what: String) throws {
        if let host {
            guard host == name else { throw Self.hostForbidden(host, "\(what) for host '\(name)'") }
            return
        }
        try requireAdmin(what)
    }

    /// A host lists only what is placed on itself, and must say so (`?host=` its own name).
    func requireListingOwnHost(_ listed: String?, of kind: ResourceKind) throws {
        guard let host, listed != host else { return }
        throw Self.hostForbidden(host, "list \(kind.collection) beyond its own (ask with host=\(host))")
    }

    static func hostForbidden(_ host: String, _ what: String) -> TrellisError {
        TrellisError.forbidden("the credential of host '\(host)' may not \(what)")
    }

    /// The object if the caller may see it, else the same not-found error as if it did not exist. A
    /// host's credential reaches only the objects placed on that host.
    func visible<R: Resource>(_ object: R?, _ path: String, field: String? = nil) throws -> R {
        guard let object, sees(object.enterprise) else {
            throw TrellisError.notFound("no \(R.kind.rawValue) '\(path)'", field: field)
        }
        if let host, R.kind == .endpoint || R.kind == .dockerNetwork, object.boundHost != host {
            throw Self.hostForbidden(host, "use \(R.kind.collection) placed on other hosts")
        }
        return object
    }
}
