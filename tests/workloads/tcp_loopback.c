/* tcp_loopback: established TCP connections over loopback with BOTH ends in the dumped tree,
 * in three variants: IPv4 (127.0.0.1), IPv6 (::1) and v4-mapped (an IPv6 socket talking to
 * ::ffff:127.0.0.1). For each, the root listens and accepts, a forked child connects; at the
 * checkpoint each end has unread bytes queued from the other (child -> root 3000 bytes, root ->
 * child 2000). After SIGTERM the root SIGTERMs the child; both read exactly what was queued,
 * then exchange 1000 more bytes each way; any reset (ECONNRESET, EPIPE) or wrong byte fails. */
#include "wl.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#define N 3

struct variant {
    const char *name;
    int family;
    const char *addr;
};

static const struct variant variants[N] = {
    { "ipv4", AF_INET, "127.0.0.1" },
    { "ipv6", AF_INET6, "::1" },
    { "v4-mapped", AF_INET6, "::ffff:127.0.0.1" },
};

static socklen_t make_addr(const struct variant *v, uint16_t port, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof *ss);
    if (v->family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)ss;
        a->sin_family = AF_INET;
        a->sin_port = htons(port);
        inet_pton(AF_INET, v->addr, &a->sin_addr);
        return sizeof *a;
    }
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(port);
    inet_pton(AF_INET6, v->addr, &a->sin6_addr);
    return sizeof *a;
}

static void send_all(int fd, size_t n, uint8_t seed, const char *what)
{
    uint8_t buf[4096];
    size_t done = 0;
    while (done < n) {
        for (size_t i = 0; i < sizeof buf; i++)
            buf[i] = (uint8_t)(seed + (done + i) * 7);
        size_t chunk = n - done < sizeof buf ? n - done : sizeof buf;
        ssize_t w = send(fd, buf, chunk, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        WL_CHECK(w > 0, "%s: send", what);
        done += (size_t)w;
    }
}

static void expect(int fd, size_t n, uint8_t seed, const char *what)
{
    size_t done = 0;
    uint8_t buf[4096];
    while (done < n) {
        size_t want = n - done < sizeof buf ? n - done : sizeof buf;
        ssize_t r = recv(fd, buf, want, 0);
        if (r < 0 && errno == EINTR)
            continue;
        WL_CHECK(r > 0, "%s: recv after %zu of %zu bytes (%s)", what, done, n, r == 0 ? "EOF" : "error");
        for (ssize_t i = 0; i < r; i++)
            if (buf[i] != (uint8_t)(seed + (done + (size_t)i) * 7))
                wl_fail("%s: byte %zu is 0x%02x, expected 0x%02x", what, done + (size_t)i, buf[i],
                        (uint8_t)(seed + (done + (size_t)i) * 7));
        done += (size_t)r;
    }
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    int accepted[N], client[N];
    for (int i = 0; i < N; i++) {
        const struct variant *v = &variants[i];
        int l = socket(v->family, SOCK_STREAM, 0);
        WL_CHECK(l >= 0, "%s: listener socket", v->name);
        int off = 0;
        if (v->family == AF_INET6)
            WL_CHECK(setsockopt(l, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off) == 0, "%s: V6ONLY off", v->name);
        struct sockaddr_storage ss;
        const struct variant any = { v->name, v->family, v->family == AF_INET ? "127.0.0.1" : "::" };
        socklen_t len = make_addr(&any, 0, &ss);
        WL_CHECK(bind(l, (struct sockaddr *)&ss, len) == 0, "%s: bind", v->name);
        WL_CHECK(listen(l, 4) == 0, "%s: listen", v->name);
        struct sockaddr_storage bound;
        socklen_t blen = sizeof bound;
        WL_CHECK(getsockname(l, (struct sockaddr *)&bound, &blen) == 0, "%s: getsockname", v->name);
        uint16_t port = ntohs(v->family == AF_INET ? ((struct sockaddr_in *)&bound)->sin_port
                                                   : ((struct sockaddr_in6 *)&bound)->sin6_port);
        client[i] = socket(v->family, SOCK_STREAM, 0);
        WL_CHECK(client[i] >= 0, "%s: client socket", v->name);
        len = make_addr(v, port, &ss);
        WL_CHECK(connect(client[i], (struct sockaddr *)&ss, len) == 0, "%s: connect to %s port %u", v->name,
                 v->addr, port);
        accepted[i] = accept(l, NULL, NULL);
        WL_CHECK(accepted[i] >= 0, "%s: accept", v->name);
        close(l);
    }
    pid_t child = fork();
    WL_CHECK(child >= 0, "fork");
    if (child == 0) {
        wl_is_child = 1;
        for (int i = 0; i < N; i++) {
            close(accepted[i]);
            send_all(client[i], 3000, (uint8_t)(0x30 + i), variants[i].name);
        }
        wl_wait_term();
        for (int i = 0; i < N; i++) {
            expect(client[i], 2000, (uint8_t)(0x20 + i), variants[i].name);
            send_all(client[i], 1000, (uint8_t)(0x40 + i), variants[i].name);
            expect(client[i], 1000, (uint8_t)(0x50 + i), variants[i].name);
        }
        wl_pass();
    }
    for (int i = 0; i < N; i++) {
        close(client[i]);
        send_all(accepted[i], 2000, (uint8_t)(0x20 + i), variants[i].name);
    }
    wl_sleep_ms(200); /* the child's 3000 bytes are in our receive queues */
    wl_ready();
    wl_wait_term();
    kill(child, SIGTERM);
    for (int i = 0; i < N; i++) {
        expect(accepted[i], 3000, (uint8_t)(0x30 + i), variants[i].name);
        expect(accepted[i], 1000, (uint8_t)(0x40 + i), variants[i].name);
        send_all(accepted[i], 1000, (uint8_t)(0x50 + i), variants[i].name);
    }
    wl_expect_child_pass(child, "the connecting child");
    wl_pass();
}
