/// An error a person can act on: a machine-readable code, a message, and the field it concerns.
///
/// Every layer throws this type; the HTTP layer maps `code` to a status and renders
/// `{"error": message, "field": field}`.
public struct TrellisError: Error, Sendable, Equatable, Codable, CustomStringConvertible {
    /// What kind of failure this is; each maps to one HTTP status.
    public enum Code: String, Sendable, Codable {
        case invalid, unauthorized, forbidden, notFound, conflict, tooLarge, tooManyRequests, unavailable, internalError

        /// The HTTP status this code is reported with.
        public var httpStatus: Int {
            switch self {
            case .invalid: 400
            case .unauthorized: 401
            case .forbidden: 403
            case .notFound: 404
            case .conflict: 409
            case .tooLarge: 413
            case .tooManyRequests: 429
            case .unavailable: 503
            case .internalError: 500
            }
        }

        public init(httpStatus: Int) {
            switch httpStatus {
            case 401: self = .unauthorized
            case 403: self = .forbidden
            case 404: self = .notFound
            case 409: self = .conflict
            case 413: self = .tooLarge
            case 429: self = .tooManyRequests
            case 503: self = .unavailable
            case 400..<500: self = .invalid
            default: self = .internalError
            }
        }
    }

    public var code: Code
    public var message: String
    public var field: String?

    public init(_ code: Code, _ message: String, field: String? = nil) {
        self.code = code
        self.message = message
        self.field = field
    }

    public var description: String { message }

    public static func invalid(_ message: String, field: String? = nil) -> TrellisError {
        TrellisError(.invalid, message, field: field)
    }
    public static func notFound(_ message: String, field: String? = nil) -> TrellisError {
        TrellisError(.notFound, message, field: field)
    }
    public static func conflict(_ message: String, field: String? = nil) -> TrellisError {
        TrellisError(.conflict, message, field: field)
    }
    public static func forbidden(_ message: String) -> TrellisError { TrellisError(.forbidden, message) }

}

/// The JSON body of every error answer.
public struct ErrorBody: Codable, Sendable, Equatable {
    public var error: String
    public var field: String?
    public init(error: String, field: String?) {
        self.error = error
        self.field = field
    }
}
