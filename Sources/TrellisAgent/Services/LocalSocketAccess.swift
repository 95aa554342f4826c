import Foundation
import Logging
import TrellisModel

/// Who may connect to the agent's local sockets (its API and the Docker plugin socket): root alone
/// (mode 0600), or also a named group (0660). Anyone who can connect can plug namespaces into tenant
/// networks as this host, so nothing wider is offered.
public struct LocalSocketAccess: Sendable {
    public let group: String?

    /// Root alone.
    public static let rootOnly = LocalSocketAccess(checkedGroup: nil)

    /// Root and `group` when one is named, checked to exist.
    public init(group: String?) throws {
        if let group { _ = try Self.groupID(group) }
        self.init(checkedGroup: group)
    }

    private init(checkedGroup: String?) { group = checkedGroup }

    static func groupID(_ name: String) throws -> gid_t {
        guard let entry = getgrnam(name) else {
            throw TrellisError.invalid("socket-group: no group '\(name)' on this host", field: "socket-group")
        }
        return entry.pointee.gr_gid
    }

    /// Applies the mode to a socket just bound; if that fails, removes the socket (no one can connect
    /// then) and logs why.
    public func restrict(_ path: String, logger: Logger) {
        do {
            try apply(to: path)
        } catch {
            unlink(path)
            logger.error("removed \(path): \(error)")
        }
    }

    /// Applies the mode (and group) to a socket just bound. Until then the socket has the umask's mode,
    /// which lets no one but its owner connect (connecting needs write permission).
    public func apply(to path: String) throws {
        if let group, chown(path, getuid(), try Self.groupID(group)) != 0 {
            throw TrellisError(.unavailable, "cannot give \(path) to group \(group): \(String(cString: strerror(errno)))")
        }
        guard chmod(path, group == nil ? 0o600 : 0o660) == 0 else {
            throw TrellisError(.unavailable, "cannot restrict \(path): \(String(cString: strerror(errno)))")
        }
    }
}
