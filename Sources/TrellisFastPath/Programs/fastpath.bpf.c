// Trellis's fast path: a tcx program on the host end of each fast port in a router namespace, and on each
// subnet's VXLAN device. A frame that its port may send (its own MAC and IPv4 address) to another fast port
// of the router goes straight into that container's interface with bpf_redirect_peer; to an endpoint on
// another host, straight to its subnet's VXLAN device (whose FDB knows the endpoint's host). A frame the
// VXLAN device received for a fast port of its subnet goes straight into the container. Everything else
// goes on to today's path (the classic tc filters, the port's nftables guard, the bridge, the router, its
// nftables filters) unchanged.
//
// Policy stays the router's: where its nftables ruleset filters a frame (always between subnets, and
// within one where the domain filters bridged traffic), only TCP and UDP packets of a connection that the
// kernel's conntrack holds as established, accepted by the ruleset now in force (its conntrack mark is the
// ruleset's generation) and not translated, take the fast path. A connection's first packets, its SYN, FIN
// and RST, everything after a ruleset change until the ruleset accepts the connection again, and one packet
// of each direction every 2 s go through the router, so no flow the ruleset forbids skips it, conntrack
// still sees every connection open and close, and no entry of a live connection expires.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <stddef.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

// tcx verdicts: go on to the next program and the classic tc filters, or take the redirect.
#define TCX_NEXT -1

/// A fast port as its own program sees it (keyed by its host end's ifindex) and as a destination sees it
/// (keyed by its IPv4 address, network order): where it is, who it is, and its subnet's VNI. A tunnel is a
/// subnet's VXLAN device, keyed by its ifindex only: what it receives comes from other hosts.
struct fast_port {
    __u32 ifindex;
    __u32 ip;
    __u32 segment;
    __u8 mac[6];
    __u8 tunnel;
    __u8 pad;
};

/// An endpoint on another host (keyed by its IPv4 address): its subnet's VNI and its MAC.
struct remote_endpoint {
    __u32 segment;
    __u8 mac[6];
    __u8 pad[2];
};

/// The router's MAC on a subnet (keyed by the subnet's VNI): the anycast gateway's.
struct gateway {
    __u8 mac[6];
    __u8 pad[2];
};

/// What the ruleset in force asks of the fast path. Generation 0: a ruleset is being loaded, or none is
/// known yet, and every filtered frame takes the router's path.
struct admission {
    __u32 generation;
    __u32 filters_bridged;
};

/// What the fast path delivered to a port (keyed by the destination's host-end ifindex), or of a connection
/// (keyed by its packets' addresses and ports as they travel): their counters miss these.
struct delivered {
    __u64 packets;
    __u64 bytes;
};

/// One direction of a connection, as its packets carry it (addresses and ports in network order).
struct flow_key {
    __u32 source;
    __u32 destination;
    __u16 source_port;
    __u16 destination_port;
    __u8 protocol;
    __u8 pad[3];
};

/// The kernel's conntrack entry, as much as the program reads (CO-RE: fields found by name in the kernel's BTF).
struct nf_conn {
    unsigned long status;
    __u32 mark;
} __attribute__((preserve_access_index));

/// bpf_ct_opts of the conntrack kfuncs (Linux 6.0).
struct ct_options {
    __s32 netns_id;
    __s32 error;
    __u8 l4proto;
    __u8 dir;
    __u8 reserved[2];
};

extern struct nf_conn *bpf_skb_ct_lookup(struct __sk_buff *skb, struct bpf_sock_tuple *tuple, __u32 tuple__sz,
                                         struct ct_options *opts, __u32 opts__sz) __ksym;
extern void bpf_ct_release(struct nf_conn *ct) __ksym;

