/* tcp_service: a TCP service whose clients are OUTSIDE the dumped tree (the VM scenario's
 * host-side clients in a network namespace behind a tap device, or a host test's clients on
 * loopback): `tcp_service OUTFILE PORT [EXPECTED [CHUNK [INTERVAL_MS [ACCEPT_MS]]]]` listens
 * on 0.0.0.0:PORT (backlog 512), writes READY, and serves every connection, in one poll loop,
 * by the first byte its client sends (with ACCEPT_MS, it accepts waiting connections only every
 * ACCEPT_MS ms, so they sit in the accept queue meanwhile):
 *  'U' upload: every following byte must be pattern(i) (i counted from 0; the same function as
 *      seamless_tests::stream::pattern); every 16 KiB verified, and at the client's EOF, it
 *      answers a 16-byte record (bytes verified so far, FNV-1a 64 of them, little-endian), then
 *      shuts its sending side down after the last one.
 *  'D' download: it sends pattern(i) bytes, CHUNK (default 4096) every INTERVAL_MS (default 4),
 *      as far as the socket takes them (no catching up after a stall), until the client sends
 *      'S'; then it shuts its sending side down and logs "download #N: sent B bytes fnv H".
 *  'I' idle: SO_KEEPALIVE (idle 10 s, interval 5 s, 12 probes); every byte is echoed back.
 * A connection ends when its client closes it (EOF; at SIGTERM it waits up to 3 s for the EOFs
 * of clients that just closed). Any error on any connection (reset,
 * timeout, a wrong byte) is remembered. On SIGTERM: PASS when there was none, every connection
 * ended with a clean EOF, and (EXPECTED > 0) exactly EXPECTED connections were accepted, i.e.
 * none was made again; FAIL naming the first problem otherwise. */
#include "wl.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

#define MAX_CONNS 1024

struct conn {
    int fd;
    char kind;      /* 0 until the first byte, then 'U', 'D' or 'I' */
    int stopped;    /* download: 'S' received */
    uint64_t count; /* upload: bytes verified; download: bytes sent */
    uint64_t fnv;
    uint64_t acked; /* upload: count of the last record sent */
    int number;
};

static struct conn conns[MAX_CONNS];
static int nconns;
static int accepted, ended, downloads, uploads;
static char problem[700];

static uint8_t pat(uint64_t i)
{
    return (uint8_t)((i * 31) ^ ((i >> 8) * 131) ^ ((i >> 16) * 7));
}

static uint64_t fnv_step(uint64_t h, uint8_t b)
{
    return (h ^ b) * 0x100000001b3ull;
}

__attribute__((format(printf, 1, 2))) static void note_problem(const char *fmt, ...)
{
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "tcp_service: %s\n", msg);
    if (!problem[0])
        snprintf(problem, sizeof problem, "%s", msg);
}

static void drop_conn(int k)
{
    close(conns[k].fd);
    conns[k] = conns[--nconns];
}

