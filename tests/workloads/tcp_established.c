/* tcp_established: an established TCP connection to a peer OUTSIDE the dumped tree (an echo
 * server run by the test runner: `tcp_established OUTFILE PORT`), restored with TCP_REPAIR,
 * without reconnecting.
 * Protocol with the server: it echoes the first 65536 bytes, then stops reading and writing
 * until a separate control connection sends "RESUME\n", then echoes everything up to EOF.
 * Before READY: 65536 bytes sent, 45536 of their echo read (20000 left in the receive queue),
 * then as much more as the kernel takes without blocking (the server is paused: the bytes sit
 * in the server's receive queue and in our send queue, partly unsent).
 * After SIGTERM: RESUME, then send up to 1 MiB more while reading the echo; every byte of the
 * stream must come back in order (byte i = pattern(i)), with the same local port, then EOF
 * after shutdown. */
#include "wl.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <linux/sockios.h>

#define PAUSE_AT 65536
#define LEFT_QUEUED 20000

static uint8_t pat(uint64_t i) { return (uint8_t)(i * 31 + (i >> 11) + 7); }

static uint64_t sent, rcvd;
static uint8_t buf[1 << 16];

static void send_upto(int fd, uint64_t limit, int flags)
{
    while (sent < limit) {
        size_t n = limit - sent < sizeof buf ? limit - sent : sizeof buf;
        for (size_t i = 0; i < n; i++)
            buf[i] = pat(sent + i);
        ssize_t r = send(fd, buf, n, flags | MSG_NOSIGNAL);
        if (r < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        WL_CHECK(r > 0, "send at stream offset %llu", (unsigned long long)sent);
        sent += (uint64_t)r;
        if (flags & MSG_DONTWAIT)
            continue;
    }
}

static void recv_upto(int fd, uint64_t limit, int flags)
{
    while (rcvd < limit) {
        size_t n = limit - rcvd < sizeof buf ? limit - rcvd : sizeof buf;
        ssize_t r = recv(fd, buf, n, flags);
        if (r < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        if (r == 0)
            wl_fail("EOF from the echo server at stream offset %llu (connection lost or reset)",
                    (unsigned long long)rcvd);
        WL_CHECK(r > 0, "recv at stream offset %llu", (unsigned long long)rcvd);
        for (ssize_t i = 0; i < r; i++)
            if (buf[i] != pat(rcvd + (uint64_t)i))
                wl_fail("echo byte %llu is 0x%02x, expected 0x%02x (sequence broken)",
                        (unsigned long long)(rcvd + (uint64_t)i), buf[i], pat(rcvd + (uint64_t)i));
        rcvd += (uint64_t)r;
    }
}

static int ioctl_int(int fd, unsigned long req)
{
    int v = -1;
    WL_CHECK(ioctl(fd, req, &v) == 0, "ioctl %lx", req);
    return v;
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    if (argc < 3)
        wl_fail("usage: tcp_established OUTFILE PORT");
    struct sockaddr_in srv = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2])),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    WL_CHECK(fd >= 0, "socket");
    int one = 1;
    WL_CHECK(setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) == 0, "TCP_NODELAY");
    WL_CHECK(connect(fd, (struct sockaddr *)&srv, sizeof srv) == 0, "connect to the echo server");
    struct sockaddr_in me, me_after, peer_after;
    socklen_t len = sizeof me;
    WL_CHECK(getsockname(fd, (struct sockaddr *)&me, &len) == 0, "getsockname");

    send_upto(fd, PAUSE_AT, 0);
    recv_upto(fd, PAUSE_AT - LEFT_QUEUED, 0);
    while (ioctl_int(fd, SIOCINQ) < LEFT_QUEUED)
        wl_sleep_ms(5);
    /* Fill the pipe while the server is paused. */
    for (int stable = 0, last = -1; stable < 10;) {
        send_upto(fd, PAUSE_AT + (4u << 20), MSG_DONTWAIT);
        wl_sleep_ms(30);
        int q = ioctl_int(fd, SIOCOUTQ);
        stable = q == last ? stable + 1 : 0;
        last = q;
    }
    uint64_t before = sent;
    int outq = ioctl_int(fd, SIOCOUTQ), unsent = ioctl_int(fd, SIOCOUTQNSD);
    fprintf(stderr, "before the dump: sent %llu, echoed+read %llu, receive queue %d, send queue %d (%d unsent)\n",
            (unsigned long long)sent, (unsigned long long)rcvd, ioctl_int(fd, SIOCINQ), outq, unsent);

    wl_ready();
    wl_wait_term();

    len = sizeof me_after;
    WL_CHECK(getsockname(fd, (struct sockaddr *)&me_after, &len) == 0, "getsockname after");
    len = sizeof peer_after;
    WL_CHECK(getpeername(fd, (struct sockaddr *)&peer_after, &len) == 0, "getpeername after (not connected)");
    if (me_after.sin_port != me.sin_port || peer_after.sin_port != srv.sin_port)
        wl_fail("connection is now %d->%d, expected %d->%d", ntohs(me_after.sin_port), ntohs(peer_after.sin_port),
                ntohs(me.sin_port), ntohs(srv.sin_port));
    int avail = ioctl_int(fd, SIOCINQ);
    if (avail != LEFT_QUEUED)
        wl_fail("receive queue holds %d bytes after restore, expected %d", avail, LEFT_QUEUED);
    int q = ioctl_int(fd, SIOCOUTQ);
    if ((uint64_t)q > before - PAUSE_AT || q < outq - 65536)
        wl_fail("send queue holds %d bytes after restore, %d before", q, outq);

    /* Resume the server through a control connection. */
    int ctl = socket(AF_INET, SOCK_STREAM, 0);
    WL_CHECK(ctl >= 0 && connect(ctl, (struct sockaddr *)&srv, sizeof srv) == 0, "control connection");
    WL_CHECK(send(ctl, "RESUME\n", 7, MSG_NOSIGNAL) == 7, "send RESUME");
    close(ctl);

    uint64_t total = before + (1u << 20);
    WL_CHECK(fcntl(fd, F_SETFL, O_NONBLOCK) == 0, "O_NONBLOCK");
    int idle = 0;
    while (rcvd < total) {
        struct pollfd p = { .fd = fd, .events = POLLIN | (sent < total ? POLLOUT : 0) };
        int r = poll(&p, 1, 1000);
        if (r < 0 && errno == EINTR)
            continue;
        WL_CHECK(r >= 0, "poll");
        if (r == 0 && ++idle > 20)
            wl_fail("no progress for 20 s: sent %llu, echoed %llu of %llu", (unsigned long long)sent,
                    (unsigned long long)rcvd, (unsigned long long)total);
        if (p.revents & (POLLERR | POLLHUP))
            wl_fail("connection error/hangup (revents 0x%x) at echoed %llu", p.revents, (unsigned long long)rcvd);
        if (p.revents & POLLOUT)
            send_upto(fd, total, MSG_DONTWAIT);
        if (p.revents & POLLIN)
            recv_upto(fd, total, MSG_DONTWAIT);
    }
    WL_CHECK(fcntl(fd, F_SETFL, 0) == 0, "blocking again");
    WL_CHECK(shutdown(fd, SHUT_WR) == 0, "shutdown");
    char x;
    ssize_t r;
    while ((r = recv(fd, &x, 1, 0)) < 0 && errno == EINTR)
        ;
    if (r != 0)
        wl_fail("expected EOF from the server after %llu bytes, got %zd", (unsigned long long)total, r);
    fprintf(stderr, "after restore: %llu bytes echoed in order\n", (unsigned long long)rcvd);
    wl_pass();
}
