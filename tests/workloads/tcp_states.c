/* tcp_states: loopback TCP connections with both ends in the process, held in the close states
 * a service goes through, each with bytes queued:
 *   half   (IPv4 and IPv6): the client sent 3000 bytes and shut down writing, the server has
 *          read none of them and answered 2000 bytes the client has not read:
 *          client FIN_WAIT2, server CLOSE_WAIT (3000 bytes then the FIN queued).
 *   fw1    the client filled the server's window, shut down writing: its FIN waits behind the
 *          unsent bytes: client FIN_WAIT1, server ESTABLISHED with a full receive queue.
 *   lastack the client shut down writing, the server filled the client's window and shut down:
 *          server LAST_ACK (FIN behind unsent bytes), client FIN_WAIT2.
 *   closing the client filled the server's window and shut down, then the server shut down:
 *          client CLOSING (the server's FIN received, its own behind unsent bytes), server
 *          FIN_WAIT2 with a full receive queue.
 *   ended  both sides shut down and every FIN acknowledged: the client went through TIME_WAIT,
 *          the server through LAST_ACK; both sockets are in CLOSE with nothing left to read.
 * At SIGTERM every socket must be in its state still (TCP_INFO), SO_ERROR 0; then each reader
 * reads exactly the bytes written (pattern checked) followed by EOF, a CLOSE_WAIT server can
 * still write (1000 bytes the client reads), writing on a shut-down side fails with EPIPE (not
 * ECONNRESET), and the connections close to their final states without a reset; the ended
 * sockets stay in CLOSE and read EOF, write EPIPE, poll POLLRDHUP. */
#include "wl.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

struct conn {
    const char *name;
    int family;
    int client, server;
    size_t c2s, s2c; /* bytes written each way before the checkpoint */
};

static uint8_t pat(uint8_t seed, size_t i) { return (uint8_t)(seed + i * 7 + (i >> 9)); }

static int tcp_state(int fd)
{
    struct tcp_info ti;
    socklen_t len = sizeof ti;
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0)
        return -1;
    return ti.tcpi_state;
}

static const char *state_name(int s)
{
    static const char *n[] = { "?", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT",
                               "CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING" };
    return s >= 0 && s < 12 ? n[s] : "?";
}

static void expect_state(int fd, int want, const char *who)
{
    int got = tcp_state(fd);
    if (got != want)
        wl_fail("%s: TCP state %s (%d), expected %s", who, state_name(got), got, state_name(want));
    int err = -1;
    socklen_t len = sizeof err;
    WL_CHECK(getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0, "%s: SO_ERROR", who);
    if (err != 0)
        wl_fail("%s: SO_ERROR %d (%s)", who, err, strerror(err));
}

/* Waits (up to 10 s) until fd reaches state want. */
static void await_state(int fd, int want, const char *who)
{
    for (int i = 0; i < 1000 && tcp_state(fd) != want; i++)
        wl_sleep_ms(10);
    expect_state(fd, want, who);
}

/* Writes the pattern until the socket takes no more (non-blocking); returns the count. */
static size_t fill(int fd, uint8_t seed, size_t done, const char *who)
{
    uint8_t buf[4096];
    for (;;) {
        for (size_t i = 0; i < sizeof buf; i++)
            buf[i] = pat(seed, done + i);
        ssize_t w = send(fd, buf, sizeof buf, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == EAGAIN)
            return done;
        WL_CHECK(w > 0, "%s: send while filling", who);
        done += (size_t)w;
    }
}

/* Fills until the window stays closed (the receiver's buffer is full, ours too). */
static size_t fill_stuck(int fd, uint8_t seed, const char *who)
{
    size_t done = 0;
    for (int round = 0; round < 5; round++) {
        done = fill(fd, seed, done, who);
        wl_sleep_ms(100);
    }
    return done;
}

