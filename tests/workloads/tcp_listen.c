/* tcp_listen: listening TCP sockets, an established loopback connection with both ends in the
 * process, and UDP sockets across checkpoint/restore.
 *  l4: 127.0.0.1:<ephemeral>, SO_REUSEADDR, backlog 7, TCP_NODELAY+SO_KEEPALIVE set on it.
 *  l6: [::1]:<ephemeral>, IPV6_V6ONLY, O_NONBLOCK.
 *  c -> l4, accepted as s: 3000 bytes c->s and 5000 bytes s->c unread at the dump (TCP_REPAIR
 *  on both ends), TCP_NODELAY on c; on c also SO_MARK 0x5ea, SO_KEEPALIVE with TCP_KEEPIDLE 77,
 *  TCP_KEEPINTVL 11, TCP_KEEPCNT 5 (on l4 SO_MARK 0x1234).
 *  u1: UDP bound to 127.0.0.1:<ephemeral>; u2: UDP connected to u1.
 * After restore: same addresses and options; the queued bytes arrive in order, then more data
 * both ways; new clients connect to l4 and l6 and exchange data; u2 -> u1 datagram arrives from
 * u2's address. (Connections still in the accept queue at the dump are not restored.) */
#include "wl.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

static void fill(uint8_t *b, size_t n, uint8_t seed)
{
    for (size_t i = 0; i < n; i++)
        b[i] = (uint8_t)(seed + i * 7 + (i >> 8));
}

static void send_all(int fd, const uint8_t *b, size_t n, const char *what)
{
    size_t done = 0;
    while (done < n) {
        ssize_t r = send(fd, b + done, n - done, MSG_NOSIGNAL);
        if (r < 0 && errno == EINTR)
            continue;
        WL_CHECK(r > 0, "send %s", what);
        done += (size_t)r;
    }
}

static void expect(int fd, size_t n, uint8_t seed, const char *what)
{
    uint8_t *want = malloc(n), *got = malloc(n);
    fill(want, n, seed);
    size_t done = 0;
    while (done < n) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        int pr = poll(&p, 1, 5000);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr == 0)
            wl_fail("%s: timeout after %zu of %zu bytes", what, done, n);
        ssize_t r = recv(fd, got + done, n - done, MSG_DONTWAIT);
        if (r < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (r == 0)
            wl_fail("%s: EOF after %zu of %zu bytes", what, done, n);
        WL_CHECK(r > 0, "%s: recv after %zu bytes", what, done);
        done += (size_t)r;
    }
    for (size_t i = 0; i < n; i++)
        if (got[i] != want[i])
            wl_fail("%s: byte %zu is 0x%02x, expected 0x%02x", what, i, got[i], want[i]);
    free(want);
    free(got);
}

static int getopt_int(int fd, int level, int name)
{
    int v = -1;
    socklen_t l = sizeof v;
    WL_CHECK(getsockopt(fd, level, name, &v, &l) == 0, "getsockopt %d/%d", level, name);
    return v;
}

static void exchange(int lfd, const struct sockaddr *a, socklen_t alen, int family, const char *what)
{
    int c = socket(family, SOCK_STREAM, 0);
    WL_CHECK(c >= 0, "%s: socket", what);
    WL_CHECK(connect(c, a, alen) == 0, "%s: connect to the restored listener", what);
    struct pollfd p = { .fd = lfd, .events = POLLIN };
    while (poll(&p, 1, 5000) < 0 && errno == EINTR)
        ;
    int s = accept(lfd, NULL, NULL);
    WL_CHECK(s >= 0, "%s: accept", what);
    uint8_t b[1000];
    fill(b, sizeof b, 0x33);
    send_all(c, b, sizeof b, what);
    expect(s, sizeof b, 0x33, what);
    send_all(s, b, sizeof b, what);
    expect(c, sizeof b, 0x33, what);
    close(c);
    close(s);
}

