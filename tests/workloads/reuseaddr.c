/* reuseaddr: TCP sockets whose options the dump must leave (with --leave-running) or restore
 * exactly. The dump puts established connections into TCP repair mode, which the kernel uses to
 * overwrite SO_REUSEADDR; afterwards every socket must read back what the process set.
 *
 *   l1: listener with SO_REUSEADDR=1; c1: client with SO_REUSEADDR=1 and SO_KEEPALIVE, connected
 *       to l1; a1: accepted from l1 (inherits SO_REUSEADDR=1)
 *   l2: listener without SO_REUSEADDR; c2: client without; a2: accepted from l2 (0)
 *
 * After SIGTERM: SO_REUSEADDR, SO_KEEPALIVE, TCP_NODELAY of every socket as set, TCP_REPAIR 0,
 * and both connections carry data both ways. */
#include "wl.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

struct sock {
    const char *name;
    int fd;
    int reuse, keepalive, nodelay;
};

static int getint(int fd, int level, int opt, const char *what)
{
    int v = -1;
    socklen_t len = sizeof v;
    WL_CHECK(getsockopt(fd, level, opt, &v, &len) == 0, "getsockopt %s", what);
    return v;
}

static void setint(int fd, int level, int opt, int v, const char *what)
{
    WL_CHECK(setsockopt(fd, level, opt, &v, sizeof v) == 0, "setsockopt %s", what);
}

static int listener(int reuse, struct sockaddr_in *a)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    WL_CHECK(fd >= 0, "socket");
    if (reuse)
        setint(fd, SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR listener");
    *a = (struct sockaddr_in){ .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof *a;
    WL_CHECK(bind(fd, (struct sockaddr *)a, sizeof *a) == 0 && listen(fd, 4) == 0, "bind + listen");
    WL_CHECK(getsockname(fd, (struct sockaddr *)a, &len) == 0, "getsockname");
    return fd;
}

static void exchange(int x, int y, const char *what)
{
    char buf[16];
    WL_CHECK(write(x, "ping", 4) == 4, "%s: write", what);
    ssize_t n;
    while ((n = read(y, buf, sizeof buf)) < 0 && errno == EINTR)
        ;
    if (n != 4 || memcmp(buf, "ping", 4) != 0)
        wl_fail("%s: read %zd bytes (errno %d)", what, n, errno);
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    struct sockaddr_in a1, a2;
    int l1 = listener(1, &a1), l2 = listener(0, &a2);
    int c1 = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int c2 = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    WL_CHECK(c1 >= 0 && c2 >= 0, "client sockets");
    setint(c1, SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR c1");
    setint(c1, SOL_SOCKET, SO_KEEPALIVE, 1, "SO_KEEPALIVE c1");
    setint(c2, IPPROTO_TCP, TCP_NODELAY, 1, "TCP_NODELAY c2");
    WL_CHECK(connect(c1, (struct sockaddr *)&a1, sizeof a1) == 0, "connect c1");
    WL_CHECK(connect(c2, (struct sockaddr *)&a2, sizeof a2) == 0, "connect c2");
    int s1 = accept(l1, NULL, NULL), s2 = accept(l2, NULL, NULL);
    WL_CHECK(s1 >= 0 && s2 >= 0, "accept");
    struct sock socks[] = {
        { "l1", l1, 1, 0, 0 }, { "c1", c1, 1, 1, 0 }, { "a1", s1, 1, 0, 0 },
        { "l2", l2, 0, 0, 0 }, { "c2", c2, 0, 0, 1 }, { "a2", s2, 0, 0, 0 },
    };
    size_t n = sizeof socks / sizeof socks[0];
    for (size_t i = 0; i < n; i++) {
        struct sock *s = &socks[i];
        int r = getint(s->fd, SOL_SOCKET, SO_REUSEADDR, "SO_REUSEADDR") != 0;
        if (r != s->reuse)
            wl_fail("setup: %s SO_REUSEADDR is %d, expected %d", s->name, r, s->reuse);
    }
    wl_ready();
    wl_wait_term();

    for (size_t i = 0; i < n; i++) {
        struct sock *s = &socks[i];
        int r = getint(s->fd, SOL_SOCKET, SO_REUSEADDR, "SO_REUSEADDR") != 0;
        int k = getint(s->fd, SOL_SOCKET, SO_KEEPALIVE, "SO_KEEPALIVE") != 0;
        int d = getint(s->fd, IPPROTO_TCP, TCP_NODELAY, "TCP_NODELAY") != 0;
        int rep = getint(s->fd, IPPROTO_TCP, TCP_REPAIR, "TCP_REPAIR");
        if (r != s->reuse)
            wl_fail("%s (fd %d): SO_REUSEADDR is %d, expected %d", s->name, s->fd, r, s->reuse);
        if (k != s->keepalive)
            wl_fail("%s (fd %d): SO_KEEPALIVE is %d, expected %d", s->name, s->fd, k, s->keepalive);
        if (d != s->nodelay)
            wl_fail("%s (fd %d): TCP_NODELAY is %d, expected %d", s->name, s->fd, d, s->nodelay);
        if (rep != 0)
            wl_fail("%s (fd %d): still in TCP repair mode (%d)", s->name, s->fd, rep);
    }
    exchange(c1, s1, "c1 -> a1");
    exchange(s1, c1, "a1 -> c1");
    exchange(c2, s2, "c2 -> a2");
    exchange(s2, c2, "a2 -> c2");
    wl_pass();
}
