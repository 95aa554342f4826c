#ifndef C_BPF_SHIM_H
#define C_BPF_SHIM_H
// Debian's libbpf (package libbpf-dev): loads BPF objects, and reads and writes their maps.
#include <bpf/libbpf.h>
#include <bpf/bpf.h>
#endif
