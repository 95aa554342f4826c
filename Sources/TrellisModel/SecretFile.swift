import Foundation

/// Files that hold a secret (tokens, credentials, private keys): mode 0600 from their first byte, in a
/// directory made 0700 if it is missing, and replaced by a rename, so a reader never sees half of one.
public enum SecretFile {
    /// Writes `text` to `path`; `what` names the secret in the error ("the admin token").
    public static func write(_ text: String, to path: String, what: String) throws {
        let manager = FileManager.default
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty, !manager.fileExists(atPath: directory) {
            try manager.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        }
        let temporary = path + ".new"
        try? manager.removeItem(atPath: temporary)
        guard manager.createFile(atPath: temporary, contents: Data(text.utf8), attributes: [.posixPermissions: 0o600]),
              rename(temporary, path) == 0 else {
            throw TrellisError(.unavailable, "cannot write \(what) to \(path): \(String(cString: strerror(errno)))")
        }
    }
}
