/// Kernel constants, under their kernel names, from linux/netlink.h, linux/rtnetlink.h,
/// linux/if_link.h, linux/if_addr.h, linux/neighbour.h and linux/if_bridge.h.
public enum NL {
    // Message types
    public static let NLMSG_NOOP: UInt16 = 1
    public static let NLMSG_ERROR: UInt16 = 2
    public static let NLMSG_DONE: UInt16 = 3
    public static let RTM_NEWLINK: UInt16 = 16
    public static let RTM_DELLINK: UInt16 = 17
    public static let RTM_GETLINK: UInt16 = 18
    public static let RTM_SETLINK: UInt16 = 19
    public static let RTM_NEWADDR: UInt16 = 20
    public static let RTM_DELADDR: UInt16 = 21
    public static let RTM_GETADDR: UInt16 = 22
    public static let RTM_NEWROUTE: UInt16 = 24
    public static let RTM_DELROUTE: UInt16 = 25
    public static let RTM_GETROUTE: UInt16 = 26
    public static let RTM_NEWNEIGH: UInt16 = 28
    public static let RTM_DELNEIGH: UInt16 = 29
    public static let RTM_GETNEIGH: UInt16 = 30

    // Header flags
    public static let NLM_F_REQUEST: UInt16 = 0x01
    public static let NLM_F_MULTI: UInt16 = 0x02
    public static let NLM_F_ACK: UInt16 = 0x04
    public static let NLM_F_DUMP_INTR: UInt16 = 0x10
    public static let NLM_F_ROOT: UInt16 = 0x100
    public static let NLM_F_MATCH: UInt16 = 0x200
    public static let NLM_F_DUMP: UInt16 = 0x300
    public static let NLM_F_REPLACE: UInt16 = 0x100
    public static let NLM_F_EXCL: UInt16 = 0x200
    public static let NLM_F_CREATE: UInt16 = 0x400
    public static let NLM_F_APPEND: UInt16 = 0x800

    // Address families
    public static let AF_UNSPEC: UInt8 = 0
    public static let AF_INET: UInt8 = 2
    public static let AF_BRIDGE: UInt8 = 7

    // Attribute flags
    public static let NLA_F_NESTED: UInt16 = 0x8000

    // Link attributes (IFLA_*)
    public static let IFLA_ADDRESS: UInt16 = 1
    public static let IFLA_BROADCAST: UInt16 = 2
    public static let IFLA_STATS64: UInt16 = 23
    public static let IFLA_IFNAME: UInt16 = 3
    public static let IFLA_MTU: UInt16 = 4
    public static let IFLA_LINK: UInt16 = 5
    public static let IFLA_MASTER: UInt16 = 10
    public static let IFLA_PROTINFO: UInt16 = 12
    public static let IFLA_OPERSTATE: UInt16 = 16
    public static let IFLA_LINKINFO: UInt16 = 18
    public static let IFLA_NET_NS_PID: UInt16 = 19
    public static let IFLA_NET_NS_FD: UInt16 = 28
    public static let IFLA_LINK_NETNSID: UInt16 = 37
    public static let IFLA_INFO_KIND: UInt16 = 1
    /// In a bridge's IFLA_INFO_DATA: hand bridged IPv4 frames to the IP netfilter hooks (br_netfilter).
    public static let IFLA_BR_NF_CALL_IPTABLES: UInt16 = 36
    public static let IFLA_INFO_DATA: UInt16 = 2
    public static let IFLA_INFO_SLAVE_KIND: UInt16 = 4
    public static let IFLA_INFO_SLAVE_DATA: UInt16 = 5
    public static let VETH_INFO_PEER: UInt16 = 1
    public static let IFLA_VXLAN_ID: UInt16 = 1
    public static let IFLA_VXLAN_LINK: UInt16 = 3
    public static let IFLA_VXLAN_LOCAL: UInt16 = 4
    public static let IFLA_VXLAN_LEARNING: UInt16 = 7
    public static let IFLA_VXLAN_PORT: UInt16 = 15
    public static let IFLA_BRPORT_LEARNING: UInt16 = 8
    public static let IFLA_BRPORT_NEIGH_SUPPRESS: UInt16 = 32

    // Link flags
    public static let IFF_UP: UInt32 = 0x1
    public static let IFF_LOWER_UP: UInt32 = 0x10000

    // Address attributes (IFA_*)
    public static let IFA_ADDRESS: UInt16 = 1
    public static let IFA_LOCAL: UInt16 = 2

    // Route attributes and values
    public static let RTA_DST: UInt16 = 1
    public static let RTA_OIF: UInt16 = 4
    public static let RTA_GATEWAY: UInt16 = 5
    public static let RTA_TABLE: UInt16 = 15
    public static let RT_TABLE_MAIN: UInt8 = 254
    public static let RTPROT_STATIC: UInt8 = 4
    public static let RT_SCOPE_UNIVERSE: UInt8 = 0
    public static let RT_SCOPE_LINK: UInt8 = 253
    public static let RT_SCOPE_NOWHERE: UInt8 = 255
    public static let RTN_UNICAST: UInt8 = 1

    // Neighbour attributes and values
    public static let NDA_DST: UInt16 = 1
    public static let NDA_LLADDR: UInt16 = 2
    public static let NDA_MASTER: UInt16 = 9
    public static let NUD_NOARP: UInt16 = 0x40
    public static let NUD_PERMANENT: UInt16 = 0x80
    public static let NTF_SELF: UInt8 = 0x02
    public static let NTF_MASTER: UInt8 = 0x04
    /// A proxy ARP entry: the host answers ARP for the address on that link.
    public static let NTF_PROXY: UInt8 = 0x08
}