// enum ip_conntrack_status bits.
#define IPS_SEEN_REPLY (1UL << 1)
#define IPS_CONFIRMED (1UL << 3)
#define IPS_NAT_MASK ((1UL << 4) | (1UL << 5))
#define IPS_DYING (1UL << 9)

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
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 4096);
    __type(key, __u32);
    __type(value, struct gateway);
} gateways_by_segment SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 4096);
    __type(key, __u32);
    __type(value, __u32);
} tunnels_by_segment SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 65536);
    __type(key, __u32);
    __type(value, struct remote_endpoint);
} remotes_by_address SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct admission);
} admissions SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_HASH);
    __uint(max_entries, 4096);
    __type(key, __u32);
    __type(value, struct delivered);
} delivered_by_ifindex SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_LRU_PERCPU_HASH);
    __uint(max_entries, 65536);
    __type(key, struct flow_key);
    __type(value, struct delivered);
} delivered_by_flow SEC(".maps");

/// When each direction of a filtered connection last went through the router (keyed as delivered_by_flow).
struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 65536);
    __type(key, struct flow_key);
    __type(value, __u64);
} routed_by_flow SEC(".maps");

/// Conntrack refreshes an entry's timeout only from the packets it sees: one packet of each direction of a
/// connection goes through the router this often, well within the shortest timeout of an established one
/// (30 s for UDP that has not yet been replied to for 2 s), so its entry never expires under the fast path.
#define REFRESH_NS (2ULL * 1000 * 1000 * 1000)

static __always_inline int same_mac(const __u8 *a, const __u8 *b) {
    return a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3] && a[4] == b[4] && a[5] == b[5];
}

static __always_inline void count(void *map, const void *key, __u64 bytes) {
    struct delivered *total = bpf_map_lookup_elem(map, key);
    if (total) {
        total->packets += 1;
        total->bytes += bytes;
    } else {
        struct delivered first = {.packets = 1, .bytes = bytes};
        bpf_map_update_elem(map, key, &first, BPF_NOEXIST);
    }
}

/// Whether this direction of a connection is due to send a packet through the router (see REFRESH_NS): its
/// first packet on the fast path starts the clock, the router having just seen the connection.
static __always_inline int due_through_router(const struct flow_key *key) {
    __u64 now = bpf_ktime_get_ns();
    __u64 *last = bpf_map_lookup_elem(&routed_by_flow, key);
    if (!last) {
        bpf_map_update_elem(&routed_by_flow, key, &now, BPF_ANY);
        return 0;
    }
    if (now - *last < REFRESH_NS) return 0;
    *last = now;
    return 1;
}

