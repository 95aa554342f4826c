// Trellis's fast path: a tcx program on the host end of each fast port in a router namespace. A frame
// that its port may send (its own MAC and IPv4 address) to another fast port of the same subnet on this
// host goes straight into that container's interface with bpf_redirect_peer; everything else goes on to
// today's path (the classic tc filters, the port's nftables guard, the bridge) unchanged.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

// tcx verdicts: go on to the next program and the classic tc filters, or take the redirect.
#define TCX_NEXT -1

/// A fast port as its own program sees it (keyed by its host end's ifindex) and as a destination sees it
/// (keyed by its IPv4 address, network order): where it is, who it is, and its subnet's VNI.
struct fast_port {
    __u32 ifindex;
    __u32 ip;
    __u32 segment;
    __u8 mac[6];
    __u8 pad[2];
};

/// What the fast path delivered to a port (keyed by the destination's host-end ifindex): the port's own
/// counters miss these, since the frames never leave through it.
struct delivered {
    __u64 packets;
    __u64 bytes;
};

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 4096);
    __type(key, __u32);
    __type(value, struct fast_port);
} ports_by_ifindex SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 4096);
    __type(key, __u32);
    __type(value, struct fast_port);
} ports_by_address SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_HASH);
    __uint(max_entries, 4096);
    __type(key, __u32);
    __type(value, struct delivered);
} delivered_by_ifindex SEC(".maps");

static __always_inline int same_mac(const __u8 *a, const __u8 *b) {
    return a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3] && a[4] == b[4] && a[5] == b[5];
}

SEC("tc")
int fast_port_ingress(struct __sk_buff *skb) {
    void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP)) return TCX_NEXT;
    struct iphdr *ip = (void *)(eth + 1);
    if ((void *)(ip + 1) > end || ip->version != 4) return TCX_NEXT;

    __u32 ifindex = skb->ifindex;
    struct fast_port *source = bpf_map_lookup_elem(&ports_by_ifindex, &ifindex);
    // A forged source is left to the port's guard, which drops it.
    if (!source || ip->saddr != source->ip || !same_mac(eth->h_source, source->mac)) return TCX_NEXT;
    __u32 address = ip->daddr;
    struct fast_port *destination = bpf_map_lookup_elem(&ports_by_address, &address);
    // Only switched traffic within one subnet: a frame to another subnet's address is the router's to judge.
    if (!destination || destination->segment != source->segment || !same_mac(eth->h_dest, destination->mac)) return TCX_NEXT;

    __u32 target = destination->ifindex;
    struct delivered *count = bpf_map_lookup_elem(&delivered_by_ifindex, &target);
    if (count) {
        count->packets += 1;
        count->bytes += skb->len;
    } else {
        struct delivered first = {.packets = 1, .bytes = skb->len};
        bpf_map_update_elem(&delivered_by_ifindex, &target, &first, BPF_NOEXIST);
    }
    return bpf_redirect_peer(target, 0);
}

char LICENSE[] SEC("license") = "GPL";
