import CTrellisLinux
import Foundation
import Glibc
import TrellisNetlinkWire

/// A failed kernel operation: what was asked, and the errno the kernel answered with.
public struct NetlinkError: Error, Equatable, CustomStringConvertible {
    /// The errno (positive), e.g. EEXIST, ENODEV, EPERM.
    public var code: Int32
    public var operation: String

    public init(code: Int32, operation: String) {
        self.code = code
        self.operation = operation
    }

    public var description: String { "\(operation): \(String(cString: strerror(code))) (errno \(code))" }
}

/// A rtnetlink socket. It belongs to the network namespace it was opened in, whatever thread later
/// uses it. Requests are serialized; replies are matched to their request by sequence number.
public final class NetlinkSocket: @unchecked Sendable {
    private let fd: Int32
    private var sequence: UInt32 = UInt32.random(in: 1...1_000_000)
    private let lock = NSLock()
    private var buffer = [UInt8](repeating: 0, count: 1 << 20)

    /// Opens a netlink socket of `family` (NETLINK_ROUTE unless told) in the calling thread's network namespace.
    public init(family: Int32 = NETLINK_ROUTE) throws {
        fd = socket(AF_NETLINK, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), family)
        guard fd >= 0 else { throw NetlinkError(code: errno, operation: "socket(AF_NETLINK)") }
        var address = sockaddr_nl()
        address.nl_family = sa_family_t(AF_NETLINK)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_nl>.size)) }
        }
        guard bound == 0 else {
            let code = errno
            close(fd)
            throw NetlinkError(code: code, operation: "bind(AF_NETLINK)")
        }
        var on: Int32 = 1
        // Ask for extended acks and strict dump checking where the kernel has them; harmless otherwise.
        _ = setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, &on, socklen_t(MemoryLayout<Int32>.size))
    }

    deinit { close(fd) }

    /// Joins multicast `group` of the socket's family: its events then arrive through `events(within:)`.
    public func join(group: UInt32) throws {
        var group = group
        guard setsockopt(fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &group, socklen_t(MemoryLayout<UInt32>.size)) == 0 else {
            throw NetlinkError(code: errno, operation: "join netlink group \(group)")
        }
    }

    /// The messages of the next datagram to arrive within `milliseconds`, or none.
    public func events(within milliseconds: Int32) throws -> [NetlinkMessage] {
        var waiting = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let ready = poll(&waiting, 1, milliseconds)
        if ready < 0 && errno != EINTR { throw NetlinkError(code: errno, operation: "poll(netlink)") }
        guard ready > 0 else { return [] }
        return try lock.withLock {
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if count < 0 {
                if errno == EAGAIN || errno == EINTR { return [] }
                throw NetlinkError(code: errno, operation: "recv(netlink)")
            }
            return try NetlinkMessage.parseAll(Array(buffer[0..<count]))
        }
    }

    private func send(_ message: NetlinkMessage) throws -> UInt32 {
        sequence &+= 1
        var message = message
        message.sequence = sequence
        let bytes = message.encode()
        var address = sockaddr_nl()
        address.nl_family = sa_family_t(AF_NETLINK)
        let sent = bytes.withUnsafeBytes { raw in
            withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(fd, raw.baseAddress, raw.count, 0, $0, socklen_t(MemoryLayout<sockaddr_nl>.size))
                }
            }
        }
        guard sent == bytes.count else { throw NetlinkError(code: errno, operation: "sendto(netlink)") }
        return sequence
    }

    /// The messages answering `sequence` in the next datagram; stale replies to earlier requests are skipped.
    private func receive(_ sequence: UInt32) throws -> [NetlinkMessage] {
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count < 0 {
                if errno == EINTR { continue }
                throw NetlinkError(code: errno, operation: "recv(netlink)")
            }
            let messages = try NetlinkMessage.parseAll(Array(buffer[0..<count])).filter { $0.sequence == sequence }
            if !messages.isEmpty { return messages }
        }
    }

    static func name(_ type: UInt16) -> String {
        [16: "RTM_NEWLINK", 17: "RTM_DELLINK", 18: "RTM_GETLINK", 19: "RTM_SETLINK", 20: "RTM_NEWADDR", 21: "RTM_DELADDR",
         22: "RTM_GETADDR", 24: "RTM_NEWROUTE", 25: "RTM_DELROUTE", 26: "RTM_GETROUTE", 28: "RTM_NEWNEIGH",
         29: "RTM_DELNEIGH", 30: "RTM_GETNEIGH", 36: "RTM_NEWQDISC", 37: "RTM_DELQDISC",
         38: "RTM_GETQDISC", 44: "RTM_NEWTFILTER", 0x101: "IPCTNL_MSG_CT_GET"][type] ?? "netlink \(type)"
    }

    /// Sends a request that the kernel acknowledges, and returns any reply messages before the ack.
    @discardableResult
    public func execute(_ message: NetlinkMessage, describing what: String = "") throws -> [NetlinkMessage] {
        lock.lock()
        defer { lock.unlock() }
        let operation = Self.name(message.type) + (what.isEmpty ? "" : " " + what)
        let sequence = try send(message)
        var replies: [NetlinkMessage] = []
        while true {
            for reply in try receive(sequence) {
                if let code = reply.errorCode {
                    if code != 0 { throw NetlinkError(code: -code, operation: operation) }
                    return replies
                }
                replies.append(reply)
                if message.flags & NL.NLM_F_ACK == 0 { return replies }
            }
        }
    }

    /// Sends a dump request and collects every answer up to NLMSG_DONE, starting over when the
    /// kernel says the dump was interrupted by a concurrent change.
    public func dump(_ message: NetlinkMessage, describing what: String = "") throws -> [NetlinkMessage] {
        lock.lock()
        defer { lock.unlock() }
        let operation = Self.name(message.type) + " dump" + (what.isEmpty ? "" : " " + what)
        for _ in 0..<10 {
            let sequence = try send(message)
            var replies: [NetlinkMessage] = []
            var interrupted = false
            collecting: while true {
                for reply in try receive(sequence) {
                    if reply.flags & NL.NLM_F_DUMP_INTR != 0 { interrupted = true }
                    if reply.type == NL.NLMSG_DONE { break collecting }
                    if let code = reply.errorCode, code != 0 { throw NetlinkError(code: -code, operation: operation) }
                    replies.append(reply)
                }
            }
            if !interrupted { return replies }
        }
        throw NetlinkError(code: EINTR, operation: operation + " (interrupted 10 times)")
    }
}