/* Sends a whole small record on a non-blocking socket, waiting for room if needed. */
static int send_small(int fd, const void *b, size_t n)
{
    size_t done = 0;
    while (done < n) {
        ssize_t r = send(fd, (const char *)b + done, n - done, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (r > 0) {
            done += (size_t)r;
            continue;
        }
        if (r < 0 && (errno == EINTR || errno == EAGAIN)) {
            struct pollfd p = { .fd = fd, .events = POLLOUT };
            poll(&p, 1, 1000);
            continue;
        }
        return -1;
    }
    return 0;
}

static int send_record(struct conn *c)
{
    uint64_t rec[2] = { c->count, c->fnv };
    if (send_small(c->fd, rec, sizeof rec) != 0)
        return -1;
    c->acked = c->count;
    return 0;
}

static const char *kind_name(char k)
{
    return k == 'U' ? "upload" : k == 'D' ? "download" : k == 'I' ? "idle" : "new";
}

/* Handles readable data on connection k; returns 0 to keep it, -1 when it was dropped. */
static int on_readable(int k)
{
    static uint8_t buf[1 << 16];
    struct conn *c = &conns[k];
    ssize_t n = recv(c->fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return 0;
    if (n < 0) {
        note_problem("%s connection #%d: recv: %s after %llu bytes", kind_name(c->kind), c->number, strerror(errno),
                     (unsigned long long)c->count);
        drop_conn(k);
        return -1;
    }
    if (n == 0) {
        if (c->kind == 'U') {
            if (send_record(c) != 0)
                note_problem("upload connection #%d: final record: %s", c->number, strerror(errno));
            shutdown(c->fd, SHUT_WR);
            fprintf(stderr, "tcp_service: upload #%d: verified %llu bytes fnv %016llx\n", c->number,
                    (unsigned long long)c->count, (unsigned long long)c->fnv);
            uploads++;
        } else if (c->kind == 'D' && !c->stopped) {
            note_problem("download connection #%d: EOF before 'S', after %llu bytes sent", c->number,
                         (unsigned long long)c->count);
        }
        ended++;
        drop_conn(k);
        return -1;
    }
    size_t at = 0;
    if (!c->kind) {
        c->kind = (char)buf[0];
        at = 1;
        if (c->kind != 'U' && c->kind != 'D' && c->kind != 'I') {
            note_problem("connection #%d: unknown kind byte 0x%02x", c->number, buf[0]);
            drop_conn(k);
            return -1;
        }
        if (c->kind == 'I') {
            int one = 1, idle = 10, intvl = 5, cnt = 12;
            WL_CHECK(setsockopt(c->fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one) == 0, "SO_KEEPALIVE");
            WL_CHECK(setsockopt(c->fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle) == 0, "TCP_KEEPIDLE");
            WL_CHECK(setsockopt(c->fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl) == 0, "TCP_KEEPINTVL");
            WL_CHECK(setsockopt(c->fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt) == 0, "TCP_KEEPCNT");
        }
    }
    switch (c->kind) {
    case 'U':
        for (size_t i = at; i < (size_t)n; i++) {
            if (buf[i] != pat(c->count)) {
                note_problem("upload connection #%d: byte %llu is 0x%02x, expected 0x%02x (lost, repeated or "
                             "reordered bytes)",
                             c->number, (unsigned long long)c->count, buf[i], pat(c->count));
                drop_conn(k);
                return -1;
            }
            c->fnv = fnv_step(c->fnv, buf[i]);
            c->count++;
        }
        if (c->count - c->acked >= 16384 && send_record(c) != 0) {
            note_problem("upload connection #%d: progress record: %s", c->number, strerror(errno));
            drop_conn(k);
            return -1;
        }
        break;
    case 'D':
        for (size_t i = at; i < (size_t)n; i++) {
            if (buf[i] == 'S' && !c->stopped) {
                c->stopped = 1;
                shutdown(c->fd, SHUT_WR);
                fprintf(stderr, "tcp_service: download #%d: sent %llu bytes fnv %016llx\n", c->number,
                        (unsigned long long)c->count, (unsigned long long)c->fnv);
                downloads++;
            }
        }
        break;
    case 'I':
        if ((size_t)n > at && send_small(c->fd, buf + at, (size_t)n - at) != 0) {
            note_problem("idle connection #%d: echo: %s", c->number, strerror(errno));
            drop_conn(k);
            return -1;
        }
        break;
    }
    return 0;
}

static void send_chunk(struct conn *c, size_t chunk)
{
    static uint8_t buf[1 << 16];
    if (chunk > sizeof buf)
        chunk = sizeof buf;
    for (size_t i = 0; i < chunk; i++)
        buf[i] = pat(c->count + i);
    ssize_t n = send(c->fd, buf, chunk, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
        if (errno != EAGAIN && errno != EINTR)
            note_problem("download connection #%d: send: %s after %llu bytes", c->number, strerror(errno),
                         (unsigned long long)c->count);
        return;
    }
    for (ssize_t i = 0; i < n; i++)
        c->fnv = fnv_step(c->fnv, buf[i]);
    c->count += (uint64_t)n;
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    if (argc < 3)
        wl_fail("usage: tcp_service OUTFILE PORT [EXPECTED [CHUNK [INTERVAL_MS]]]");
    uint16_t port = (uint16_t)atoi(argv[2]);
    int expected = argc > 3 ? atoi(argv[3]) : 0;
    size_t chunk = argc > 4 ? (size_t)atol(argv[4]) : 4096;
    long interval = argc > 5 ? atol(argv[5]) : 4;
    long accept_ms = argc > 6 ? atol(argv[6]) : 0;
    double next_accept = 0;
    int l = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    WL_CHECK(l >= 0, "socket");
    int one = 1;
    WL_CHECK(setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0, "SO_REUSEADDR");
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_ANY) };
    WL_CHECK(bind(l, (struct sockaddr *)&a, sizeof a) == 0, "bind port %u", port);
    WL_CHECK(listen(l, 512) == 0, "listen");
    wl_ready();
    static struct pollfd p[MAX_CONNS + 1];
    double next_tick = wl_now(CLOCK_MONOTONIC);
    while (!wl_term) {
        double now = wl_now(CLOCK_MONOTONIC);
        int accepting = now >= next_accept;
        /* A listener left out of the set stays unpolled (negative fd) until the next accept. */
        p[0] = (struct pollfd){ .fd = accepting ? l : -1, .events = POLLIN };
        for (int k = 0; k < nconns; k++)
            p[k + 1] = (struct pollfd){ .fd = conns[k].fd, .events = POLLIN };
        double until = next_tick;
        if (!accepting && next_accept < until)
            until = next_accept;
        int wait_ms = (int)((until - now) * 1000.0);
        if (wait_ms < 0)
            wait_ms = 0;
        int n = poll(p, (nfds_t)nconns + 1, wait_ms);
        if (n < 0 && errno != EINTR)
            WL_CHECK(0, "poll");
        if (n > 0) {
            /* Connections first (indices move when one is dropped: walk from the end). */
            for (int k = nconns - 1; k >= 0; k--)
                if (p[k + 1].revents & (POLLIN | POLLHUP | POLLERR))
                    on_readable(k);
            if (accepting && (p[0].revents & POLLIN)) {
                if (accept_ms > 0)
                    next_accept = wl_now(CLOCK_MONOTONIC) + (double)accept_ms / 1000.0;
                for (;;) {
                    int c = accept4(l, NULL, NULL, SOCK_NONBLOCK);
                    if (c < 0) {
                        if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
                            note_problem("accept: %s", strerror(errno));
                        break;
                    }
                    if (nconns == MAX_CONNS) {
                        note_problem("more than %d connections", MAX_CONNS);
                        close(c);
                        continue;
                    }
                    conns[nconns] = (struct conn){ .fd = c, .fnv = 0xcbf29ce484222325ull, .number = ++accepted };
                    nconns++;
                }
            }
        }
        now = wl_now(CLOCK_MONOTONIC);
        if (now >= next_tick) {
            for (int k = 0; k < nconns; k++)
                if (conns[k].kind == 'D' && !conns[k].stopped)
                    send_chunk(&conns[k], chunk);
            next_tick = now + (double)interval / 1000.0;
        }
    }
    /* Clients that just closed: their EOF may still be on its way. */
    double drain_until = wl_now(CLOCK_MONOTONIC) + 3.0;
    while (nconns > 0 && wl_now(CLOCK_MONOTONIC) < drain_until) {
        for (int k = 0; k < nconns; k++)
            p[k] = (struct pollfd){ .fd = conns[k].fd, .events = POLLIN };
        if (poll(p, (nfds_t)nconns, 100) <= 0)
            continue;
        for (int k = nconns - 1; k >= 0; k--)
            if (p[k].revents & (POLLIN | POLLHUP | POLLERR))
                on_readable(k);
    }
    fprintf(stderr, "tcp_service: %d connections accepted, %d ended, %d still open, %d uploads, %d downloads\n",
            accepted, ended, nconns, uploads, downloads);
    if (problem[0])
        wl_fail("%s", problem);
    if (nconns)
        wl_fail("%d connections still open at SIGTERM (first: %s #%d)", nconns, kind_name(conns[0].kind),
                conns[0].number);
    if (expected && accepted != expected)
        wl_fail("%d connections accepted, expected %d (a client connected again?)", accepted, expected);
    wl_pass();
}
