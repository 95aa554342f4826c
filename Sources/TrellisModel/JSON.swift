import Foundation

/// Any JSON value, for payloads whose shape depends on their kind (an event's object).
public enum JSONValue: Codable, Sendable, Equatable {
    case null, bool(Bool), number(Double), string(String), array([JSONValue]), object([String: JSONValue])

    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let n = try? c.decode(Double.self) { self = .number(n) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([JSONValue].self) { self = .array(a) }
        else { self = .object(try c.decode([String: JSONValue].self)) }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .null: try c.encodeNil()
        case .bool(let b): try c.encode(b)
        case .number(let n):
            if n.rounded() == n, abs(n) < 1e15 { try c.encode(Int64(n)) } else { try c.encode(n) }
        case .string(let s): try c.encode(s)
        case .array(let a): try c.encode(a)
        case .object(let o): try c.encode(o)
        }
    }

    /// The value of `key` when this is an object.
    public subscript(key: String) -> JSONValue? {
        if case .object(let o) = self { return o[key] }
        return nil
    }

    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }
}

/// The one JSON configuration every layer uses: ISO 8601 dates, sorted keys.
public enum JSONCoding {
    public static func encoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }

    public static func decoder() -> JSONDecoder {
        let decoder = JSONDecoder()
        // Foundation's .iso8601 strategy reports a bad date without its coding path; this one names the field.
        decoder.dateDecodingStrategy = .custom { decoder in
            let container = try decoder.singleValueContainer()
            let text = try container.decode(String.self)
            guard let date = try? Date(text, strategy: .iso8601) else {
                throw DecodingError.dataCorruptedError(in: container,
                                                       debugDescription: "'\(text)' is not an ISO 8601 time such as 2026-01-01T00:00:00Z")
            }
            return date
        }
        return decoder
    }

    /// Converts any encodable value to a `JSONValue`.
    public static func value(of object: some Encodable) throws -> JSONValue {
        try decoder().decode(JSONValue.self, from: encoder().encode(object))
    }

    /// Converts a `JSONValue` back to a typed value.
    public static func decode<T: Decodable>(_ type: T.Type, from value: JSONValue) throws -> T {
        try decoder().decode(T.self, from: encoder().encode(value))
    }

    /// Renders a decoding error as a message and the dotted path of the field it concerns.
    public static func describe(_ error: DecodingError) -> TrellisError {
        func path(_ keys: [any CodingKey]) -> String {
            keys.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
                .trimmingCharacters(in: CharacterSet(charactersIn: "."))
        }
        switch error {
        case .keyNotFound(let key, let context):
            let field = path(context.codingPath + [key])
            return .invalid("\(field): is required", field: field)
        case .typeMismatch(let type, let context):
            let field = path(context.codingPath)
            return .invalid("\(field.isEmpty ? "body" : field): expected \(describe(type))", field: field.isEmpty ? nil : field)
        case .valueNotFound(let type, let context):
            let field = path(context.codingPath)
            return .invalid("\(field): expected \(describe(type)), got null", field: field.isEmpty ? nil : field)
        case .dataCorrupted(let context):
            let field = path(context.codingPath)
            if field.isEmpty { return .invalid("body is not valid JSON: \(context.debugDescription)") }
            return .invalid("\(field): \(context.debugDescription)", field: field)
        @unknown default:
            return .invalid("body could not be read: \(error)")
        }
    }

    private static func describe(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: "a string"
        case is Int.Type, is Double.Type: "a number"
        case is Bool.Type: "true or false"
        default:
            String(describing: type).hasPrefix("Array") ? "an array"
                : String(describing: type).hasPrefix("Dictionary") ? "an object" : "a \(type)"
        }
    }
}

/// A value that travels in JSON as its text form (`"10.0.0.1"`, `"10.0.0.0/24"`, `"02:7e:…"`).
public protocol TextCodable: Codable, CustomStringConvertible {
    /// Parses the text form, or throws an error that says what was wrong with it.
    static func parseText(_ text: String) throws -> Self
}

extension TextCodable {
    public init(from decoder: any Decoder) throws {
        self = try Self.parseTextValue(from: decoder)
    }

    /// Decodes the text form, reporting a parse failure as a decoding error at the right path.
    public static func parseTextValue(from decoder: any Decoder) throws -> Self {
        let text = try decoder.singleValueContainer().decode(String.self)
        do {
            return try parseText(text)
        } catch let error as TrellisError {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: error.message))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}
