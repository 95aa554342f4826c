import Foundation

// etcd's v3 API as its JSON gateway carries it (etcd's Documentation/dev-guide/api_grpc_gateway.md and
// rpc.proto): field names as in the proto (snake_case), keys and values base64, 64-bit integers as decimal
// strings, and fields at their zero value (0, false, empty, the first enum case) left out.

/// A key or value: bytes, base64 on the wire.
public struct EtcdBytes: Codable, Hashable, Sendable, Comparable, CustomStringConvertible {
    public var bytes: [UInt8]

    public init(_ bytes: [UInt8]) { self.bytes = bytes }
    public init(_ text: String) { self.bytes = Array(text.utf8) }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let text = try container.decode(String.self)
        guard let data = Data(base64Encoded: text) else {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: "'\(text.prefix(40))' is not base64")
        }
        bytes = Array(data)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(Data(bytes).base64EncodedString())
    }

    /// The first key after every key that starts with these bytes (etcd's `range_end` of a prefix);
    /// `\0` (every key) when no such key exists.
    public var prefixEnd: EtcdBytes {
        var end = bytes
        while let last = end.last {
            if last < 0xFF {
                end[end.count - 1] = last + 1
                return EtcdBytes(end)
            }
            end.removeLast()
        }
        return EtcdBytes([0])
    }

    public var text: String { String(decoding: bytes, as: UTF8.self) }
    public var description: String { text }
    public static func < (left: EtcdBytes, right: EtcdBytes) -> Bool { left.bytes.lexicographicallyPrecedes(right.bytes) }
}

/// A 64-bit integer as the gateway writes it: a decimal string (it also accepts a number).
struct EtcdInt: Codable, Hashable, Sendable {
    var value: Int

    init(_ value: Int) { self.value = value }

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let number = try? container.decode(Int.self) {
            value = number
        } else {
            let text = try container.decode(String.self)
            guard let number = Int(text) else {
                throw DecodingError.dataCorruptedError(in: container, debugDescription: "'\(text.prefix(40))' is not an integer")
            }
            value = number
        }
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(String(value))
    }
}

extension KeyedDecodingContainer {
    /// An integer field, 0 when the gateway left it out.
    func etcdInt(_ key: Key) throws -> Int { try decodeIfPresent(EtcdInt.self, forKey: key)?.value ?? 0 }
}

extension KeyedEncodingContainer {
    /// An integer field, left out at 0 as the gateway does.
    mutating func encodeEtcdInt(_ value: Int, forKey key: Key) throws {
        if value != 0 { try encode(EtcdInt(value), forKey: key) }
    }

    mutating func encodeFlag(_ value: Bool, forKey key: Key) throws {
        if value { try encode(true, forKey: key) }
    }
}

/// Every response's header: the store's revision when the request was served.
public struct EtcdHeader: Decodable, Sendable, Equatable {
    public var revision: Int
    public var memberID: String?

    enum CodingKeys: String, CodingKey { case revision, memberID = "member_id" }

    public init(revision: Int) { self.revision = revision }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        revision = try container.etcdInt(.revision)
        memberID = try container.decodeIfPresent(String.self, forKey: .memberID)
    }
}

/// One key as stored, with the revisions of its creation and last change.
public struct EtcdKeyValue: Decodable, Sendable, Equatable {
    public var key: EtcdBytes
    public var value: EtcdBytes
    public var createRevision: Int
    public var modRevision: Int
    public var version: Int
    public var lease: Int

    enum CodingKeys: String, CodingKey {
        case key, value, version, lease
        case createRevision = "create_revision", modRevision = "mod_revision"
    }

    public init(key: EtcdBytes, value: EtcdBytes, createRevision: Int, modRevision: Int, version: Int = 1, lease: Int = 0) {
        (self.key, self.value, self.createRevision, self.modRevision, self.version, self.lease) =
            (key, value, createRevision, modRevision, version, lease)
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        key = try container.decodeIfPresent(EtcdBytes.self, forKey: .key) ?? EtcdBytes([])
        value = try container.decodeIfPresent(EtcdBytes.self, forKey: .value) ?? EtcdBytes([])
        createRevision = try container.etcdInt(.createRevision)
        modRevision = try container.etcdInt(.modRevision)
        version = try container.etcdInt(.version)
        lease = try container.etcdInt(.lease)
    }
}

