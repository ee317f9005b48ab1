/* sockopts: socket state beyond addresses and integer options, which must come back exactly
 * after a restore and be left exactly as it was by a --leave-running dump.
 *  l:   TCP listener on 127.0.0.1 with SO_LINGER (on, 7 s), SO_SNDBUF 96 KiB and SO_RCVBUF
 *       80 KiB set (locked), SO_REUSEPORT; l2: a second listener in the same SO_REUSEPORT group
 *       (same port).
 *  c/a: a TCP connection to the group, accepted as a; c has SO_LINGER (on, 0 s: close resets)
 *       and SO_RCVBUF 64 KiB set; a sets nothing (it inherits the locks of the listener that
 *       accepted it: l's, or none from l2, whose buffers autotune); data unread both ways.
 *  u:   UDP on 127.0.0.1 with a classic BPF filter that accepts datagrams whose first byte is
 *       'A' and drops the others, SO_LOCK_FILTER, SO_RCVBUF 50000 set; u2: UDP with the same
 *       filter, not locked, and SO_REUSEPORT in a group with u3 (same port).
 * After SIGTERM: every option above reads back as set (SO_LINGER, SO_SNDBUF/SO_RCVBUF of the
 * sockets that set them, SO_BUF_LOCK of every socket, SO_GET_FILTER returns the same program,
 * SO_LOCK_FILTER), the lock holds (SO_DETACH_FILTER on u fails with EPERM, on u2 works), the
 * filter filters ('B' datagrams are dropped, 'A' ones arrive), both reuseport groups share
 * their port, new connections to l's port are accepted by l or l2, and c/a carry their queued
 * bytes and more. */
#include "wl.h"
#include <arpa/inet.h>
#include <linux/filter.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

#ifndef SO_BUF_LOCK
#define SO_BUF_LOCK 72
#endif

static struct sock_filter prog[] = {
    BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 8), /* first payload byte (data starts at the UDP header) */
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 'A', 0, 1),
    BPF_STMT(BPF_RET | BPF_K, 0xffff),
    BPF_STMT(BPF_RET | BPF_K, 0),
};

static int geti(int fd, int level, int opt, const char *what)
{
    int v = -1;
    socklen_t l = sizeof v;
    WL_CHECK(getsockopt(fd, level, opt, &v, &l) == 0, "getsockopt %s", what);
    return v;
}

static void seti(int fd, int level, int opt, int v, const char *what)
{
    WL_CHECK(setsockopt(fd, level, opt, &v, sizeof v) == 0, "setsockopt %s", what);
}

static void set_linger(int fd, int on, int secs)
{
    struct linger l = { .l_onoff = on, .l_linger = secs };
    WL_CHECK(setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l) == 0, "SO_LINGER");
}

static void expect_linger(int fd, int on, int secs, const char *name)
{
    struct linger l;
    socklen_t len = sizeof l;
    WL_CHECK(getsockopt(fd, SOL_SOCKET, SO_LINGER, &l, &len) == 0, "SO_LINGER of %s", name);
    if ((l.l_onoff != 0) != (on != 0) || (on && l.l_linger != secs))
        wl_fail("%s: SO_LINGER is (%d, %d), expected (%d, %d)", name, l.l_onoff, l.l_linger, on, secs);
}

struct bufs {
    int snd, rcv, lock;
};

static struct bufs bufs_of(int fd)
{
    struct bufs b = { geti(fd, SOL_SOCKET, SO_SNDBUF, "SO_SNDBUF"), geti(fd, SOL_SOCKET, SO_RCVBUF, "SO_RCVBUF"),
                      geti(fd, SOL_SOCKET, SO_BUF_LOCK, "SO_BUF_LOCK") };
    return b;
}

/* Sizes the process set must read back the same; sizes it did not set may have autotuned. */
static void expect_bufs(int fd, struct bufs was, const char *name)
{
    struct bufs now = bufs_of(fd);
    if (now.lock != was.lock)
        wl_fail("%s: SO_BUF_LOCK is %d, was %d", name, now.lock, was.lock);
    if ((was.lock & 1) && now.snd != was.snd)
        wl_fail("%s: SO_SNDBUF is %d, was %d (set by the process)", name, now.snd, was.snd);
    if ((was.lock & 2) && now.rcv != was.rcv)
        wl_fail("%s: SO_RCVBUF is %d, was %d (set by the process)", name, now.rcv, was.rcv);
}

static void expect_filter(int fd, const char *name)
{
    struct sock_filter got[16];
    socklen_t len = 16; /* in instructions */
    WL_CHECK(getsockopt(fd, SOL_SOCKET, SO_GET_FILTER, got, &len) == 0, "SO_GET_FILTER of %s", name);
    if (len != sizeof prog / sizeof prog[0])
        wl_fail("%s: filter of %u instructions, expected %zu", name, (unsigned)len, sizeof prog / sizeof prog[0]);
    if (memcmp(got, prog, sizeof prog) != 0)
        wl_fail("%s: the filter program differs", name);
}

