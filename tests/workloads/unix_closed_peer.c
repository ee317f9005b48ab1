/* unix_closed_peer: unix sockets whose peer end was closed with data still queued for them.
 *  ps: SOCK_STREAM socketpair, ps[1] wrote 5000 bytes and was closed.
 *  pe: SOCK_STREAM socketpair, pe[1] closed with nothing queued.
 *  pq: SOCK_SEQPACKET socketpair, pq[1] sent 3 packets and was closed.
 *  pd: SOCK_DGRAM socketpair, pd[1] sent 2 messages and was closed.
 *  c:  client of the listener l (bound to OUTFILE.l, kept), whose accepted end wrote 3000
 *      bytes and was closed.
 *  s2: accepted end of l whose client wrote 2000 bytes and was closed.
 *  c3: client of a listener on an abstract name whose accepted end wrote 100 bytes, then the
 *      accepted end and the listener were closed.
 * After restore: the bytes and packets with their boundaries, then end of file (stream and
 * seqpacket) or nothing more (dgram); POLLHUP; sending fails (EPIPE, ECONNREFUSED); the peer
 * and local names; l still accepts. */
#include "wl.h"
#include <poll.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>

static void fill(uint8_t *b, size_t n, uint8_t seed)
{
    for (size_t i = 0; i < n; i++)
        b[i] = (uint8_t)(seed + i * 11 + (i >> 7));
}

static void send_n(int fd, size_t n, uint8_t seed, const char *what)
{
    uint8_t *b = malloc(n + 1);
    fill(b, n, seed);
    size_t done = 0;
    while (done < n) {
        ssize_t r = send(fd, b + done, n - done, MSG_NOSIGNAL);
        if (r < 0 && errno == EINTR)
            continue;
        WL_CHECK(r > 0, "send %s", what);
        done += (size_t)r;
    }
    free(b);
}

/* Reads n stream bytes, then end of file. */
static void expect_stream_eof(int fd, size_t n, uint8_t seed, const char *what)
{
    uint8_t *want = malloc(n + 1), *got = malloc(n + 16);
    fill(want, n, seed);
    size_t done = 0;
    for (;;) {
        ssize_t r = recv(fd, got + done, n + 16 - done, MSG_DONTWAIT);
        if (r < 0 && errno == EINTR)
            continue;
        WL_CHECK(r >= 0, "%s: recv after %zu bytes", what, done);
        if (r == 0)
            break;
        done += (size_t)r;
        if (done > n)
            wl_fail("%s: more than %zu bytes", what, n);
    }
    if (done != n)
        wl_fail("%s: end of file after %zu of %zu bytes", what, done, n);
    if (memcmp(got, want, n) != 0)
        wl_fail("%s: the bytes differ", what);
    free(want);
    free(got);
}

static void expect_packet(int fd, size_t n, uint8_t seed, const char *what)
{
    uint8_t *want = malloc(n + 1), *got = malloc(n + 64);
    fill(want, n, seed);
    ssize_t r = recv(fd, got, n + 64, MSG_DONTWAIT);
    WL_CHECK(r >= 0, "%s: recv", what);
    if ((size_t)r != n || memcmp(got, want, n) != 0)
        wl_fail("%s: a packet of %zd bytes, expected %zu (or other bytes)", what, r, n);
    free(want);
    free(got);
}

static void expect_hup(int fd, const char *what)
{
    struct pollfd p = { .fd = fd, .events = POLLIN | POLLRDHUP };
    WL_CHECK(poll(&p, 1, 0) == 1, "%s: poll", what);
    if (!(p.revents & POLLHUP) || !(p.revents & POLLRDHUP))
        wl_fail("%s: poll revents %#x, expected POLLHUP and POLLRDHUP", what, p.revents);
}

static void expect_send_fails(int fd, int err, const char *what)
{
    if (send(fd, "x", 1, MSG_NOSIGNAL | MSG_DONTWAIT) != -1 || errno != err)
        wl_fail("%s: send did not fail with %s (%s)", what, strerror(err), strerror(errno));
}