static void send_pat(int fd, size_t n, uint8_t seed, const char *who)
{
    uint8_t buf[4096];
    size_t done = 0;
    while (done < n) {
        size_t chunk = n - done < sizeof buf ? n - done : sizeof buf;
        for (size_t i = 0; i < chunk; i++)
            buf[i] = pat(seed, done + i);
        ssize_t w = send(fd, buf, chunk, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        WL_CHECK(w > 0, "%s: send", who);
        done += (size_t)w;
    }
}

/* Reads exactly n pattern bytes, then (eof) expects end-of-file. */
static void expect_pat(int fd, size_t n, uint8_t seed, int eof, const char *who)
{
    uint8_t buf[4096];
    size_t done = 0;
    while (done < n) {
        size_t want = n - done < sizeof buf ? n - done : sizeof buf;
        /* Never blocks for good: a stream that stalls is reported with where it stands. */
        struct pollfd p = { fd, POLLIN, 0 };
        int ready = poll(&p, 1, 10000);
        if (ready < 0 && errno == EINTR)
            continue;
        WL_CHECK(ready == 1, "%s: nothing to read within 10 s after %zu of %zu bytes (TCP state %s)", who, done, n,
                 state_name(tcp_state(fd)));
        ssize_t r = recv(fd, buf, want, MSG_DONTWAIT);
        if (r < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        WL_CHECK(r > 0, "%s: recv after %zu of %zu bytes (%s)", who, done, n, r == 0 ? "EOF too early" : "error");
        for (ssize_t i = 0; i < r; i++)
            if (buf[i] != pat(seed, done + (size_t)i))
                wl_fail("%s: byte %zu is 0x%02x, expected 0x%02x", who, done + (size_t)i, buf[i],
                        pat(seed, done + (size_t)i));
        done += (size_t)r;
    }
    if (eof) {
        struct pollfd p = { fd, POLLIN, 0 };
        WL_CHECK(poll(&p, 1, 10000) == 1, "%s: no EOF within 10 s after %zu bytes", who, n);
        ssize_t r = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        WL_CHECK(r == 0, "%s: expected EOF after %zu bytes, recv gave %zd", who, n, r);
    }
}

/* A write on a side that shut down writing fails with EPIPE (a reset would give ECONNRESET). */
static void expect_epipe(int fd, const char *who)
{
    ssize_t w = send(fd, "x", 1, MSG_NOSIGNAL | MSG_DONTWAIT);
    WL_CHECK(w < 0 && errno == EPIPE, "%s: send after shutdown gave %zd, expected EPIPE", who, w);
}

static void make_conn(struct conn *c, const char *name, int family)
{
    c->name = name;
    c->family = family;
    int l = socket(family, SOCK_STREAM, 0);
    WL_CHECK(l >= 0, "%s: listener socket", name);
    int small = 8192;
    /* Small buffers (inherited by the accepted socket) so the fills stay small. */
    WL_CHECK(setsockopt(l, SOL_SOCKET, SO_RCVBUF, &small, sizeof small) == 0, "%s: SO_RCVBUF", name);
    WL_CHECK(setsockopt(l, SOL_SOCKET, SO_SNDBUF, &small, sizeof small) == 0, "%s: SO_SNDBUF", name);
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t len;
    if (family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        len = sizeof *a;
    } else {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_addr = in6addr_loopback;
        len = sizeof *a;
    }
    WL_CHECK(bind(l, (struct sockaddr *)&ss, len) == 0, "%s: bind", name);
    WL_CHECK(listen(l, 1) == 0, "%s: listen", name);
    socklen_t blen = sizeof ss;
    WL_CHECK(getsockname(l, (struct sockaddr *)&ss, &blen) == 0, "%s: getsockname", name);
    c->client = socket(family, SOCK_STREAM, 0);
    WL_CHECK(c->client >= 0, "%s: client socket", name);
    WL_CHECK(setsockopt(c->client, SOL_SOCKET, SO_RCVBUF, &small, sizeof small) == 0, "%s: SO_RCVBUF", name);
    WL_CHECK(setsockopt(c->client, SOL_SOCKET, SO_SNDBUF, &small, sizeof small) == 0, "%s: SO_SNDBUF", name);
    WL_CHECK(connect(c->client, (struct sockaddr *)&ss, len) == 0, "%s: connect", name);
    c->server = accept(l, NULL, NULL);
    WL_CHECK(c->server >= 0, "%s: accept", name);
    close(l);
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    struct conn half4, half6, fw1, lastack, closing, ended;
    struct conn *halves[2] = { &half4, &half6 };

    make_conn(&half4, "half ipv4", AF_INET);
    make_conn(&half6, "half ipv6", AF_INET6);
    for (int i = 0; i < 2; i++) {
        struct conn *c = halves[i];
        c->c2s = 3000;
        c->s2c = 2000;
        send_pat(c->client, c->c2s, (uint8_t)(0x10 + i), c->name);
        WL_CHECK(shutdown(c->client, SHUT_WR) == 0, "%s: client shutdown", c->name);
        await_state(c->client, TCP_FIN_WAIT2, c->name);
        await_state(c->server, TCP_CLOSE_WAIT, c->name);
        send_pat(c->server, c->s2c, (uint8_t)(0x20 + i), c->name);
    }

    make_conn(&fw1, "fw1", AF_INET);
    fw1.c2s = fill_stuck(fw1.client, 0x30, "fw1 client");
    WL_CHECK(shutdown(fw1.client, SHUT_WR) == 0, "fw1: client shutdown");
    await_state(fw1.client, TCP_FIN_WAIT1, "fw1 client");

    make_conn(&lastack, "lastack", AF_INET);
    WL_CHECK(shutdown(lastack.client, SHUT_WR) == 0, "lastack: client shutdown");
    await_state(lastack.server, TCP_CLOSE_WAIT, "lastack server");
    lastack.s2c = fill_stuck(lastack.server, 0x40, "lastack server");
    WL_CHECK(shutdown(lastack.server, SHUT_WR) == 0, "lastack: server shutdown");
    await_state(lastack.server, TCP_LAST_ACK, "lastack server");

    make_conn(&closing, "closing", AF_INET);
    closing.c2s = fill_stuck(closing.client, 0x50, "closing client");
    WL_CHECK(shutdown(closing.client, SHUT_WR) == 0, "closing: client shutdown");
    WL_CHECK(shutdown(closing.server, SHUT_WR) == 0, "closing: server shutdown");
    await_state(closing.client, TCP_CLOSING, "closing client");
    await_state(closing.server, TCP_FIN_WAIT2, "closing server");

    make_conn(&ended, "ended", AF_INET);
    WL_CHECK(shutdown(ended.client, SHUT_WR) == 0, "ended: client shutdown");
    await_state(ended.server, TCP_CLOSE_WAIT, "ended server");
    expect_pat(ended.server, 0, 0, 1, "ended server before");
    WL_CHECK(shutdown(ended.server, SHUT_WR) == 0, "ended: server shutdown");
    await_state(ended.server, TCP_CLOSE, "ended server");
    await_state(ended.client, TCP_CLOSE, "ended client");

    wl_sleep_ms(100);
    wl_ready();
    wl_wait_term();

    /* Every socket still in its state, no error pending. */
    for (int i = 0; i < 2; i++) {
        expect_state(halves[i]->client, TCP_FIN_WAIT2, halves[i]->name);
        expect_state(halves[i]->server, TCP_CLOSE_WAIT, halves[i]->name);
    }
    expect_state(fw1.client, TCP_FIN_WAIT1, "fw1 client");
    expect_state(fw1.server, TCP_ESTABLISHED, "fw1 server");
    expect_state(lastack.server, TCP_LAST_ACK, "lastack server");
    expect_state(lastack.client, TCP_FIN_WAIT2, "lastack client");
    expect_state(closing.client, TCP_CLOSING, "closing client");
    expect_state(closing.server, TCP_FIN_WAIT2, "closing server");
    int ends[2] = { ended.client, ended.server };
    for (int i = 0; i < 2; i++) {
        const char *who = i ? "ended server" : "ended client";
        expect_state(ends[i], TCP_CLOSE, who);
        struct pollfd p = { ends[i], POLLIN | POLLRDHUP, 0 };
        WL_CHECK(poll(&p, 1, 0) == 1 && (p.revents & POLLRDHUP), "%s: poll gave %#x, expected POLLRDHUP", who,
                 p.revents);
        expect_pat(ends[i], 0, 0, 1, who);
        expect_epipe(ends[i], who);
    }

    /* The bytes, then EOF; the shut-down sides refuse writes with EPIPE. */
    for (int i = 0; i < 2; i++) {
        struct conn *c = halves[i];
        expect_pat(c->server, c->c2s, (uint8_t)(0x10 + i), 1, c->name);
        expect_pat(c->client, c->s2c, (uint8_t)(0x20 + i), 0, c->name);
        expect_epipe(c->client, c->name);
        send_pat(c->server, 1000, (uint8_t)(0x60 + i), c->name);
        expect_pat(c->client, 1000, (uint8_t)(0x60 + i), 0, c->name);
        WL_CHECK(shutdown(c->server, SHUT_WR) == 0, "%s: server shutdown after restore", c->name);
        expect_pat(c->client, 0, 0, 1, c->name);
        await_state(c->server, TCP_CLOSE, c->name);
    }
    expect_epipe(fw1.client, "fw1 client");
    expect_pat(fw1.server, fw1.c2s, 0x30, 1, "fw1 server");
    await_state(fw1.client, TCP_FIN_WAIT2, "fw1 client");

    expect_epipe(lastack.server, "lastack server");
    expect_pat(lastack.server, 0, 0, 1, "lastack server");
    expect_pat(lastack.client, lastack.s2c, 0x40, 1, "lastack client");
    await_state(lastack.server, TCP_CLOSE, "lastack server");

    expect_pat(closing.client, 0, 0, 1, "closing client");
    expect_pat(closing.server, closing.c2s, 0x50, 1, "closing server");
    /* The client's FIN is acknowledged once its bytes are: CLOSING -> TIME_WAIT (the socket
     * the process holds shows CLOSE). */
    await_state(closing.client, TCP_CLOSE, "closing client");
    wl_pass();
}
