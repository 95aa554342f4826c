#ifndef C_BPF_SHIM_H
#define C_BPF_SHIM_H
// Debian's libbpf (package libbpf-dev): loads BPF objects, and reads and writes their maps.
#include <bpf/libbpf.h>
#include <bpf/bpf.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

/// Attaches a tc program to a device's ingress with a tcx link (Linux 6.6; BPF_TCX_INGRESS is 46, newer than
/// Debian 12's headers): the program runs before the classic tc filters and stays attached while the
/// returned link's descriptor is open. The device's index is looked up in the calling thread's namespace.
static inline int trellis_tcx_attach_ingress(int program, int ifindex) {
    union bpf_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.link_create.prog_fd = program;
    attr.link_create.target_ifindex = ifindex;
    attr.link_create.attach_type = 46;
    return (int)syscall(__NR_bpf, BPF_LINK_CREATE, &attr, sizeof(attr));
}
#endif
