import Foundation
import TrellisFastPath
import TrellisNetlink

/// Keeps each router namespace's nftables tables at the ruleset its reconcile planned. Planning is
/// cheap and happens inside the datapath's reconcile; loading (through libnftables) happens outside it,
/// on a thread of its own, so a reload never holds up an attach. A table already at the planned
/// generation (after an agent restart, say) is left alone; a reload carries the counters' values over.
/// It also keeps each router's fast path to the ruleset in force: closed while a new one loads, then
/// admitting the connections the new one accepts.
public final class FirewallLoader: @unchecked Sendable {
    private let lock = NSLock()
    private let loading = NSLock()
    private var plans: [String: FirewallRuleset] = [:]
    /// Each router's fast path, by namespace.
    private var fastPaths: [String: FastPathSlot] = [:]
    /// The ruleset in force, by namespace.
    private var loaded: [String: FirewallRuleset] = [:]
    /// Ports whose rate limits are in force, by namespace.
    private var shaped: [String: Set<String>] = [:]
    /// Namespaces whose last ruleset had rate limits (their qdiscs may need removing).
    private var plansShaped: Set<String> = []
    /// Router namespaces whose conntrack was told to accept TCP segments outside the windows it tracked.
    private var liberal: Set<String> = []

    public init() {}

    /// Records the ruleset wanted in the namespace at `namespacePath`, and the fast path it governs there.
    func plan(_ ruleset: FirewallRuleset, namespacePath: String, fastPath: FastPathSlot? = nil) {
        lock.withLock {
            plans[namespacePath] = ruleset
            fastPaths[namespacePath] = fastPath
        }
    }

    /// Forgets a namespace that is gone.
    func forget(namespacePath: String) {
        lock.withLock {
            plans[namespacePath] = nil
            loaded[namespacePath] = nil
            shaped[namespacePath] = nil
            fastPaths[namespacePath] = nil
            liberal.remove(namespacePath)
        }
    }

    /// The ruleset planned for a namespace.
    public func ruleset(namespacePath: String) -> FirewallRuleset? { lock.withLock { plans[namespacePath] } }

    /// Whether a planned ruleset or rate limit is not in force yet: whether `sync()` has work to do.
    public var hasPendingWork: Bool { lock.withLock { !pendingPlans().isEmpty } }

    /// The plans not in force yet; called with `lock` held.
    private func pendingPlans() -> [String: FirewallRuleset] {
        plans.filter {
            loaded[$0.key]?.generation != $0.value.generation || loaded[$0.key]?.guards != $0.value.guards
                || !Set($0.value.shaping.map(\.port)).isSubset(of: shaped[$0.key] ?? [])
        }
    }

    /// Loads every planned ruleset that is not in force yet, and the rate limits of its ports (a port
    /// that does not exist yet gets them at a later sync).
    public func sync() throws {
        try loading.withLock {
            let pending = lock.withLock { pendingPlans() }
            for (path, ruleset) in pending.sorted(by: { $0.key < $1.key }) {
                guard FileManager.default.fileExists(atPath: path) else { continue }
                let (previous, hadShaping, fastPath) = lock.withLock {
                    (loaded[path], !(shaped[path] ?? []).isEmpty || plansShaped.contains(path), fastPaths[path])
                }
                // What is in force is known once this process has loaded it; it is read back only to
                // carry counters over, or after a restart to leave a ruleset already in force alone.
                if previous?.generation != ruleset.generation {
                    let current = previous == nil || !ruleset.counters.isEmpty
                        ? try NFTables.table("inet", "trellis", namespacePath: path) : nil
                    if previous != nil || current?.comment != "generation \(ruleset.generation)" {
                        // No connection the old ruleset accepted skips the router while the new one comes in.
                        try fastPath?.admit(.closed)
                        try NFTables.load(ruleset.script(counterValues: current?.counters ?? [:], replacing: previous), namespacePath: path)
                    } else {
                        // After a restart, with the verdicts in force: the guards are put right if ports came or went meanwhile.
                        let guards = try NFTables.table("netdev", "trellis", namespacePath: path)?.chainComments ?? [:]
                        let script = ruleset.guardScript(inForce: guards)
                        if !script.isEmpty { try NFTables.load(script, namespacePath: path) }
                    }
                } else if let previous, previous.guards != ruleset.guards {
                    // Only ports came, went or changed: their own guard chains, and no other connection leaves the fast path.
                    try NFTables.load(ruleset.script(replacing: previous), namespacePath: path)
                }
                if fastPath != nil, lock.withLock({ !liberal.contains(path) }) {
                    // Conntrack does not see the segments the fast path carries, so its TCP window falls behind; a
                    // connection's next segment through the router (after a ruleset change, say) would be out of
                    // window, invalid, and dropped. Like the kernel's own flowtable for the connections it offloads,
                    // the router's conntrack accepts such segments (an out-of-window RST is still invalid). The
                    // setting exists once the ruleset's ct expressions have loaded conntrack.
                    try NetworkNamespace(path: path).setSysctl("net.netfilter.nf_conntrack_tcp_be_liberal", "1")
                    lock.withLock { _ = liberal.insert(path) }
                }
                try fastPath?.admit(FastPathAdmission(generation: ruleset.generation, filtersBridgedTraffic: ruleset.filtersBridgedTraffic))
                var present: [String] = []
                if !ruleset.shaping.isEmpty || hadShaping || previous == nil {
                    let trafficControl = try TrafficControl(namespacePath: path)
                    let qdiscs = try trafficControl.qdiscs()
                    let limits = Dictionary(ruleset.shaping.map { ($0.port, $0) }, uniquingKeysWith: { a, _ in a })
                    present = ruleset.ports.filter { qdiscs.devices[$0] != nil }
                    let operations = present.flatMap { port in
                        (limits[port] ?? PortShaping.unlimited(port)).operations(current: qdiscs)
                    }
                    try trafficControl.apply(operations, devices: qdiscs.devices)
                }
                lock.withLock {
                    if ruleset.shaping.isEmpty { plansShaped.remove(path) } else { plansShaped.insert(path) }
                    shaped[path] = Set(present).intersection(ruleset.shaping.map(\.port))
                    if plans[path]?.generation == ruleset.generation { loaded[path] = ruleset }
                }
            }
        }
    }
}
