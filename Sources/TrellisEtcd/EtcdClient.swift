import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import Synchronization

/// A client of an etcd cluster through its JSON gateway: each request goes to the member that answered last,
/// and to the next member when that one cannot be reached.
public final class EtcdClient: Sendable {
    public let members: [String]
    private let http: HTTPClient
    private let current = Mutex(0)
    private let timeout: TimeAmount

    /// `members` are client URLs such as `http://127.0.0.1:2379`; each connection attempt gives up after
    /// `connectTimeout`, and up to `connections` requests are in flight per member. The HTTP client retries a
    /// refused connection until the request's deadline (`timeout`), so moving off a dead member costs up to one
    /// request's timeout; later requests start at the member that answered.
    public init(members: [String], timeout: TimeAmount = .seconds(5), connectTimeout: TimeAmount = .seconds(1),
                connections: Int = 64) throws {
        let members = members.map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 }
        guard !members.isEmpty, members.allSatisfy({ $0.hasPrefix("http://") || $0.hasPrefix("https://") }) else {
            throw EtcdError.unreachable(members: members, reason: "etcd members are given as http:// or https:// URLs")
        }
        self.members = members
        self.timeout = timeout
        var configuration = HTTPClient.Configuration()
        configuration.timeout.connect = connectTimeout
        // Every concurrent transaction holds a connection (the gateway speaks HTTP/1 without TLS); a request
        // waiting for one longer than the connect timeout fails.
        configuration.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = connections
        http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    /// The member asked first: the one that answered last.
    public var preferredMember: String { members[current.withLock { $0 }] }

    /// Closes the connections; the client is not used after.
    public func shutdown() async throws {
        try await http.shutdown()
    }

    public func range(_ request: EtcdRangeRequest) async throws -> EtcdRangeResponse {
        try await call("/v3/kv/range", request)
    }

    public func txn(_ request: EtcdTxnRequest) async throws -> EtcdTxnResponse {
        try await call("/v3/kv/txn", request)
    }

    /// Puts one key and returns the revision of the change.
    public func put(_ key: EtcdBytes, _ value: EtcdBytes) async throws -> Int {
        try await txn(EtcdTxnRequest(compare: [], success: [.put(key, value)])).header.revision
    }

    /// Forgets the history before `revision`; watches from earlier revisions are then canceled as compacted.
    /// `physical`: returns only once the backend has let go of it.
    public func compact(revision: Int, physical: Bool = false) async throws {
        struct Answer: Decodable { var header: EtcdHeader }
        let _: Answer = try await call("/v3/kv/compaction", EtcdCompactionRequest(revision: revision, physical: physical))
    }

    /// Calls `body` with each message of a watch until the stream ends, `body` returns false, or the task is
    /// cancelled. A stream the member ends or loses throws; the caller resumes from the revision it has seen.
    public func watch(_ request: EtcdWatchRequest, _ body: (EtcdWatchResponse) async throws -> Bool) async throws {
        let response = try await send("/v3/watch", try JSONEncoder().encode(request), timeout: .hours(24 * 365))
        var pending: [UInt8] = []
        for try await chunk in response.body {
            pending.append(contentsOf: chunk.readableBytesView)
            while let newline = pending.firstIndex(of: 0x0A) {
                let line = Array(pending[..<newline])
                pending.removeSubrange(...newline)
                guard !line.isEmpty else { continue }
                if try await !body(try EtcdWatchResponse.parseLine(line)) { return }
            }
        }
        throw EtcdError.unreachable(members: members, reason: "the watch stream ended")
    }

    private func call<Body: Encodable, Answer: Decodable>(_ path: String, _ body: Body) async throws -> Answer {
        let response = try await send(path, try JSONEncoder().encode(body), timeout: timeout)
        let data = Data(try await response.body.collect(upTo: 64 << 20).readableBytesView)
        guard response.status == .ok else {
            throw EtcdError.failed((try? JSONDecoder().decode(EtcdFailure.self, from: data))
                ?? EtcdFailure(code: 0, message: "HTTP \(response.status.code): \(String(decoding: data.prefix(200), as: UTF8.self))"))
        }
        do {
            return try JSONDecoder().decode(Answer.self, from: data)
        } catch {
            throw EtcdError.failed(EtcdFailure(code: 0, message: "an answer to \(path) that could not be read: \(error)"))
        }
    }

    /// Sends to the current member, moving on to the next on a connection failure (not on an answer, even an
    /// error: etcd's errors mean the same from every member).
    private func send(_ path: String, _ body: Data, timeout: TimeAmount) async throws -> HTTPClientResponse {
        let first = current.withLock { $0 }
        var reasons: [String] = []
        for step in 0..<members.count {
            let index = (first + step) % members.count
            var request = HTTPClientRequest(url: members[index] + path)
            request.method = .POST
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: body))
            do {
                let response = try await http.execute(request, timeout: timeout)
                if step > 0 { current.withLock { $0 = index } }
                return response
            } catch {
                try Task.checkCancellation()
                reasons.append("\(members[index]): \(error)")
            }
        }
        throw EtcdError.unreachable(members: members, reason: reasons.joined(separator: "; "))
    }
}