/// `POST /v3/kv/range`: the keys from `key` up to `rangeEnd` (one key without it).
public struct EtcdRangeRequest: Encodable, Sendable, Equatable {
    public enum SortOrder: String, Encodable, Sendable { case none = "NONE", ascend = "ASCEND", descend = "DESCEND" }
    public enum SortTarget: String, Encodable, Sendable {
        case key = "KEY", version = "VERSION", create = "CREATE", mod = "MOD", value = "VALUE"
    }

    public var key: EtcdBytes
    public var rangeEnd: EtcdBytes?
    public var limit = 0
    /// The revision to read at; 0 for the newest.
    public var revision = 0
    public var sortOrder = SortOrder.none
    public var sortTarget = SortTarget.key
    public var keysOnly = false
    public var countOnly = false
    public var minCreateRevision = 0

    public init(key: EtcdBytes, rangeEnd: EtcdBytes? = nil) {
        self.key = key
        self.rangeEnd = rangeEnd
    }

    /// Every key that starts with `prefix`.
    public static func prefix(_ prefix: EtcdBytes) -> EtcdRangeRequest { EtcdRangeRequest(key: prefix, rangeEnd: prefix.prefixEnd) }

    enum CodingKeys: String, CodingKey {
        case key, limit, revision
        case rangeEnd = "range_end", sortOrder = "sort_order", sortTarget = "sort_target", keysOnly = "keys_only"
        case countOnly = "count_only", minCreateRevision = "min_create_revision"
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(key, forKey: .key)
        try container.encodeIfPresent(rangeEnd, forKey: .rangeEnd)
        try container.encodeEtcdInt(limit, forKey: .limit)
        try container.encodeEtcdInt(revision, forKey: .revision)
        if sortOrder != .none { try container.encode(sortOrder, forKey: .sortOrder) }
        if sortTarget != .key { try container.encode(sortTarget, forKey: .sortTarget) }
        try container.encodeFlag(keysOnly, forKey: .keysOnly)
        try container.encodeFlag(countOnly, forKey: .countOnly)
        try container.encodeEtcdInt(minCreateRevision, forKey: .minCreateRevision)
    }
}

public struct EtcdRangeResponse: Decodable, Sendable, Equatable {
    public var header: EtcdHeader
    public var kvs: [EtcdKeyValue]
    /// Whether more keys matched than `limit` let through.
    public var more: Bool
    /// How many keys matched.
    public var count: Int

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        header = try container.decode(EtcdHeader.self, forKey: .header)
        kvs = try container.decodeIfPresent([EtcdKeyValue].self, forKey: .kvs) ?? []
        more = try container.decodeIfPresent(Bool.self, forKey: .more) ?? false
        count = try container.etcdInt(.count)
    }

    enum CodingKeys: String, CodingKey { case header, kvs, more, count }
}

/// One condition of a transaction, on a key's create or mod revision, version or value.
public struct EtcdCompare: Encodable, Sendable, Equatable {
    public enum Subject: Sendable, Equatable {
        case createRevision(Int), modRevision(Int), version(Int), value(EtcdBytes)
    }

    public enum Relation: String, Encodable, Sendable { case equal = "EQUAL", greater = "GREATER", less = "LESS", notEqual = "NOT_EQUAL" }

    public var key: EtcdBytes
    public var subject: Subject
    public var relation: Relation
    /// With it, the compare holds for every key from `key` up to here (keys that do not exist are not compared).
    public var rangeEnd: EtcdBytes?

    public init(_ key: EtcdBytes, _ subject: Subject, _ relation: Relation = .equal, rangeEnd: EtcdBytes? = nil) {
        (self.key, self.subject, self.relation, self.rangeEnd) = (key, subject, relation, rangeEnd)
    }

    /// The key does not exist.
    public static func absent(_ key: EtcdBytes) -> EtcdCompare { EtcdCompare(key, .createRevision(0)) }

