/* tcp_closer: a service holding TCP connections to peers outside the tree (the test, in the
 * same network namespace) in the close states, each with bytes queued. `tcp_closer OUT PORT`
 * listens on 127.0.0.1:PORT and accepts 5 connections; each peer first sends one byte, its
 * index. Once OUT.go exists (the test has started holding this side's segments to peers 2-4,
 * so those FINs go out and stay unacknowledged):
 *   0 CLOSE_WAIT  the peer sent 3000 bytes and its FIN; nothing read.
 *   1 FIN_WAIT2   2000 bytes written and shut down; the peer acknowledged all, read nothing.
 *   2 FIN_WAIT1   2000 bytes written and shut down; bytes and FIN went out, unacknowledged.
 *   3 LAST_ACK    the peer sent 1000 bytes and its FIN; 1500 bytes written and shut down,
 *                 unacknowledged.
 *   4 CLOSING     shut down first (OUT.shut4 tells the test), then the peer's FIN arrived.
 * After SIGTERM (the test has let the held segments go and done its part: read everything,
 * sent 500 bytes and its FIN on 1 and 2): 0 reads 3000 bytes then EOF and answers 1000 bytes;
 * 1 and 2 read 500 bytes then EOF; 3 reads 1000 bytes then EOF; 4 reads EOF; no socket has an
 * error (a reset would show as ECONNRESET); every connection reaches its end (CLOSE) in 10 s. */
#include "wl.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#define N 5

static uint8_t pat(uint8_t seed, size_t i) { return (uint8_t)(seed + i * 13 + (i >> 8)); }

static int tcp_state(int fd)
{
    struct tcp_info ti;
    socklen_t len = sizeof ti;
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0)
        return -1;
    return ti.tcpi_state;
}

static void await_state(int fd, int want, int i)
{
    for (int n = 0; n < 1000 && tcp_state(fd) != want; n++)
        wl_sleep_ms(10);
    int got = tcp_state(fd);
    if (got != want)
        wl_fail("connection %d: TCP state %d, expected %d", i, got, want);
}

static void no_error(int fd, int i)
{
    int err = -1;
    socklen_t len = sizeof err;
    WL_CHECK(getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0, "connection %d: SO_ERROR", i);
    if (err != 0)
        wl_fail("connection %d: SO_ERROR %d (%s)", i, err, strerror(err));
}

static void send_pat(int fd, size_t n, uint8_t seed, int i)
{
    uint8_t buf[4096];
    size_t done = 0;
    while (done < n) {
        size_t chunk = n - done < sizeof buf ? n - done : sizeof buf;
        for (size_t k = 0; k < chunk; k++)
            buf[k] = pat(seed, done + k);
        ssize_t w = send(fd, buf, chunk, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        WL_CHECK(w > 0, "connection %d: send", i);
        done += (size_t)w;
    }
}

static void expect_pat_eof(int fd, size_t n, uint8_t seed, int i)
{
    uint8_t buf[4096];
    size_t done = 0;
    for (;;) {
        struct pollfd p = { fd, POLLIN, 0 };
        int r = poll(&p, 1, 10000);
        if (r < 0 && errno == EINTR)
            continue;
        WL_CHECK(r == 1, "connection %d: nothing to read within 10 s after %zu of %zu bytes", i, done, n);
        ssize_t got = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (got < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        WL_CHECK(got >= 0, "connection %d: recv after %zu bytes", i, done);
        if (got == 0)
            break;
        for (ssize_t k = 0; k < got; k++)
            if (done + (size_t)k >= n || buf[k] != pat(seed, done + (size_t)k))
                wl_fail("connection %d: byte %zu is 0x%02x, expected %s0x%02x", i, done + (size_t)k, buf[k],
                        done + (size_t)k >= n ? "EOF, not " : "", pat(seed, done + (size_t)k));
        done += (size_t)got;
    }
    if (done != n)
        wl_fail("connection %d: EOF after %zu bytes, expected %zu", i, done, n);
}

static int exists(const char *suffix)
{
    char path[4096];
    wl_path(path, sizeof path, suffix);
    return access(path, F_OK) == 0;
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    WL_CHECK(argc >= 3, "usage: tcp_closer OUT PORT");
    int l = socket(AF_INET, SOCK_STREAM, 0);
    WL_CHECK(l >= 0, "listener socket");
    int one = 1;
    WL_CHECK(setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0, "SO_REUSEADDR");
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2])) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    WL_CHECK(bind(l, (struct sockaddr *)&a, sizeof a) == 0, "bind port %s", argv[2]);
    WL_CHECK(listen(l, N) == 0, "listen");
    int c[N];
    for (int k = 0; k < N; k++) {
        int fd = accept(l, NULL, NULL);
        WL_CHECK(fd >= 0, "accept %d", k);
        uint8_t idx;
        WL_CHECK(recv(fd, &idx, 1, MSG_WAITALL) == 1 && idx < N, "index byte of accepted connection %d", k);
        c[idx] = fd;
    }
    close(l);
    while (!exists(".go"))
        wl_sleep_ms(10);
    await_state(c[0], TCP_CLOSE_WAIT, 0);
    send_pat(c[1], 2000, 0x11, 1);
    WL_CHECK(shutdown(c[1], SHUT_WR) == 0, "shutdown 1");
    await_state(c[1], TCP_FIN_WAIT2, 1);
    send_pat(c[2], 2000, 0x22, 2);
    WL_CHECK(shutdown(c[2], SHUT_WR) == 0, "shutdown 2");
    await_state(c[3], TCP_CLOSE_WAIT, 3);
    send_pat(c[3], 1500, 0x33, 3);
    WL_CHECK(shutdown(c[3], SHUT_WR) == 0, "shutdown 3");
    WL_CHECK(shutdown(c[4], SHUT_WR) == 0, "shutdown 4");
    char path[4096];
    wl_path(path, sizeof path, ".shut4");
    WL_CHECK(wl_write_file(path, "shut\n") == 0, "writing %s", path);
    await_state(c[4], TCP_CLOSING, 4);
    await_state(c[2], TCP_FIN_WAIT1, 2);
    await_state(c[3], TCP_LAST_ACK, 3);
    for (int k = 2; k <= 3; k++) {
        int unsent = -1;
        WL_CHECK(ioctl(c[k], SIOCOUTQNSD, &unsent) == 0 && unsent == 0, "connection %d: %d bytes not sent", k,
                 unsent);
    }
    wl_ready();
    wl_wait_term();

    for (int k = 0; k < N; k++)
        no_error(c[k], k);
    expect_pat_eof(c[0], 3000, 0x00, 0);
    send_pat(c[0], 1000, 0x44, 0);
    WL_CHECK(shutdown(c[0], SHUT_WR) == 0, "shutdown 0 after restore");
    expect_pat_eof(c[1], 500, 0x55, 1);
    expect_pat_eof(c[2], 500, 0x66, 2);
    expect_pat_eof(c[3], 1000, 0x77, 3);
    expect_pat_eof(c[4], 0, 0, 4);
    for (int k = 0; k < N; k++) {
        await_state(c[k], TCP_CLOSE, k);
        no_error(c[k], k);
    }
    wl_pass();
}
