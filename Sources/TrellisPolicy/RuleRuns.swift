import TrellisModel

/// An inclusive range of one field of an nftables concatenation (an address, a protocol, a port).
public struct FieldRange: Hashable, Sendable {
    public var low: UInt32
    public var high: UInt32

    public static func exactly(_ value: UInt32) -> FieldRange { FieldRange(low: value, high: value) }
    public static let anyProtocol = FieldRange(low: 0, high: 255)
    public static let anyPort = FieldRange(low: 0, high: 65535)
    public static let anyAddress = FieldRange(low: 0, high: UInt32.max)

    public init(low: UInt32, high: UInt32) { self.low = low; self.high = high }
    public init(_ network: IPv4Network) { self.init(low: network.network.value, high: network.broadcast.value) }

    public func intersects(_ other: FieldRange) -> Bool { low <= other.high && other.low <= high }
    public func contains(_ other: FieldRange) -> Bool { low <= other.low && other.high <= high }

    public var number: String { low == high ? "\(low)" : "\(low)-\(high)" }

    /// As an address field: a CIDR when the range is one, else `first-last`.
    public var address: String {
        let size = UInt64(high) - UInt64(low) + 1
        if size & (size - 1) == 0, UInt64(low) % size == 0 {
            let prefix = 32 - size.trailingZeroBitCount
            return "\(IPv4Address(low))/\(prefix)"
        }
        return "\(IPv4Address(low))-\(IPv4Address(high))"
    }

    /// The protocol field of a rule.
    public static func of(_ proto: RuleProtocol) -> FieldRange {
        switch proto {
        case .tcp: .exactly(6)
        case .udp: .exactly(17)
        case .icmp: .exactly(1)
        case .any: .anyProtocol
        }
    }
}

/// One element of a concatenated interval set: a tuple of field ranges.
public struct SetElement: Hashable, Sendable {
    public var fields: [FieldRange]
    /// How each field is written: addresses as CIDRs, the rest as numbers.
    public var addressFields: Int

    public init(fields: [FieldRange], addressFields: Int) {
        self.fields = fields
        self.addressFields = addressFields
    }

    func overlaps(_ other: SetElement) -> Bool {
        zip(fields, other.fields).allSatisfy { $0.intersects($1) }
    }

    /// Whether every packet of `flow` (one range per field) falls in this element.
    func covers(_ flow: [FieldRange]) -> Bool {
        zip(fields, flow).allSatisfy { $0.contains($1) }
    }

    public var text: String {
        fields.enumerated().map { $0.offset < addressFields ? $0.element.address : $0.element.number }.joined(separator: " . ")
    }

    /// The elements of one rule: each address tuple with the protocol and each port range.
    public static func of(_ addresses: [[FieldRange]], _ proto: RuleProtocol, _ ports: [PortRange], addressFields: Int) -> [SetElement] {
        let portRanges = ports.isEmpty ? [FieldRange.anyPort] : ports.map { FieldRange(low: UInt32($0.first), high: UInt32($0.last)) }
        return addresses.flatMap { tuple in
            portRanges.map { SetElement(fields: tuple + [FieldRange.of(proto), $0], addressFields: addressFields) }
        }
    }
}

/// Ordered first-match rules compiled into as few set lookups as the rules allow: consecutive rules with
/// the same verdict share one concatenated interval set (order among them does not matter), and a new
/// set starts only where the verdict changes or an element would overlap one already in the set (the
/// kernel refuses overlapping elements). The cost per packet grows with the verdict changes, not with
/// the number of rules.
///
/// Each element remembers the rule it came from (`source`, the caller's numbering). Elements of one run do
/// not overlap, so a packet matches at most one per run, and the first run it matches holds the first rule
/// in order that matches it: that rule decides, in the kernel and in `firstMatch`.
public struct RuleRuns: Sendable {
    public struct Run: Sendable {
        public var verdict: RuleAction
        public var elements: [SetElement] = []
        /// The rule each element came from.
        public var sources: [Int] = []
        /// For each field, the indices of the elements whose range there is one value, by that value, and of the
        /// rest: an element that is one value in some field can only overlap those listed under that value or wider
        /// there, and the smallest such list is searched (10,000 rules from one address each cost no more than
        /// 10,000 lookups, where a search through every element of the run cost 50 million comparisons).
        var single: [[UInt32: [Int]]] = []
        var wide: [[Int]] = []

        func overlapping(_ element: SetElement) -> SetElement? {
            var narrowest: (field: Int, value: UInt32, count: Int)?
            for (field, range) in element.fields.enumerated() where range.low == range.high && field < single.count {
                let count = (single[field][range.low]?.count ?? 0) + wide[field].count
                if narrowest.map({ count < $0.count }) ?? true { narrowest = (field, range.low, count) }
            }
            guard let narrowest else { return elements.first { $0.overlaps(element) } }
            let candidates = (single[narrowest.field][narrowest.value] ?? []) + wide[narrowest.field]
            return candidates.lazy.map { elements[$0] }.first { $0.overlaps(element) }
        }

        mutating func append(_ element: SetElement, source: Int) {
            if single.isEmpty {
                single = Array(repeating: [:], count: element.fields.count)
                wide = Array(repeating: [], count: element.fields.count)
            }
            for (field, range) in element.fields.enumerated() {
                if range.low == range.high {
                    single[field][range.low, default: []].append(elements.count)
                } else {
                    wide[field].append(elements.count)
                }
            }
            elements.append(element)
            sources.append(source)
        }
    }

    public private(set) var runs: [Run] = []

    public init() {}

    public mutating func add(_ elements: [SetElement], _ verdict: RuleAction, source: Int) {
        for element in elements {
            // The last run is changed in place: a copy of it held across the append would copy its indexes each time.
            if !runs.isEmpty, runs[runs.count - 1].verdict == verdict {
                switch runs[runs.count - 1].overlapping(element) {
                case element?: continue
                case nil:
                    runs[runs.count - 1].append(element, source: source)
                    continue
                default: break
                }
            }
            var run = Run(verdict: verdict)
            run.append(element, source: source)
            runs.append(run)
        }
    }

    /// The verdict and rule of the first element that covers all of `flow`, as the kernel's lookups would find it.
    public func firstMatch(_ flow: [FieldRange]) -> (verdict: RuleAction, source: Int)? {
        for run in runs {
            if let index = run.elements.firstIndex(where: { $0.covers(flow) }) { return (run.verdict, run.sources[index]) }
        }
        return nil
    }

    /// One nftables rule per run: `KEY { elements } VERDICT`.
    public func rules(key: String, allow: String, deny: String) -> [String] {
        runs.map { run in
            "\(key) { \(run.elements.map(\.text).joined(separator: ", ")) } \(run.verdict == .allow ? allow : deny)"
        }
    }
}

/// A floating IP as the datapath of its endpoint's host instantiates it.
public struct FloatingIPTranslation: Hashable, Sendable {
    public var floating: IPv4Address
    public var endpoint: IPv4Address

    public init(floating: IPv4Address, endpoint: IPv4Address) {
        self.floating = floating
        self.endpoint = endpoint
    }
}
