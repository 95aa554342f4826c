#ifndef C_TRELLIS_LINUX_H
#define C_TRELLIS_LINUX_H

#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>
#include <linux/if_packet.h>

/// Enters the network namespace `fd` on the calling thread (setns with CLONE_NEWNET).
int trellis_setns_net(int fd);
/// Moves the calling thread into a new network namespace (unshare with CLONE_NEWNET).
int trellis_unshare_net(void);
/// Bind-mounts `source` on `target` (how a named network namespace is kept alive).
int trellis_bind_mount(const char *source, const char *target);
/// Lazily unmounts `target`.
int trellis_detach_mount(const char *target);
/// Makes the mount at `target` (and those below it) shared: fails with EINVAL when `target` is no mount point.
int trellis_make_shared_mount(const char *target);
/// Bind-mounts `target` (with the mounts below it) on itself, so that it becomes a mount point.
int trellis_rbind_mount_on_itself(const char *target);

/// Creates (or attaches to) the tap device `name` on the calling thread's namespace: returns its fd,
/// or -1 with errno set. With `persist`, the device outlives the fd.
int trellis_open_tap(const char *name, int persist);

struct pollfd;
/// Polls `fds` for at most `nanoseconds` (ppoll): unlike poll's whole milliseconds, a wait shorter than
/// one is not rounded to zero.
int trellis_poll_nanoseconds(struct pollfd *fds, unsigned long count, long long nanoseconds);
#endif
