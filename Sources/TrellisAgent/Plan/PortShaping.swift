import Foundation
import TrellisModel
import TrellisNetlink
import TrellisNetlinkWire

/// Rate limits of one port: `ingress` (towards the endpoint) shapes the port's own egress; `egress` (from
/// the endpoint) is redirected from the port's ingress to an ifb and shaped there.
public struct PortShaping: Hashable, Sendable {
    public var port: String
    public var shaper: String
    public var egress: RateLimit?
    public var ingress: RateLimit?

    /// A port without limits: its operations remove any Trellis put there.
    static func unlimited(_ port: String) -> PortShaping { PortShaping(port: port, shaper: "", egress: nil, ingress: nil) }

    /// The traffic-control changes that bring the port from `current` to these limits.
    func operations(current: TrafficControl.Qdiscs) -> [TrafficControlOperation] {
        var operations: [TrafficControlOperation] = []
        if let ingress {
            operations.append(.shape(device: port, Self.tokenBucket(ingress)))
        } else if current.root[port] == "tbf" {
            operations.append(.removeShaping(device: port))
        }
        if let egress {
            operations.append(.shape(device: shaper, Self.tokenBucket(egress)))
            if !current.ingress.contains(port) { operations.append(.redirectIngress(device: port, target: shaper)) }
        } else if current.ingress.contains(port) {
            operations.append(.removeIngress(device: port))
        }
        return operations
    }

    /// The token bucket of a limit: its rate, a burst of 10 ms at that rate (at least 16 kB) unless given,
    /// and 50 ms of queue.
    static func tokenBucket(_ limit: RateLimit) -> TokenBucket {
        let burst = limit.burstBytes ?? max(16_000, limit.bitsPerSecond / 8 / 100)
        return TokenBucket(bitsPerSecond: limit.bitsPerSecond, burstBytes: burst, latencyMicroseconds: 50_000)
    }

    /// The limits in tc's words, as part of the ruleset's generation.
    var summary: String {
        func words(_ limit: RateLimit?) -> String {
            guard let limit else { return "-" }
            return "rate \(limit.bitsPerSecond)bit burst \(Self.tokenBucket(limit).burstBytes) latency 50ms"
        }
        return "\(port) \(words(egress)) \(words(ingress))"
    }
}