    enum CodingKeys: String, CodingKey {
        case key, target, result, version, value
        case createRevision = "create_revision", modRevision = "mod_revision", rangeEnd = "range_end"
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(key, forKey: .key)
        try container.encodeIfPresent(rangeEnd, forKey: .rangeEnd)
        if relation != .equal { try container.encode(relation, forKey: .result) }
        // The gateway drops zero values, but a compare with `create_revision` 0 must still name its target.
        switch subject {
        case .createRevision(let revision):
            try container.encode("CREATE", forKey: .target)
            try container.encode(EtcdInt(revision), forKey: .createRevision)
        case .modRevision(let revision):
            try container.encode("MOD", forKey: .target)
            try container.encode(EtcdInt(revision), forKey: .modRevision)
        case .version(let version):
            try container.encode("VERSION", forKey: .target)
            try container.encode(EtcdInt(version), forKey: .version)
        case .value(let value):
            try container.encode("VALUE", forKey: .target)
            try container.encode(value, forKey: .value)
        }
    }
}

/// One operation of a transaction.
public enum EtcdOperation: Encodable, Sendable, Equatable {
    case range(EtcdRangeRequest)
    case put(key: EtcdBytes, value: EtcdBytes, lease: Int)
    case delete(key: EtcdBytes, rangeEnd: EtcdBytes?)

    public static func put(_ key: EtcdBytes, _ value: EtcdBytes) -> EtcdOperation { .put(key: key, value: value, lease: 0) }

    enum CodingKeys: String, CodingKey {
        case requestRange = "request_range", requestPut = "request_put", requestDeleteRange = "request_delete_range"
    }
    enum PutKeys: String, CodingKey { case key, value, lease }
    enum DeleteKeys: String, CodingKey { case key, rangeEnd = "range_end" }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        switch self {
        case .range(let request):
            try container.encode(request, forKey: .requestRange)
        case .put(let key, let value, let lease):
            var put = container.nestedContainer(keyedBy: PutKeys.self, forKey: .requestPut)
            try put.encode(key, forKey: .key)
            try put.encode(value, forKey: .value)
            try put.encodeEtcdInt(lease, forKey: .lease)
        case .delete(let key, let rangeEnd):
            var delete = container.nestedContainer(keyedBy: DeleteKeys.self, forKey: .requestDeleteRange)
            try delete.encode(key, forKey: .key)
            try delete.encodeIfPresent(rangeEnd, forKey: .rangeEnd)
        }
    }
}

/// `POST /v3/kv/txn`: `success` runs when every compare holds, `failure` otherwise, atomically.
public struct EtcdTxnRequest: Encodable, Sendable, Equatable {
    public var compare: [EtcdCompare]
    public var success: [EtcdOperation]
    public var failure: [EtcdOperation]

    public init(compare: [EtcdCompare], success: [EtcdOperation], failure: [EtcdOperation] = []) {
        (self.compare, self.success, self.failure) = (compare, success, failure)
    }
}

/// What one operation of a transaction answered; only ranges carry anything Trellis reads.
public struct EtcdOperationResponse: Decodable, Sendable, Equatable {
    public var range: EtcdRangeResponse?

    enum CodingKeys: String, CodingKey { case range = "response_range" }
}

public struct EtcdTxnResponse: Decodable, Sendable, Equatable {
    public var header: EtcdHeader
    public var succeeded: Bool
    public var responses: [EtcdOperationResponse]

    enum CodingKeys: String, CodingKey { case header, succeeded, responses }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        header = try container.decode(EtcdHeader.self, forKey: .header)
        succeeded = try container.decodeIfPresent(Bool.self, forKey: .succeeded) ?? false
        responses = try container.decodeIfPresent([EtcdOperationResponse].self, forKey: .responses) ?? []
    }
}

/// `POST /v3/watch`: one stream of the changes to a range from `startRevision` on.
public struct EtcdWatchRequest: Encodable, Sendable, Equatable {
    public var key: EtcdBytes
    public var rangeEnd: EtcdBytes?
    public var startRevision: Int
    public var previousKeyValue: Bool

    public init(key: EtcdBytes, rangeEnd: EtcdBytes?, startRevision: Int, previousKeyValue: Bool = false) {
        (self.key, self.rangeEnd, self.startRevision, self.previousKeyValue) = (key, rangeEnd, startRevision, previousKeyValue)
    }

    enum CodingKeys: String, CodingKey { case createRequest = "create_request" }
    enum CreateKeys: String, CodingKey { case key, rangeEnd = "range_end", startRevision = "start_revision", prevKV = "prev_kv" }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        var create = container.nestedContainer(keyedBy: CreateKeys.self, forKey: .createRequest)
        try create.encode(key, forKey: .key)
        try create.encodeIfPresent(rangeEnd, forKey: .rangeEnd)
        try create.encodeEtcdInt(startRevision, forKey: .startRevision)
        try create.encodeFlag(previousKeyValue, forKey: .prevKV)
    }
}

