/* tcp_echo: an echo server whose client is OUTSIDE the dumped tree (the test runner streams
 * counted bytes to it): `tcp_echo OUTFILE PORT [v4|v6] [MIB]` listens on 127.0.0.1:PORT (or
 * [::1]:PORT), holds MIB MiB of filled memory (default 0: a dump that takes a while),
 * accepts one connection, writes READY, then echoes every byte it reads until EOF, after which
 * it shuts its sending side down. The listener stays open. Nothing is verified here but the
 * connection's end: on SIGTERM, PASS when the stream ended with a clean EOF, FAIL naming the
 * error (ECONNRESET, EPIPE, ...) and the byte count otherwise. Whether every byte came back
 * exactly once and in order is the client's check. */
#include "wl.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

static uint8_t buf[1 << 16];

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    if (argc < 3)
        wl_fail("usage: tcp_echo OUTFILE PORT [v4|v6] [MIB]");
    int v6 = argc > 3 && strcmp(argv[3], "v6") == 0;
    size_t mib = argc > 4 ? (size_t)atol(argv[4]) : 0;
    if (mib) {
        uint8_t *m = malloc(mib << 20);
        WL_CHECK(m != NULL, "malloc %zu MiB", mib);
        wl_fill(m, mib << 20, 11);
    }
    uint16_t port = (uint16_t)atoi(argv[2]);
    int l = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM, 0);
    WL_CHECK(l >= 0, "socket");
    int one = 1;
    WL_CHECK(setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0, "SO_REUSEADDR");
    int r;
    if (v6) {
        struct sockaddr_in6 a = { .sin6_family = AF_INET6, .sin6_port = htons(port), .sin6_addr = IN6ADDR_LOOPBACK_INIT };
        r = bind(l, (struct sockaddr *)&a, sizeof a);
    } else {
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        r = bind(l, (struct sockaddr *)&a, sizeof a);
    }
    WL_CHECK(r == 0, "bind port %u", port);
    WL_CHECK(listen(l, 4) == 0, "listen");
    int c;
    do
        c = accept(l, NULL, NULL);
    while (c < 0 && errno == EINTR && !wl_term);
    WL_CHECK(c >= 0, "accept");
    wl_ready();
    uint64_t echoed = 0;
    for (;;) {
        ssize_t n = read(c, buf, sizeof buf);
        if (n < 0 && errno == EINTR) {
            if (wl_term)
                wl_fail("SIGTERM before the client's EOF, after %llu bytes echoed", (unsigned long long)echoed);
            continue;
        }
        WL_CHECK(n >= 0, "read after %llu bytes echoed", (unsigned long long)echoed);
        if (n == 0)
            break;
        ssize_t done = 0;
        while (done < n) {
            ssize_t w = send(c, buf + done, (size_t)(n - done), MSG_NOSIGNAL);
            if (w < 0 && errno == EINTR)
                continue;
            WL_CHECK(w > 0, "send after %llu bytes echoed", (unsigned long long)echoed);
            done += w;
        }
        echoed += (uint64_t)n;
    }
    WL_CHECK(shutdown(c, SHUT_WR) == 0, "shutdown after %llu bytes echoed", (unsigned long long)echoed);
    wl_wait_term();
    fprintf(stderr, "tcp_echo: %llu bytes echoed, then EOF\n", (unsigned long long)echoed);
    wl_result(1, NULL);
    return 0;
}
