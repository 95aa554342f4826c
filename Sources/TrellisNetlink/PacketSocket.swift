import CTrellisLinux
import Foundation
import Glibc
import TrellisModel
import TrellisNetlinkWire

/// A raw packet socket (AF_PACKET) that sends Ethernet frames out of links of the namespace it was
/// opened in, from any thread.
public final class PacketSocket: @unchecked Sendable {
    private let fd: Int32

    /// Opens the socket in `namespace` (this process's when nil).
    public init(in namespace: NetworkNamespace? = nil) throws {
        let open: () throws -> Int32 = {
            let fd = socket(AF_PACKET, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { throw NetlinkError(code: errno, operation: "socket(AF_PACKET)") }
            return fd
        }
        fd = try namespace?.run(open) ?? open()
    }

    deinit { close(fd) }

    /// Sends `frame` out of link `index`.
    public func send(_ frame: [UInt8], linkIndex index: Int32) throws {
        var address = sockaddr_ll()
        address.sll_family = UInt16(AF_PACKET)
        address.sll_ifindex = index
        address.sll_halen = 6
        let sent = frame.withUnsafeBytes { bytes in
            withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(fd, bytes.baseAddress, bytes.count, 0, $0, socklen_t(MemoryLayout<sockaddr_ll>.size))
                }
            }
        }
        guard sent == frame.count else { throw NetlinkError(code: errno, operation: "send a frame on link \(index)") }
    }
}
