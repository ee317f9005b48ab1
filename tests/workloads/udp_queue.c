/* udp_queue: UDP servers that keep their unread datagrams across checkpoint/restore.
 *  r4:  bound to 127.0.0.1, 6 datagrams queued from two senders (s4a, s4b): sizes 0..60000
 *       bytes, an empty one among them.
 *  r6:  bound to [::1], 3 datagrams from s6.
 *  rany: bound to 0.0.0.0, 2 datagrams from s4a sent to 127.0.0.1.
 *  rdual: IPv6 bound to [::] (dual stack), one datagram from s6 and one from s4a (its source
 *       reads as ::ffff:127.0.0.1).
 *  rconn: connected to s4b, 2 datagrams from it.
 *  rnone: nothing queued (none may appear).
 * After SIGTERM each server reads its queue: the same datagrams in the same order, byte for
 * byte, each from the address and port of the socket that sent it, then nothing more; then
 * every server receives one new datagram (the sockets still work, at the same addresses). */
#include "wl.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

struct expect {
    int sender; /* index into senders[] */
    size_t len;
    uint8_t seed;
};

static int senders[3]; /* s4a, s4b, s6 */

static void fill(uint8_t *b, size_t n, uint8_t seed)
{
    for (size_t i = 0; i < n; i++)
        b[i] = (uint8_t)(seed * 13 + i * 7 + (i >> 9));
}

static int sock(int family, const char *addr, int v6only)
{
    int s = socket(family, SOCK_DGRAM, 0);
    WL_CHECK(s >= 0, "socket");
    if (family == AF_INET6) {
        WL_CHECK(setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only) == 0, "IPV6_V6ONLY");
        struct sockaddr_in6 a = { .sin6_family = AF_INET6 };
        WL_CHECK(inet_pton(AF_INET6, addr, &a.sin6_addr) == 1, "address %s", addr);
        WL_CHECK(bind(s, (struct sockaddr *)&a, sizeof a) == 0, "bind %s", addr);
    } else {
        struct sockaddr_in a = { .sin_family = AF_INET };
        WL_CHECK(inet_pton(AF_INET, addr, &a.sin_addr) == 1, "address %s", addr);
        WL_CHECK(bind(s, (struct sockaddr *)&a, sizeof a) == 0, "bind %s", addr);
    }
    /* Room for the 60000-byte datagram and the others. */
    int rcv = 1 << 20;
    WL_CHECK(setsockopt(s, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv) == 0, "SO_RCVBUF");
    return s;
}

/* Where `to` can be reached: its bound address, with loopback for a wildcard. */
static socklen_t dest(int to, int family, struct sockaddr_storage *out)
{
    socklen_t l = sizeof *out;
    WL_CHECK(getsockname(to, (struct sockaddr *)out, &l) == 0, "getsockname");
    if (out->ss_family == AF_INET6 && family == AF_INET) {
        /* A dual-stack server reached over IPv4. */
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)out;
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = s6->sin6_port,
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        memcpy(out, &a, sizeof a);
        return sizeof a;
    }
    if (out->ss_family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)out;
        if (a->sin_addr.s_addr == htonl(INADDR_ANY))
            a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    } else {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)out;
        if (IN6_IS_ADDR_UNSPECIFIED(&a->sin6_addr))
            a->sin6_addr = in6addr_loopback;
    }
    return l;
}

static uint8_t big[65536];

#ifndef SO_MEMINFO
#define SO_MEMINFO 55
#endif

/* The receive queue's memory (SK_MEMINFO_RMEM_ALLOC), which every queued datagram raises. Used
 * to wait for loopback delivery without peeking (a peek marks an empty datagram as seen, and
 * the dump's walk of the queue would then skip it). */
static uint32_t rmem(int fd)
{
    uint32_t info[9];
    socklen_t l = sizeof info;
    WL_CHECK(getsockopt(fd, SOL_SOCKET, SO_MEMINFO, info, &l) == 0, "SO_MEMINFO");
    return info[0];
}

static void send_one(int from, int to, size_t len, uint8_t seed)
{
    uint32_t before = rmem(to);
    struct sockaddr_storage d;
    int family;
    socklen_t fl = sizeof family;
    WL_CHECK(getsockopt(from, SOL_SOCKET, SO_DOMAIN, &family, &fl) == 0, "SO_DOMAIN");
    socklen_t dl = dest(to, family, &d);
    fill(big, len, seed);
    ssize_t n = sendto(from, big, len, 0, (struct sockaddr *)&d, dl);
    WL_CHECK(n == (ssize_t)len, "sendto (%zu bytes)", len);
    for (int tries = 0; rmem(to) == before; tries++) {
        if (tries > 500)
            wl_fail("a datagram of %zu bytes was not queued within 5 s", len);
        wl_sleep_ms(10);
    }
}

