#define _GNU_SOURCE
#include <sched.h>
#include <sys/mount.h>
#include <errno.h>
#include <poll.h>
#include <time.h>
#include "CTrellisLinux.h"

int trellis_setns_net(int fd) { return setns(fd, CLONE_NEWNET); }
int trellis_unshare_net(void) { return unshare(CLONE_NEWNET); }
int trellis_bind_mount(const char *source, const char *target) { return mount(source, target, "none", MS_BIND, NULL); }
int trellis_detach_mount(const char *target) { return umount2(target, MNT_DETACH); }
int trellis_make_shared_mount(const char *target) { return mount("", target, "none", MS_SHARED | MS_REC, NULL); }
int trellis_rbind_mount_on_itself(const char *target) { return mount(target, target, "none", MS_BIND | MS_REC, NULL); }

int trellis_poll_nanoseconds(struct pollfd *fds, unsigned long count, long long nanoseconds) {
    struct timespec timeout = { .tv_sec = nanoseconds / 1000000000, .tv_nsec = nanoseconds % 1000000000 };
    return ppoll(fds, count, &timeout, NULL);
}

#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <linux/if.h>
#include <linux/if_tun.h>

int trellis_open_tap(const char *name, int persist) {
    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    if (fd < 0) return -1;
    struct ifreq request;
    memset(&request, 0, sizeof request);
    request.ifr_flags = IFF_TAP | IFF_NO_PI;
    strncpy(request.ifr_name, name, IFNAMSIZ - 1);
    if (ioctl(fd, TUNSETIFF, &request) < 0 || (persist && ioctl(fd, TUNSETPERSIST, 1) < 0)) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}
