import ArgumentParser
import Foundation
import TrellisEtcd

/// etcd alone: transactions shaped like an endpoint create's commit (five compares; the object, its event and
/// three claims put), sent from this process through the same client the controllers use. The cluster benchmark
/// runs it inside its lab's controller namespace, where the lab's etcd listens, as the ceiling a controller's
/// creates are measured against. Then it deletes what it wrote and compacts etcd's history: etcd here slows with
/// uncompacted history (3,000 of these transactions and their deletion halve the next 3,000's rate; a compaction
/// restores it), and the runs after it should find the store as it was.
struct EtcdTxnBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "etcd-txns", abstract: "Create-shaped transactions/s straight to etcd (the cluster benchmark's baseline).")
    @Option(help: "etcd client URLs, comma-separated.") var members: String
    @Option(help: "Transactions.") var count = 3000
    @Option(help: "Concurrent clients.") var clients = 64
    @Option(help: "Watchers of the transactions' keys, each on a connection of its own (as each controller of a cluster watches).")
    var watchers = 0

    func run() async throws {
        let client = try EtcdClient(members: members.split(separator: ",").map(String.init), connections: clients + 4)
        let prefix = "/trellis-bench-raw/\(UUID().uuidString)/"
        // Sizes as measured on a create's commit: the object ~300 bytes, its event ~600.
        let object = EtcdBytes(Array(repeating: UInt8(ascii: "o"), count: 300))
        let event = EtcdBytes(Array(repeating: UInt8(ascii: "e"), count: 600))
        let watching = try await watch(prefix, watchers: watchers, until: count * 5)
        let start = ContinuousClock.now
        let latency = try await withThrowingTaskGroup(of: Samples.self) { group in
            for worker in 0..<clients {
                group.addTask {
                    var samples = Samples()
                    for index in stride(from: worker, to: count, by: clients) {
                        let keys = ["o/", "e/", "ip/", "mac/", "id/"].map { EtcdBytes(prefix + $0 + String(index)) }
                        let owner = EtcdBytes("bench/d/z/s/e\(index)")
                        let request = EtcdTxnRequest(
                            compare: [keys[0], keys[2], keys[3], keys[4]].map(EtcdCompare.absent)
                                + [EtcdCompare(EtcdBytes(prefix + "subnet"), .modRevision(0))],
                            success: [.put(keys[0], object), .put(keys[1], event), .put(keys[2], owner), .put(keys[3], owner),
                                      .put(keys[4], owner)])
                        let begun = ContinuousClock.now
                        let answer = try await client.txn(request)
                        guard answer.succeeded else { throw ValidationError("a baseline transaction's compares failed") }
                        samples.add(milliseconds(since: begun))
                    }
                    return samples
                }
            }
            return try await group.reduce(into: Samples()) { $0.values += $1.values }
        }
        let rate = Double(count) / (milliseconds(since: start) / 1000)
        try await watching.value
        // What it wrote goes, and so does the history, so the runs measured after start from the store as it was.
        let deleted = try await client.txn(EtcdTxnRequest(compare: [], success: [.delete(key: EtcdBytes(prefix),
                                                                                         rangeEnd: EtcdBytes(prefix).prefixEnd)]))
        try await client.compact(revision: deleted.header.revision, physical: true)
        try await client.shutdown()
        print(String(format: "%.0f %@", rate, latency.summary))
    }

    /// `watchers` watches of `prefix` that each end once `keys` changes arrived; they have begun when this returns.
    func watch(_ prefix: String, watchers: Int, until keys: Int) async throws -> Task<Void, any Error> {
        let started = AsyncStream<Void>.makeStream()
        if watchers == 0 { started.continuation.finish() }
        let task = Task {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<watchers {
                    group.addTask {
                        let client = try EtcdClient(members: members.split(separator: ",").map(String.init), connections: 2)
                        var seen = 0
                        try await client.watch(EtcdWatchRequest(key: EtcdBytes(prefix), rangeEnd: EtcdBytes(prefix).prefixEnd,
                                                                startRevision: 0)) { message in
                            if message.created { started.continuation.yield() }
                            seen += message.events.count
                            return seen < keys
                        }
                        try await client.shutdown()
                    }
                }
                try await group.waitForAll()
            }
        }
        var begun = 0
        for await _ in started.stream where watchers > 0 {
            begun += 1
            if begun == watchers { break }
        }
        return task
    }
}