/* Whether `got` (from recvfrom) is the address of socket `s`, possibly v4-mapped. */
static int same_source(const struct sockaddr_storage *got, int s)
{
    struct sockaddr_storage want;
    socklen_t l = sizeof want;
    WL_CHECK(getsockname(s, (struct sockaddr *)&want, &l) == 0, "getsockname");
    if (want.ss_family == AF_INET) {
        const struct sockaddr_in *w = (const struct sockaddr_in *)&want;
        if (got->ss_family == AF_INET) {
            const struct sockaddr_in *g = (const struct sockaddr_in *)got;
            return g->sin_port == w->sin_port && g->sin_addr.s_addr == w->sin_addr.s_addr;
        }
        const struct sockaddr_in6 *g = (const struct sockaddr_in6 *)got;
        return g->sin6_port == w->sin_port && IN6_IS_ADDR_V4MAPPED(&g->sin6_addr) &&
               memcmp(&g->sin6_addr.s6_addr[12], &w->sin_addr, 4) == 0;
    }
    const struct sockaddr_in6 *w = (const struct sockaddr_in6 *)&want, *g = (const struct sockaddr_in6 *)got;
    return got->ss_family == AF_INET6 && g->sin6_port == w->sin6_port &&
           memcmp(&g->sin6_addr, &w->sin6_addr, 16) == 0;
}

static void check_queue(int r, const char *name, const struct expect *e, size_t n)
{
    static uint8_t want[65536];
    for (size_t k = 0; k < n; k++) {
        struct sockaddr_storage from;
        socklen_t fl = sizeof from;
        ssize_t got = recvfrom(r, big, sizeof big, MSG_DONTWAIT | MSG_TRUNC, (struct sockaddr *)&from, &fl);
        if (got < 0)
            wl_fail("%s: datagram %zu of %zu is missing (%s)", name, k, n, strerror(errno));
        if ((size_t)got != e[k].len)
            wl_fail("%s: datagram %zu has %zd bytes, expected %zu", name, k, got, e[k].len);
        fill(want, e[k].len, e[k].seed);
        if (memcmp(big, want, e[k].len) != 0)
            wl_fail("%s: datagram %zu (%zu bytes) differs", name, k, e[k].len);
        if (!same_source(&from, senders[e[k].sender]))
            wl_fail("%s: datagram %zu is not from sender %d's address", name, k, e[k].sender);
    }
    ssize_t more = recv(r, big, sizeof big, MSG_DONTWAIT);
    if (more >= 0)
        wl_fail("%s: an extra datagram of %zd bytes after the %zu expected", name, more, n);
}

static void queue(int r, const struct expect *e, size_t n)
{
    for (size_t k = 0; k < n; k++)
        send_one(senders[e[k].sender], r, e[k].len, e[k].seed);
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    senders[0] = sock(AF_INET, "127.0.0.1", 0);
    senders[1] = sock(AF_INET, "127.0.0.1", 0);
    senders[2] = sock(AF_INET6, "::1", 1);
    int r4 = sock(AF_INET, "127.0.0.1", 0), r6 = sock(AF_INET6, "::1", 1), rany = sock(AF_INET, "0.0.0.0", 0),
        rdual = sock(AF_INET6, "::", 0), rconn = sock(AF_INET, "127.0.0.1", 0),
        rnone = sock(AF_INET, "127.0.0.1", 0);
    struct sockaddr_storage b;
    socklen_t bl = sizeof b;
    WL_CHECK(getsockname(senders[1], (struct sockaddr *)&b, &bl) == 0, "getsockname");
    WL_CHECK(connect(rconn, (struct sockaddr *)&b, bl) == 0, "connect rconn");
    static const struct expect e4[] = { { 0, 100, 1 }, { 1, 0, 2 }, { 0, 60000, 3 }, { 1, 1, 4 },
                                        { 0, 1472, 5 }, { 1, 9000, 6 } };
    static const struct expect e6[] = { { 2, 500, 7 }, { 2, 0, 8 }, { 2, 30000, 9 } };
    static const struct expect eany[] = { { 0, 40, 10 }, { 0, 41, 11 } };
    static const struct expect edual[] = { { 2, 12, 12 }, { 0, 13, 13 } };
    static const struct expect econn[] = { { 1, 77, 14 }, { 1, 78, 15 } };
#define N(x) (sizeof(x) / sizeof(x)[0])
    queue(r4, e4, N(e4));
    queue(r6, e6, N(e6));
    queue(rany, eany, N(eany));
    queue(rdual, edual, N(edual));
    queue(rconn, econn, N(econn));
    wl_ready();
    wl_wait_term();
    check_queue(r4, "r4", e4, N(e4));
    check_queue(r6, "r6", e6, N(e6));
    check_queue(rany, "rany", eany, N(eany));
    check_queue(rdual, "rdual", edual, N(edual));
    check_queue(rconn, "rconn", econn, N(econn));
    check_queue(rnone, "rnone", NULL, 0);
    /* The servers still receive, at the same addresses. */
    static const struct expect n4[] = { { 0, 64, 20 } }, n6[] = { { 2, 64, 21 } }, nc[] = { { 1, 64, 22 } };
    int all[] = { r4, rany, rnone };
    for (size_t k = 0; k < N(all); k++) {
        queue(all[k], n4, 1);
        check_queue(all[k], "after", n4, 1);
    }
    queue(r6, n6, 1);
    check_queue(r6, "r6 after", n6, 1);
    queue(rdual, n4, 1);
    check_queue(rdual, "rdual after", n4, 1);
    queue(rconn, nc, 1);
    check_queue(rconn, "rconn after", nc, 1);
    wl_pass();
}
