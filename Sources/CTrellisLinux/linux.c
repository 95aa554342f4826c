#define _GNU_SOURCE
#include <sched.h>
#include <sys/mount.h>
#include "CTrellisLinux.h"

int trellis_setns_net(int fd) { return setns(fd, CLONE_NEWNET); }
int trellis_unshare_net(void) { return unshare(CLONE_NEWNET); }
int trellis_bind_mount(const char *source, const char *target) { return mount(source, target, "none", MS_BIND, NULL); }
int trellis_detach_mount(const char *target) { return umount2(target, MNT_DETACH); }
