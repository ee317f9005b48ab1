/* unix_pair: unix sockets with both ends in the dumped tree, and named listeners.
 *  sp: SOCK_STREAM socketpair; sp[0] kept by the root, sp[1] by a forked child. 5000 bytes
 *      queued towards the child and 7000 towards the root at the dump.
 *  sq: SOCK_SEQPACKET socketpair in the root (no data), still connected after restore.
 *  sh: SOCK_STREAM socketpair with 100 bytes queued, then shutdown(SHUT_WR) on sh[0]: sh[1] reads
 *      the bytes then EOF; sh[0] cannot send.
 *  lp: listener bound to OUTFILE.sock (mode 0640), backlog 4; la: listener on an abstract name.
 *  lc/ls: a client connected to lp and its accepted end, with 300 bytes queued (a pair).
 * After restore: every queue's bytes in order, new data both ways, new clients connect to lp by
 * path and to la by abstract name. */
#include "wl.h"
#include <poll.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

static void fill(uint8_t *b, size_t n, uint8_t seed)
{
    for (size_t i = 0; i < n; i++)
        b[i] = (uint8_t)(seed + i * 13 + (i >> 9));
}

static void send_all(int fd, size_t n, uint8_t seed, const char *what)
{
    uint8_t *b = malloc(n);
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

static void expect(int fd, size_t n, uint8_t seed, const char *what)
{
    uint8_t *want = malloc(n), *got = malloc(n);
    fill(want, n, seed);
    size_t done = 0;
    while (done < n) {
        ssize_t r = recv(fd, got + done, n - done, 0);
        if (r < 0 && errno == EINTR)
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

static void exchange(int lfd, const struct sockaddr_un *a, socklen_t alen, const char *what)
{
    int c = socket(AF_UNIX, SOCK_STREAM, 0);
    WL_CHECK(c >= 0, "%s: socket", what);
    WL_CHECK(connect(c, (const struct sockaddr *)a, alen) == 0, "%s: connect", what);
    int s = accept(lfd, NULL, NULL);
    WL_CHECK(s >= 0, "%s: accept", what);
    send_all(c, 700, 0x71, what);
    expect(s, 700, 0x71, what);
    send_all(s, 900, 0x72, what);
    expect(c, 900, 0x72, what);
    close(c);
    close(s);
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    int sp[2], sq[2], sh[2];
    WL_CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sp) == 0, "socketpair sp");
    WL_CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sq) == 0, "socketpair sq");
    WL_CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sh) == 0, "socketpair sh");
    send_all(sp[0], 5000, 0x10, "sp root->child");
    send_all(sp[1], 7000, 0x20, "sp child->root");
    send_all(sh[0], 100, 0x30, "sh");
    WL_CHECK(shutdown(sh[0], SHUT_WR) == 0, "shutdown sh[0]");

    struct sockaddr_un ap = { .sun_family = AF_UNIX };
    wl_path(ap.sun_path, sizeof ap.sun_path, ".sock");
    unlink(ap.sun_path);
    int lp = socket(AF_UNIX, SOCK_STREAM, 0);
    WL_CHECK(lp >= 0, "socket lp");
    WL_CHECK(bind(lp, (struct sockaddr *)&ap, sizeof ap) == 0, "bind %s", ap.sun_path);
    WL_CHECK(chmod(ap.sun_path, 0640) == 0, "chmod");
    WL_CHECK(listen(lp, 4) == 0, "listen lp");
    struct sockaddr_un aa = { .sun_family = AF_UNIX };
    int alen = snprintf(aa.sun_path + 1, sizeof aa.sun_path - 1, "seamless-unix-pair-%d", (int)getpid());
    socklen_t aalen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + alen);
    int la = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
    WL_CHECK(la >= 0, "socket la");
    WL_CHECK(bind(la, (struct sockaddr *)&aa, aalen) == 0, "bind abstract");
    WL_CHECK(listen(la, 4) == 0, "listen la");
    int lc = socket(AF_UNIX, SOCK_STREAM, 0);
    WL_CHECK(lc >= 0 && connect(lc, (struct sockaddr *)&ap, sizeof ap) == 0, "connect lc");
    int ls = accept(lp, NULL, NULL);
    WL_CHECK(ls >= 0, "accept ls");
    send_all(lc, 300, 0x40, "lc->ls");

    pid_t child = fork();
    WL_CHECK(child >= 0, "fork");
    if (child == 0) {
        wl_is_child = 1;
        close(sp[0]);
        wl_wait_term();
        expect(sp[1], 5000, 0x10, "child: sp bytes queued at the dump");
        send_all(sp[1], 2000, 0x50, "child: sp after");
        expect(sp[1], 3000, 0x60, "child: sp after restore");
        wl_pass();
    }
    close(sp[1]);

    wl_ready();
    wl_wait_term();

    expect(sp[0], 7000, 0x20, "sp bytes queued at the dump");
    send_all(sp[0], 3000, 0x60, "sp after");
    WL_CHECK(kill(child, SIGTERM) == 0, "signal child");
    expect(sp[0], 2000, 0x50, "sp from the child after restore");
    wl_expect_child_pass(child, "sp child");

    WL_CHECK(send(sq[0], "abc", 3, 0) == 3 && send(sq[0], "de", 2, 0) == 2, "seqpacket send");
    char pk[8];
    if (recv(sq[1], pk, sizeof pk, 0) != 3 || recv(sq[1], pk, sizeof pk, 0) != 2)
        wl_fail("seqpacket pair lost its record boundaries");
    int type = 0;
    socklen_t tl = sizeof type;
    WL_CHECK(getsockopt(sq[0], SOL_SOCKET, SO_TYPE, &type, &tl) == 0 && type == SOCK_SEQPACKET, "sq type");
    if (fcntl(sq[0], F_GETFD) != FD_CLOEXEC)
        wl_fail("sq lost close-on-exec");

    expect(sh[1], 100, 0x30, "sh bytes before shutdown");
    char x;
    if (recv(sh[1], &x, 1, 0) != 0)
        wl_fail("sh[1] did not see EOF after the data (shutdown lost)");
    if (send(sh[0], "x", 1, MSG_NOSIGNAL) != -1 || errno != EPIPE)
        wl_fail("sh[0] can still send after SHUT_WR");

    expect(ls, 300, 0x40, "lc->ls bytes queued at the dump");
    send_all(ls, 400, 0x41, "ls->lc after");
    expect(lc, 400, 0x41, "ls->lc after restore");

    struct stat st;
    WL_CHECK(stat(ap.sun_path, &st) == 0, "stat %s", ap.sun_path);
    if (!S_ISSOCK(st.st_mode) || (st.st_mode & 07777) != 0640)
        wl_fail("%s mode %o, expected a socket with 0640", ap.sun_path, st.st_mode);
    exchange(lp, &ap, sizeof ap, "new client by path");
    WL_CHECK(fcntl(la, F_SETFL, 0) == 0, "la blocking");
    exchange(la, &aa, aalen, "new client by abstract name");
    unlink(ap.sun_path);
    wl_pass();
}