static struct sockaddr_in bound_addr(int fd)
{
    struct sockaddr_in a;
    socklen_t l = sizeof a;
    WL_CHECK(getsockname(fd, (struct sockaddr *)&a, &l) == 0, "getsockname");
    return a;
}

static int udp(const struct sockaddr_in *at, int reuseport)
{
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    WL_CHECK(s >= 0, "udp socket");
    if (reuseport)
        seti(s, SOL_SOCKET, SO_REUSEPORT, 1, "SO_REUSEPORT");
    WL_CHECK(bind(s, (const struct sockaddr *)at, sizeof *at) == 0, "bind udp");
    return s;
}

static int tcp_listener(const struct sockaddr_in *at)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    WL_CHECK(s >= 0, "tcp socket");
    seti(s, SOL_SOCKET, SO_REUSEPORT, 1, "SO_REUSEPORT");
    WL_CHECK(bind(s, (const struct sockaddr *)at, sizeof *at) == 0, "bind listener");
    WL_CHECK(listen(s, 16) == 0, "listen");
    return s;
}

/* Whether a datagram arrives on `fd` within `ms`; reads it. */
static int arrives(int fd, const char *want, int ms)
{
    struct pollfd p = { .fd = fd, .events = POLLIN };
    int r;
    do
        r = poll(&p, 1, ms);
    while (r < 0 && errno == EINTR);
    if (r <= 0)
        return 0;
    char buf[64];
    ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    WL_CHECK(n >= 0, "recv");
    if ((size_t)n != strlen(want) || memcmp(buf, want, (size_t)n) != 0)
        wl_fail("received %.*s, expected %s", (int)n, buf, want);
    return 1;
}

static void send_to(int from, int to_fd, const char *msg)
{
    struct sockaddr_in a = bound_addr(to_fd);
    WL_CHECK(sendto(from, msg, strlen(msg), 0, (struct sockaddr *)&a, sizeof a) == (ssize_t)strlen(msg), "sendto");
}

static void expect_bytes(int fd, size_t n, uint8_t seed, const char *what)
{
    uint8_t buf[4096];
    size_t done = 0;
    while (done < n) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        int r = poll(&p, 1, 10000);
        if (r < 0 && errno == EINTR)
            continue;
        if (r == 0)
            wl_fail("%s: timeout after %zu of %zu bytes", what, done, n);
        ssize_t k = recv(fd, buf, sizeof buf < n - done ? sizeof buf : n - done, MSG_DONTWAIT);
        if (k < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        WL_CHECK(k > 0, "%s: recv after %zu bytes", what, done);
        for (ssize_t i = 0; i < k; i++)
            if (buf[i] != (uint8_t)(seed + done + (size_t)i))
                wl_fail("%s: byte %zu is 0x%02x", what, done + (size_t)i, buf[i]);
        done += (size_t)k;
    }
}

