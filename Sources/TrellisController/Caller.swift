import TrellisModel

/// Who is making a request: an admin, or a member of one enterprise who sees only that enterprise.
public struct Caller: Sendable, Equatable {
    public var name: String
    public var enterprise: String?
    public var admin: Bool

    public init(name: String, enterprise: String?, admin: Bool) {
        self.name = name
        self.enterprise = enterprise
        self.admin = admin
    }

    /// The controller itself, for work it does on its own behalf.
    public static let system = Caller(name: "system", enterprise: nil, admin: true)

    /// Whether objects of `enterprise` exist for this caller. Others' objects answer 404, never 403,
    /// so that a tenant cannot even learn their names.
    public func sees(_ enterprise: String?) -> Bool { admin || (enterprise != nil && enterprise == self.enterprise) }

    public func requireAdmin(_ what: String) throws {
        guard admin else { throw TrellisError.forbidden("only an admin may \(what)") }
    }

    /// The object if the caller may see it, else the same not-found error as if it did not exist.
    func visible<R: Resource>(_ object: R?, _ path: String, field: String? = nil) throws -> R {
        guard let object, sees(object.enterprise) else {
            throw TrellisError.notFound("no \(R.kind.rawValue) '\(path)'", field: field)
        }
        return object
    }
}
