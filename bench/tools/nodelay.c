/*
 * Experiment only: sets TCP_NODELAY on every socket a process accepts.
 *
 * Used to show what the missing TCP_NODELAY on minitowerd's accepted
 * sockets costs the SSE log stream (Nagle + delayed ACK hold the `end`
 * event up to ~40 ms). Build and run the latency scenario with it:
 *
 *   gcc -shared -fPIC -O2 -o /tmp/nodelay.so bench/tools/nodelay.c -ldl
 *   mkdir -p /tmp/nodelay-bin
 *   printf '#!/bin/sh\nLD_PRELOAD=/tmp/nodelay.so exec %s "$@"\n' \
 *     "$PWD/target/release/minitowerd" > /tmp/nodelay-bin/minitowerd
 *   chmod +x /tmp/nodelay-bin/minitowerd
 *   ln -sf "$PWD/target/release/minitower-runner" /tmp/nodelay-bin/
 *   target/release/minitower-bench latency --bin-dir /tmp/nodelay-bin
 *
 * The real fix belongs in the server (set_nodelay on accepted streams).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

static int nodelay(int fd) {
    if (fd >= 0) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    return fd;
}

int accept4(int s, struct sockaddr *a, socklen_t *l, int f) {
    static int (*real)(int, struct sockaddr *, socklen_t *, int);
    if (!real) real = dlsym(RTLD_NEXT, "accept4");
    return nodelay(real(s, a, l, f));
}

int accept(int s, struct sockaddr *a, socklen_t *l) {
    static int (*real)(int, struct sockaddr *, socklen_t *);
    if (!real) real = dlsym(RTLD_NEXT, "accept");
    return nodelay(real(s, a, l));
}