static void send_bytes(int fd, size_t n, uint8_t seed)
{
    uint8_t buf[4096];
    for (size_t done = 0; done < n;) {
        size_t k = n - done < sizeof buf ? n - done : sizeof buf;
        for (size_t i = 0; i < k; i++)
            buf[i] = (uint8_t)(seed + done + i);
        ssize_t w = send(fd, buf, k, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        WL_CHECK(w > 0, "send");
        done += (size_t)w;
    }
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    struct sockaddr_in lo = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    struct sock_fprog fprog = { .len = sizeof prog / sizeof prog[0], .filter = prog };

    int l = tcp_listener(&lo);
    struct sockaddr_in la = bound_addr(l);
    int l2 = tcp_listener(&la);
    set_linger(l, 1, 7);
    seti(l, SOL_SOCKET, SO_SNDBUF, 96 << 10, "SO_SNDBUF");
    seti(l, SOL_SOCKET, SO_RCVBUF, 80 << 10, "SO_RCVBUF");

    int c = socket(AF_INET, SOCK_STREAM, 0);
    WL_CHECK(c >= 0, "socket");
    set_linger(c, 1, 0);
    seti(c, SOL_SOCKET, SO_RCVBUF, 64 << 10, "SO_RCVBUF");
    WL_CHECK(connect(c, (struct sockaddr *)&la, sizeof la) == 0, "connect");
    /* l or l2 got it (reuseport group). */
    struct pollfd lp[2] = { { .fd = l, .events = POLLIN }, { .fd = l2, .events = POLLIN } };
    WL_CHECK(poll(lp, 2, 5000) > 0, "poll the listeners");
    int a = accept(lp[0].revents ? l : l2, NULL, NULL);
    WL_CHECK(a >= 0, "accept");
    send_bytes(c, 3000, 1);
    send_bytes(a, 5000, 2);

    int u = udp(&lo, 0);
    WL_CHECK(setsockopt(u, SOL_SOCKET, SO_ATTACH_FILTER, &fprog, sizeof fprog) == 0, "SO_ATTACH_FILTER");
    seti(u, SOL_SOCKET, SO_LOCK_FILTER, 1, "SO_LOCK_FILTER");
    seti(u, SOL_SOCKET, SO_RCVBUF, 50000, "SO_RCVBUF");
    int u2 = udp(&lo, 1);
    struct sockaddr_in u2a = bound_addr(u2);
    int u3 = udp(&u2a, 1);
    WL_CHECK(setsockopt(u2, SOL_SOCKET, SO_ATTACH_FILTER, &fprog, sizeof fprog) == 0, "SO_ATTACH_FILTER u2");
    int tx = socket(AF_INET, SOCK_DGRAM, 0);
    WL_CHECK(tx >= 0, "udp socket");

    struct linger la_linger;
    socklen_t lal = sizeof la_linger;
    WL_CHECK(getsockopt(a, SOL_SOCKET, SO_LINGER, &la_linger, &lal) == 0, "SO_LINGER of a");
    struct bufs bl = bufs_of(l), bl2 = bufs_of(l2), bc = bufs_of(c), ba = bufs_of(a), bu = bufs_of(u),
                bu2 = bufs_of(u2);
    /* (a inherits the locks of whichever listener accepted it.) */
    if (bl.lock != 3 || bc.lock != 2 || bu.lock != 2 || bu2.lock != 0)
        wl_fail("SO_BUF_LOCK before the dump: l %d c %d u %d u2 %d", bl.lock, bc.lock, bu.lock, bu2.lock);
    wl_ready();
    wl_wait_term();

    expect_linger(l, 1, 7, "l");
    expect_linger(c, 1, 0, "c");
    expect_linger(a, la_linger.l_onoff, la_linger.l_linger, "a"); /* inherited from its listener */
    expect_linger(u, 0, 0, "u");
    expect_bufs(l, bl, "l");
    expect_bufs(l2, bl2, "l2");
    expect_bufs(c, bc, "c");
    expect_bufs(a, ba, "a");
    expect_bufs(u, bu, "u");
    expect_bufs(u2, bu2, "u2");
    expect_filter(u, "u");
    expect_filter(u2, "u2");
    if (geti(u, SOL_SOCKET, SO_LOCK_FILTER, "SO_LOCK_FILTER") != 1)
        wl_fail("u: SO_LOCK_FILTER is off");
    if (geti(u2, SOL_SOCKET, SO_LOCK_FILTER, "SO_LOCK_FILTER") != 0)
        wl_fail("u2: SO_LOCK_FILTER is on");
    for (int k = 0; k < 3; k++) {
        int fd = k == 0 ? l : k == 1 ? l2 : u3;
        if (geti(fd, SOL_SOCKET, SO_REUSEPORT, "SO_REUSEPORT") != 1)
            wl_fail("socket %d of the reuseport groups lost SO_REUSEPORT", k);
    }
    if (bound_addr(l2).sin_port != la.sin_port)
        wl_fail("l2 is on port %u, l on %u", ntohs(bound_addr(l2).sin_port), ntohs(la.sin_port));
    if (bound_addr(u3).sin_port != u2a.sin_port)
        wl_fail("u3 is on port %u, u2 on %u", ntohs(bound_addr(u3).sin_port), ntohs(u2a.sin_port));

    /* The filters filter. */
    send_to(tx, u, "B-dropped");
    send_to(tx, u, "A-kept");
    if (!arrives(u, "A-kept", 5000))
        wl_fail("u: the 'A' datagram did not arrive");
    if (arrives(u, "B-dropped", 300))
        wl_fail("u: a 'B' datagram got through the filter");
    int zero = 0;
    if (setsockopt(u, SOL_SOCKET, SO_DETACH_FILTER, &zero, sizeof zero) == 0 || errno != EPERM)
        wl_fail("u: SO_DETACH_FILTER on a locked filter did not fail with EPERM (errno %d)", errno);
    WL_CHECK(setsockopt(u2, SOL_SOCKET, SO_DETACH_FILTER, &zero, sizeof zero) == 0, "SO_DETACH_FILTER u2");

    /* New connections to the group's port. */
    for (int k = 0; k < 4; k++) {
        int n = socket(AF_INET, SOCK_STREAM, 0);
        WL_CHECK(n >= 0 && connect(n, (struct sockaddr *)&la, sizeof la) == 0, "connect to the group (%d)", k);
        lp[0].revents = lp[1].revents = 0;
        WL_CHECK(poll(lp, 2, 5000) > 0, "poll the listeners (%d)", k);
        int s = accept(lp[0].revents ? l : l2, NULL, NULL);
        WL_CHECK(s >= 0, "accept from the group (%d)", k);
        close(s);
        close(n);
    }

    /* The connection carries its queued bytes, then more. */
    expect_bytes(a, 3000, 1, "c -> a (queued)");
    expect_bytes(c, 5000, 2, "a -> c (queued)");
    send_bytes(c, 100000, 3);
    expect_bytes(a, 100000, 3, "c -> a (after)");
    send_bytes(a, 100000, 4);
    expect_bytes(c, 100000, 4, "a -> c (after)");
    wl_pass();
}
