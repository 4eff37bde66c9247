// Experiment only (tests/bench/investigate-sshd-latency): LD_PRELOADed into sshd, sets TCP_NODELAY on every
// accepted socket, which OpenSSH does only for interactive (pty/X11) sessions. Shows that the ~40 ms stalls of
// `ssh -N -R` tunnels come from Nagle's algorithm meeting the peer's delayed ACK.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
static void nodelay(int fd) { int one = 1; if (fd >= 0) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); }
int accept(int s, struct sockaddr *a, socklen_t *l) {
    int (*real)(int, struct sockaddr *, socklen_t *) = dlsym(RTLD_NEXT, "accept");
    int fd = real(s, a, l); nodelay(fd); return fd;
}
int accept4(int s, struct sockaddr *a, socklen_t *l, int f) {
    int (*real)(int, struct sockaddr *, socklen_t *, int) = dlsym(RTLD_NEXT, "accept4");
    int fd = real(s, a, l, f); nodelay(fd); return fd;
}