/* Checks getpeername (peer=1) or getsockname against an address (NULL: unnamed). */
static void expect_name(int fd, int peer, const struct sockaddr_un *a, socklen_t alen, const char *what)
{
    struct sockaddr_un got;
    socklen_t gl = sizeof got;
    memset(&got, 0, sizeof got);
    int r = peer ? getpeername(fd, (struct sockaddr *)&got, &gl) : getsockname(fd, (struct sockaddr *)&got, &gl);
    WL_CHECK(r == 0, "%s: %s", what, peer ? "getpeername" : "getsockname");
    socklen_t base = (socklen_t)offsetof(struct sockaddr_un, sun_path);
    if (a == NULL) {
        if (gl > base)
            wl_fail("%s: named %s, expected unnamed", what, got.sun_path[0] ? got.sun_path : got.sun_path + 1);
        return;
    }
    int same = a->sun_path[0] ? (gl > base && strcmp(got.sun_path, a->sun_path) == 0)
                              : (gl == alen && memcmp(got.sun_path, a->sun_path, alen - base) == 0);
    if (!same)
        wl_fail("%s: name %s%s, expected %s%s", what, got.sun_path[0] ? "" : "@",
                got.sun_path[0] ? got.sun_path : got.sun_path + 1, a->sun_path[0] ? "" : "@",
                a->sun_path[0] ? a->sun_path : a->sun_path + 1);
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    int ps[2], pe[2], pq[2], pd[2];
    WL_CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, ps) == 0, "socketpair ps");
    WL_CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, pe) == 0, "socketpair pe");
    WL_CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, pq) == 0, "socketpair pq");
    WL_CHECK(socketpair(AF_UNIX, SOCK_DGRAM, 0, pd) == 0, "socketpair pd");
    send_n(ps[1], 5000, 0x10, "ps");
    close(ps[1]);
    close(pe[1]);
    send_n(pq[1], 7, 0x20, "pq 1");
    send_n(pq[1], 4000, 0x21, "pq 2");
    send_n(pq[1], 9, 0x22, "pq 3");
    close(pq[1]);
    send_n(pd[1], 30, 0x30, "pd 1");
    send_n(pd[1], 40, 0x31, "pd 2");
    close(pd[1]);

    struct sockaddr_un la = { .sun_family = AF_UNIX };
    wl_path(la.sun_path, sizeof la.sun_path, ".l");
    socklen_t ll = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(la.sun_path) + 1);
    unlink(la.sun_path);
    int l = socket(AF_UNIX, SOCK_STREAM, 0);
    WL_CHECK(l >= 0 && bind(l, (struct sockaddr *)&la, ll) == 0 && listen(l, 4) == 0, "listener l");
    int c = socket(AF_UNIX, SOCK_STREAM, 0);
    WL_CHECK(c >= 0 && connect(c, (struct sockaddr *)&la, ll) == 0, "connect c");
    int s = accept(l, NULL, NULL);
    WL_CHECK(s >= 0, "accept s");
    send_n(s, 3000, 0x40, "s->c");
    close(s);
    int c2 = socket(AF_UNIX, SOCK_STREAM, 0);
    WL_CHECK(c2 >= 0 && connect(c2, (struct sockaddr *)&la, ll) == 0, "connect c2");
    int s2 = accept(l, NULL, NULL);
    WL_CHECK(s2 >= 0, "accept s2");
    send_n(c2, 2000, 0x50, "c2->s2");
    close(c2);

    struct sockaddr_un aa = { .sun_family = AF_UNIX };
    int n = snprintf(aa.sun_path + 1, sizeof aa.sun_path - 1, "seamless-closed-peer-%d", (int)getpid());
    socklen_t al = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
    int l3 = socket(AF_UNIX, SOCK_STREAM, 0);
    WL_CHECK(l3 >= 0 && bind(l3, (struct sockaddr *)&aa, al) == 0 && listen(l3, 1) == 0, "listener l3");
    int c3 = socket(AF_UNIX, SOCK_STREAM, 0);
    WL_CHECK(c3 >= 0 && connect(c3, (struct sockaddr *)&aa, al) == 0, "connect c3");
    int s3 = accept(l3, NULL, NULL);
    WL_CHECK(s3 >= 0, "accept s3");
    send_n(s3, 100, 0x60, "s3->c3");
    close(s3);
    close(l3);

    wl_ready();
    wl_wait_term();

    expect_hup(ps[0], "ps");
    expect_name(ps[0], 1, NULL, 0, "ps peer");
    expect_stream_eof(ps[0], 5000, 0x10, "ps");
    expect_send_fails(ps[0], EPIPE, "ps");
    expect_hup(pe[0], "pe");
    expect_stream_eof(pe[0], 0, 0, "pe");
    expect_send_fails(pe[0], EPIPE, "pe");

    expect_hup(pq[0], "pq");
    expect_packet(pq[0], 7, 0x20, "pq 1");
    expect_packet(pq[0], 4000, 0x21, "pq 2");
    expect_packet(pq[0], 9, 0x22, "pq 3");
    char x;
    if (recv(pq[0], &x, 1, MSG_DONTWAIT) != 0)
        wl_fail("pq: no end of file after the packets");
    expect_send_fails(pq[0], EPIPE, "pq");

    expect_packet(pd[0], 30, 0x30, "pd 1");
    expect_packet(pd[0], 40, 0x31, "pd 2");
    if (recv(pd[0], &x, 1, MSG_DONTWAIT) != -1 || errno != EAGAIN)
        wl_fail("pd: more than the two messages");
    expect_name(pd[0], 1, NULL, 0, "pd peer");
    expect_send_fails(pd[0], ECONNREFUSED, "pd");

    expect_hup(c, "c");
    expect_name(c, 1, &la, ll, "c peer");
    expect_name(c, 0, NULL, 0, "c local");
    expect_stream_eof(c, 3000, 0x40, "c");
    expect_send_fails(c, EPIPE, "c");

    expect_hup(s2, "s2");
    expect_name(s2, 0, &la, ll, "s2 local");
    expect_name(s2, 1, NULL, 0, "s2 peer");
    expect_stream_eof(s2, 2000, 0x50, "s2");
    expect_send_fails(s2, EPIPE, "s2");

    expect_hup(c3, "c3");
    expect_name(c3, 1, &aa, al, "c3 peer");
    expect_stream_eof(c3, 100, 0x60, "c3");
    expect_send_fails(c3, EPIPE, "c3");

    /* The listener still works, and has no leftover connection. */
    WL_CHECK(fcntl(l, F_SETFL, O_NONBLOCK) == 0, "l nonblocking");
    if (accept(l, NULL, NULL) != -1 || errno != EAGAIN)
        wl_fail("l has a connection waiting that nobody made");
    int c4 = socket(AF_UNIX, SOCK_STREAM, 0);
    WL_CHECK(c4 >= 0 && connect(c4, (struct sockaddr *)&la, ll) == 0, "connect c4 after restore");
    int s4 = accept(l, NULL, NULL);
    WL_CHECK(s4 >= 0, "accept s4");
    send_n(c4, 10, 0x70, "c4");
    shutdown(c4, SHUT_WR);
    expect_stream_eof(s4, 10, 0x70, "s4");
    unlink(la.sun_path);
    wl_pass();
}
