#ifndef C_NFTABLES_SHIM_H
#define C_NFTABLES_SHIM_H
// Debian's libnftables (package libnftables-dev): nftables commands run in-process, as `nft` runs them.
#include <nftables/libnftables.h>
#endif
