import CTrellisLinux
import Foundation
import Glibc
import TrellisModel
import TrellisNetlink

/// Sends ICMP echo requests every `interval` from a raw socket in a namespace until one is answered,
/// and reports when. Unlike iputils ping, which falls back to one probe per 10 ms while a probe is
/// unanswered, it keeps its cadence, so the time it reports is the datapath's and not the prober's.
final class EchoProbe: @unchecked Sendable {
    private let fd: Int32
    private let target: IPv4Address
    private let identifier = UInt16.random(in: 1...UInt16.max)
    private let done = DispatchSemaphore(value: 0)
    private var answeredAt: Double?

    init(in namespace: NetworkNamespace, target: IPv4Address) throws {
        fd = try namespace.run {
            let fd = socket(AF_INET, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), Int32(IPPROTO_ICMP))
            guard fd >= 0 else { throw NetlinkError(code: errno, operation: "open a raw ICMP socket") }
            return fd
        }
        self.target = target
        var buffer: Int32 = 1 << 20
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buffer, socklen_t(MemoryLayout<Int32>.size))
    }

    deinit { close(fd) }

    /// Starts probing on a thread of its own.
    func start(interval: TimeInterval = 0.001, timeout: TimeInterval = 3) {
        Thread.detachNewThread { [self] in
            let deadline = Date().addingTimeInterval(timeout)
            var sequence: UInt16 = 0
            var next = Date()
            while Date() < deadline {
                if Date() >= next {
                    sequence &+= 1
                    send(sequence)
                    next = next.addingTimeInterval(interval)
                }
                var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                // Waits to the microsecond: a timeout in whole milliseconds rounds the sub-millisecond wait to
                // zero, and the probe would spin, taking a core from the datapath it measures.
                let wait = Int64(max(0, next.timeIntervalSinceNow) * 1_000_000_000)
                if trellis_poll_nanoseconds(&descriptor, 1, wait) > 0, receivedReply() {
                    answeredAt = Date().timeIntervalSince1970
                    break
                }
            }
            done.signal()
        }
    }

    /// Waits for the probe to end; the wall-clock time of the first reply, if any.
    func wait() -> Double? {
        done.wait()
        return answeredAt
    }

    private func send(_ sequence: UInt16) {
        var packet: [UInt8] = [8, 0, 0, 0, UInt8(identifier >> 8), UInt8(identifier & 0xff), UInt8(sequence >> 8), UInt8(sequence & 0xff)]
        packet += [UInt8](repeating: 0x5a, count: 56)
        let checksum = Self.checksum(packet)
        packet[2] = UInt8(checksum >> 8)
        packet[3] = UInt8(checksum & 0xff)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = target.value.bigEndian
        _ = packet.withUnsafeBytes { bytes in
            withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(fd, bytes.baseAddress, bytes.count, Int32(MSG_DONTWAIT), $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
        }
    }

    /// Reads one datagram; whether it is an echo reply from the target to this probe.
    private func receivedReply() -> Bool {
        var buffer = [UInt8](repeating: 0, count: 1500)
        let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
        guard count >= 28 else { return false }
        let headerLength = Int(buffer[0] & 0x0f) * 4
        guard count >= headerLength + 8 else { return false }
        let source = UInt32(buffer[12]) << 24 | UInt32(buffer[13]) << 16 | UInt32(buffer[14]) << 8 | UInt32(buffer[15])
        let identifier = UInt16(buffer[headerLength + 4]) << 8 | UInt16(buffer[headerLength + 5])
        return source == target.value && buffer[headerLength] == 0 && identifier == self.identifier
    }

    static func checksum(_ bytes: [UInt8]) -> UInt16 {
        var sum: UInt32 = 0
        for index in stride(from: 0, to: bytes.count, by: 2) {
            sum += UInt32(bytes[index]) << 8 | (index + 1 < bytes.count ? UInt32(bytes[index + 1]) : 0)
        }
        while sum >> 16 != 0 { sum = (sum & 0xffff) + (sum >> 16) }
        return ~UInt16(sum)
    }
}