/// One change a watch reports: a put (the zero case, so the gateway leaves `type` out) or a delete.
public struct EtcdEvent: Decodable, Sendable, Equatable {
    public enum Kind: String, Decodable, Sendable { case put = "PUT", delete = "DELETE" }

    public var kind: Kind
    public var keyValue: EtcdKeyValue
    public var previous: EtcdKeyValue?

    enum CodingKeys: String, CodingKey { case kind = "type", keyValue = "kv", previous = "prev_kv" }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        kind = try container.decodeIfPresent(Kind.self, forKey: .kind) ?? .put
        keyValue = try container.decode(EtcdKeyValue.self, forKey: .keyValue)
        previous = try container.decodeIfPresent(EtcdKeyValue.self, forKey: .previous)
    }
}

/// One message of a watch stream: its creation, changes, progress, or its end (canceled, maybe because the
/// revision it asked for was compacted away).
public struct EtcdWatchResponse: Decodable, Sendable, Equatable {
    public var header: EtcdHeader
    public var created: Bool
    public var canceled: Bool
    public var compactRevision: Int
    public var cancelReason: String?
    public var events: [EtcdEvent]

    enum CodingKeys: String, CodingKey {
        case header, created, canceled, events
        case compactRevision = "compact_revision", cancelReason = "cancel_reason"
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        header = try container.decodeIfPresent(EtcdHeader.self, forKey: .header) ?? EtcdHeader(revision: 0)
        created = try container.decodeIfPresent(Bool.self, forKey: .created) ?? false
        canceled = try container.decodeIfPresent(Bool.self, forKey: .canceled) ?? false
        compactRevision = try container.etcdInt(.compactRevision)
        cancelReason = try container.decodeIfPresent(String.self, forKey: .cancelReason)
        events = try container.decodeIfPresent([EtcdEvent].self, forKey: .events) ?? []
    }

    /// A line of the gateway's stream: `{"result": …}`, or `{"error": …}` when the stream failed.
    public static func parseLine(_ line: [UInt8]) throws -> EtcdWatchResponse {
        struct Line: Decodable {
            var result: EtcdWatchResponse?
            var error: EtcdFailure?
        }
        let decoded = try JSONDecoder().decode(Line.self, from: Data(line))
        if let result = decoded.result { return result }
        throw EtcdError.failed(decoded.error ?? EtcdFailure(code: 0, message: "a watch line without a result"))
    }
}

/// `POST /v3/kv/compaction`: forgets the history before `revision`.
public struct EtcdCompactionRequest: Encodable, Sendable, Equatable {
    public var revision: Int
    /// Answer only once the history is gone from the backend, not when the compaction is merely decided.
    public var physical: Bool

    public init(revision: Int, physical: Bool = false) {
        self.revision = revision
        self.physical = physical
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(EtcdInt(revision), forKey: .revision)
        if physical { try container.encode(true, forKey: .physical) }
    }

    enum CodingKeys: String, CodingKey { case revision, physical }
}

/// The gateway's error body: a gRPC status code and etcd's message.
public struct EtcdFailure: Decodable, Sendable, Equatable, Error {
    public var code: Int
    public var message: String

    public init(code: Int, message: String) { (self.code, self.message) = (code, message) }

    enum CodingKeys: String, CodingKey { case code, message, error }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        code = try container.decodeIfPresent(Int.self, forKey: .code) ?? 0
        message = try container.decodeIfPresent(String.self, forKey: .message)
            ?? container.decodeIfPresent(String.self, forKey: .error) ?? "no message"
    }

    /// gRPC's OUT_OF_RANGE: the revision asked for was compacted.
    public var compacted: Bool { code == 11 || message.contains("compacted") }
}

/// What went wrong talking to etcd, in words that name etcd.
public enum EtcdError: Error, Sendable, Equatable, CustomStringConvertible {
    /// etcd answered with an error.
    case failed(EtcdFailure)
    /// No member of the cluster could be reached.
    case unreachable(members: [String], reason: String)

    public var description: String {
        switch self {
        case .failed(let failure): "etcd refused the request: \(failure.message) (code \(failure.code))"
        case .unreachable(let members, let reason): "no etcd member answered (\(members.joined(separator: ", "))): \(reason)"
        }
    }
}