/// Whether the packet belongs to a connection the ruleset in force has accepted (see the top of the file),
/// and takes the fast path rather than refresh its conntrack entry; if so its key for the flow counters.
static __always_inline int admitted(struct __sk_buff *skb, struct iphdr *ip, void *end, __u32 generation, struct flow_key *key) {
    if (generation == 0 || ip->ihl != 5 || (ip->frag_off & bpf_htons(0x3fff))) return 0;
    struct bpf_sock_tuple tuple = {};
    tuple.ipv4.saddr = ip->saddr;
    tuple.ipv4.daddr = ip->daddr;
    if (ip->protocol == IPPROTO_TCP) {
        struct tcphdr *tcp = (void *)(ip + 1);
        if ((void *)(tcp + 1) > end || tcp->syn || tcp->fin || tcp->rst) return 0;
        tuple.ipv4.sport = tcp->source;
        tuple.ipv4.dport = tcp->dest;
    } else if (ip->protocol == IPPROTO_UDP) {
        struct udphdr *udp = (void *)(ip + 1);
        if ((void *)(udp + 1) > end) return 0;
        tuple.ipv4.sport = udp->source;
        tuple.ipv4.dport = udp->dest;
    } else {
        return 0;
    }
    struct ct_options options = {.netns_id = -1, .l4proto = ip->protocol};
    struct nf_conn *ct = bpf_skb_ct_lookup(skb, &tuple, sizeof(tuple.ipv4), &options, sizeof(options));
    if (!ct) return 0;
    unsigned long status = ct->status;
    int accepted = ct->mark == generation && (status & IPS_SEEN_REPLY) && (status & IPS_CONFIRMED)
        && !(status & (IPS_NAT_MASK | IPS_DYING));
    bpf_ct_release(ct);
    key->source = tuple.ipv4.saddr;
    key->destination = tuple.ipv4.daddr;
    key->source_port = tuple.ipv4.sport;
    key->destination_port = tuple.ipv4.dport;
    key->protocol = ip->protocol;
    return accepted && !due_through_router(key);
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
    if (!source) return TCX_NEXT;
    // A forged source is left to the port's guard, which drops it; what a tunnel received was judged by the
    // sender's host, as on the bridge path.
    if (!source->tunnel && (ip->saddr != source->ip || !same_mac(eth->h_source, source->mac))) return TCX_NEXT;

    // The destination: a local fast port, or (from a port, not a tunnel) an endpoint behind its subnet's tunnel.
    __u32 address = ip->daddr, segment, target;
    __u8 destination_mac[6];
    int local;
    struct fast_port *destination = bpf_map_lookup_elem(&ports_by_address, &address);
    if (destination) {
        local = 1;
        segment = destination->segment;
        target = destination->ifindex;
        __builtin_memcpy(destination_mac, destination->mac, 6);
    } else {
        struct remote_endpoint *remote = source->tunnel ? 0 : bpf_map_lookup_elem(&remotes_by_address, &address);
        if (!remote) return TCX_NEXT;
        segment = remote->segment;
        __u32 *tunnel = bpf_map_lookup_elem(&tunnels_by_segment, &segment);
        if (!tunnel) return TCX_NEXT;
        local = 0;
        target = *tunnel;
        __builtin_memcpy(destination_mac, remote->mac, 6);
    }

    // Switched within the subnet (to the destination's MAC), or routed from a port (to its gateway).
    struct gateway *gateway = 0;
    if (segment == source->segment) {
        if (!same_mac(eth->h_dest, destination_mac)) return TCX_NEXT;
    } else {
        if (source->tunnel) return TCX_NEXT;
        __u32 own_segment = source->segment;
        struct gateway *own = bpf_map_lookup_elem(&gateways_by_segment, &own_segment);
        gateway = bpf_map_lookup_elem(&gateways_by_segment, &segment);
        if (!own || !gateway || !same_mac(eth->h_dest, own->mac) || ip->ttl <= 1) return TCX_NEXT;
    }

    __u32 zero = 0;
    struct admission *admission = bpf_map_lookup_elem(&admissions, &zero);
    if (!admission) return TCX_NEXT;
    struct flow_key key = {};
    int filtered = gateway || admission->filters_bridged;
    if (filtered && !admitted(skb, ip, end, admission->generation, &key)) return TCX_NEXT;

    __u64 bytes = skb->len;
    if (filtered) count(&delivered_by_flow, &key, bpf_ntohs(ip->tot_len));
    if (gateway) {
        // As the router would: its own MAC on the destination's subnet, the destination's MAC, one hop less.
        struct gateway next = *gateway;
        __u16 before = *(__u16 *)&ip->ttl, after;
        __u8 ttl = ip->ttl - 1;
        bpf_skb_store_bytes(skb, ETH_HLEN + offsetof(struct iphdr, ttl), &ttl, 1, 0);
        data = (void *)(long)skb->data;
        end = (void *)(long)skb->data_end;
        if (data + ETH_HLEN + sizeof(struct iphdr) > end) return TCX_NEXT;
        after = *(__u16 *)(data + ETH_HLEN + offsetof(struct iphdr, ttl));
        bpf_l3_csum_replace(skb, ETH_HLEN + offsetof(struct iphdr, check), before, after, 2);
        bpf_skb_store_bytes(skb, offsetof(struct ethhdr, h_dest), destination_mac, 6, 0);
        bpf_skb_store_bytes(skb, offsetof(struct ethhdr, h_source), next.mac, 6, 0);
    }
    // Sent on by the tunnel: its FDB entry for the destination's MAC names the destination's host.
    if (!local) return bpf_redirect(target, 0);
    count(&delivered_by_ifindex, &target, bytes);
    return bpf_redirect_peer(target, 0);
}

char LICENSE[] SEC("license") = "GPL";