static const struct {
    int level, name, value;
    const char *what;
} c_opts[] = {
    { SOL_SOCKET, SO_MARK, 0x5ea, "SO_MARK" },
    { SOL_SOCKET, SO_KEEPALIVE, 1, "SO_KEEPALIVE" },
    { IPPROTO_TCP, TCP_KEEPIDLE, 77, "TCP_KEEPIDLE" },
    { IPPROTO_TCP, TCP_KEEPINTVL, 11, "TCP_KEEPINTVL" },
    { IPPROTO_TCP, TCP_KEEPCNT, 5, "TCP_KEEPCNT" },
};

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    int one = 1;
    int l4 = socket(AF_INET, SOCK_STREAM, 0);
    WL_CHECK(l4 >= 0, "socket l4");
    WL_CHECK(setsockopt(l4, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0, "SO_REUSEADDR");
    WL_CHECK(setsockopt(l4, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one) == 0, "SO_KEEPALIVE");
    WL_CHECK(setsockopt(l4, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) == 0, "TCP_NODELAY");
    struct sockaddr_in a4 = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    WL_CHECK(bind(l4, (struct sockaddr *)&a4, sizeof a4) == 0, "bind l4");
    WL_CHECK(listen(l4, 7) == 0, "listen l4");
    socklen_t len = sizeof a4;
    WL_CHECK(getsockname(l4, (struct sockaddr *)&a4, &len) == 0, "getsockname l4");

    int l6 = socket(AF_INET6, SOCK_STREAM | SOCK_NONBLOCK, 0);
    WL_CHECK(l6 >= 0, "socket l6");
    WL_CHECK(setsockopt(l6, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) == 0, "IPV6_V6ONLY");
    struct sockaddr_in6 a6 = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
    WL_CHECK(bind(l6, (struct sockaddr *)&a6, sizeof a6) == 0, "bind l6");
    WL_CHECK(listen(l6, 16) == 0, "listen l6");
    len = sizeof a6;
    WL_CHECK(getsockname(l6, (struct sockaddr *)&a6, &len) == 0, "getsockname l6");

    int c = socket(AF_INET, SOCK_STREAM, 0);
    WL_CHECK(c >= 0, "socket c");
    WL_CHECK(setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) == 0, "TCP_NODELAY c");
    for (size_t i = 0; i < sizeof c_opts / sizeof c_opts[0]; i++)
        WL_CHECK(setsockopt(c, c_opts[i].level, c_opts[i].name, &c_opts[i].value, sizeof(int)) == 0, "set %s on c",
                 c_opts[i].what);
    int mark4 = 0x1234;
    WL_CHECK(setsockopt(l4, SOL_SOCKET, SO_MARK, &mark4, sizeof mark4) == 0, "SO_MARK l4");
    WL_CHECK(connect(c, (struct sockaddr *)&a4, sizeof a4) == 0, "connect c");
    int s = accept(l4, NULL, NULL);
    WL_CHECK(s >= 0, "accept s");
    struct sockaddr_in cname, sname, cpeer;
    len = sizeof cname;
    WL_CHECK(getsockname(c, (struct sockaddr *)&cname, &len) == 0, "getsockname c");
    uint8_t big[8000];
    fill(big, 3000, 0x11);
    send_all(c, big, 3000, "c->s");
    fill(big, 5000, 0x22);
    send_all(s, big, 5000, "s->c");

    int u1 = socket(AF_INET, SOCK_DGRAM, 0), u2 = socket(AF_INET, SOCK_DGRAM, 0);
    WL_CHECK(u1 >= 0 && u2 >= 0, "udp sockets");
    struct sockaddr_in au = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    WL_CHECK(bind(u1, (struct sockaddr *)&au, sizeof au) == 0, "bind u1");
    len = sizeof au;
    WL_CHECK(getsockname(u1, (struct sockaddr *)&au, &len) == 0, "getsockname u1");
    WL_CHECK(connect(u2, (struct sockaddr *)&au, sizeof au) == 0, "connect u2");
    struct sockaddr_in au2;
    len = sizeof au2;
    WL_CHECK(getsockname(u2, (struct sockaddr *)&au2, &len) == 0, "getsockname u2");
    /* Let both queues settle (acknowledged) before READY. */
    wl_sleep_ms(100);

    wl_ready();
    wl_wait_term();

    struct sockaddr_in chk4;
    struct sockaddr_in6 chk6;
    len = sizeof chk4;
    WL_CHECK(getsockname(l4, (struct sockaddr *)&chk4, &len) == 0, "getsockname l4 after");
    if (chk4.sin_port != a4.sin_port || chk4.sin_addr.s_addr != a4.sin_addr.s_addr)
        wl_fail("l4 bound to port %d, expected %d", ntohs(chk4.sin_port), ntohs(a4.sin_port));
    len = sizeof chk6;
    WL_CHECK(getsockname(l6, (struct sockaddr *)&chk6, &len) == 0, "getsockname l6 after");
    if (chk6.sin6_port != a6.sin6_port || memcmp(&chk6.sin6_addr, &in6addr_loopback, 16))
        wl_fail("l6 bound to port %d, expected [::1]:%d", ntohs(chk6.sin6_port), ntohs(a6.sin6_port));
    if (getopt_int(l4, SOL_SOCKET, SO_ACCEPTCONN) != 1 || getopt_int(l6, SOL_SOCKET, SO_ACCEPTCONN) != 1)
        wl_fail("a listener is not listening");
    if (!getopt_int(l4, SOL_SOCKET, SO_REUSEADDR) || !getopt_int(l4, SOL_SOCKET, SO_KEEPALIVE) ||
        !getopt_int(l4, IPPROTO_TCP, TCP_NODELAY))
        wl_fail("l4 lost SO_REUSEADDR/SO_KEEPALIVE/TCP_NODELAY");
    if (!getopt_int(l6, IPPROTO_IPV6, IPV6_V6ONLY))
        wl_fail("l6 lost IPV6_V6ONLY");
    if (!(fcntl(l6, F_GETFL) & O_NONBLOCK) || (fcntl(l4, F_GETFL) & O_NONBLOCK))
        wl_fail("listener O_NONBLOCK flags changed");
    if (!getopt_int(c, IPPROTO_TCP, TCP_NODELAY))
        wl_fail("c lost TCP_NODELAY");
    for (size_t i = 0; i < sizeof c_opts / sizeof c_opts[0]; i++)
        if (getopt_int(c, c_opts[i].level, c_opts[i].name) != c_opts[i].value)
            wl_fail("c: %s is %d, expected %d", c_opts[i].what, getopt_int(c, c_opts[i].level, c_opts[i].name),
                    c_opts[i].value);
    if (getopt_int(l4, SOL_SOCKET, SO_MARK) != 0x1234)
        wl_fail("l4: SO_MARK is %#x, expected 0x1234", getopt_int(l4, SOL_SOCKET, SO_MARK));
    len = sizeof sname;
    WL_CHECK(getsockname(c, (struct sockaddr *)&sname, &len) == 0, "getsockname c after");
    len = sizeof cpeer;
    WL_CHECK(getpeername(c, (struct sockaddr *)&cpeer, &len) == 0, "getpeername c after");
    if (sname.sin_port != cname.sin_port || cpeer.sin_port != a4.sin_port)
        wl_fail("connection c is %d->%d, expected %d->%d", ntohs(sname.sin_port), ntohs(cpeer.sin_port),
                ntohs(cname.sin_port), ntohs(a4.sin_port));

    /* The established pair: queued bytes first, then new data both ways. */
    expect(s, 3000, 0x11, "c->s bytes queued at the dump");
    expect(c, 5000, 0x22, "s->c bytes queued at the dump");
    fill(big, 8000, 0x44);
    send_all(c, big, 8000, "c->s after");
    expect(s, 8000, 0x44, "c->s after restore");
    send_all(s, big, 8000, "s->c after");
    expect(c, 8000, 0x44, "s->c after restore");

    exchange(l4, (struct sockaddr *)&a4, sizeof a4, AF_INET, "new IPv4 client");
    exchange(l6, (struct sockaddr *)&a6, sizeof a6, AF_INET6, "new IPv6 client");

    WL_CHECK(send(u2, "ping", 4, 0) == 4, "udp send");
    char ub[16];
    struct sockaddr_in from;
    len = sizeof from;
    struct pollfd p = { .fd = u1, .events = POLLIN };
    while (poll(&p, 1, 5000) < 0 && errno == EINTR)
        ;
    ssize_t n = recvfrom(u1, ub, sizeof ub, MSG_DONTWAIT, (struct sockaddr *)&from, &len);
    WL_CHECK(n == 4 && !memcmp(ub, "ping", 4), "udp datagram u2 -> u1");
    if (from.sin_port != au2.sin_port)
        wl_fail("datagram came from port %d, expected u2's %d", ntohs(from.sin_port), ntohs(au2.sin_port));
    close(c);
    {
        char x;
        ssize_t r;
        while ((r = recv(s, &x, 1, 0)) < 0 && errno == EINTR)
            ;
        if (r != 0)
            wl_fail("s did not see EOF after c closed (%zd)", r);
    }
    wl_pass();
}
