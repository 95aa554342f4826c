import CTrellisLinux
import Foundation
import Glibc
import TrellisModel
import TrellisNetlinkWire

extension NetworkNamespace {
    /// Sends a raw Ethernet frame out of the link `index` of this namespace (AF_PACKET).
    public func sendFrame(_ frame: [UInt8], linkIndex index: Int32) throws {
        try run {
            let protocolARP = UInt16(0x0806).bigEndian
            let fd = socket(AF_PACKET, Int32(SOCK_RAW.rawValue), Int32(protocolARP))
            guard fd >= 0 else { throw NetlinkError(code: errno, operation: "socket(AF_PACKET)") }
            defer { close(fd) }
            var address = sockaddr_ll()
            address.sll_family = UInt16(AF_PACKET)
            address.sll_protocol = protocolARP
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
}
