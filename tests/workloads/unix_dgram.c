/* unix_dgram: messages queued on unix datagram and seqpacket sockets, unread at the dump.
 *  srv: SOCK_DGRAM bound to OUTFILE.srv (SO_RCVBUF set), SO_PASSCRED switched on after the
 *       messages arrived; 9 messages queued, in this order, from:
 *       a  (bound to OUTFILE.a, alive in the root, SO_SNDBUF set), an abstract sender b in a
 *       child that exited before READY, an unnamed sender that was closed, a sender bound to
 *       OUTFILE.d that was closed and whose file was unlinked, one bound to OUTFILE.e closed
 *       with its file left behind; an empty message and a 60000-byte one among them.
 *  dp:  SOCK_DGRAM socketpair, dp[0] in the root, dp[1] in a forked child: messages both ways
 *       (one empty).
 *  sp:  SOCK_SEQPACKET socketpair, root and child: packets both ways.
 *  k/t: k (unnamed) connect()ed to t (abstract name), 2 messages from k queued on t.
 *  cs:  SOCK_DGRAM on an abstract name with SO_PASSCRED from the start: a message from the
 *       root and one from the child (SCM_CREDENTIALS of each).
 * After restore: every message in order with its length and sender name (recvfrom), the
 * credentials of srv's old messages (pid 0), the buffer sizes, k still connected to t (send
 * without an address, getpeername), new messages to srv by path, both ways on the pairs. */
#include "wl.h"
#include <stddef.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

static socklen_t path_addr(struct sockaddr_un *a, const char *suffix)
{
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    wl_path(a->sun_path, sizeof a->sun_path, suffix);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(a->sun_path) + 1);
}

static socklen_t abstract_addr(struct sockaddr_un *a, const char *tag)
{
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    int n = snprintf(a->sun_path + 1, sizeof a->sun_path - 1, "seamless-dgram-%s-%d", tag, (int)getpid());
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
}

static void fill(uint8_t *b, size_t n, uint8_t seed)
{
    for (size_t i = 0; i < n; i++)
        b[i] = (uint8_t)(seed + i * 7 + (i >> 8));
}

static void send_msg(int fd, const struct sockaddr_un *to, socklen_t tolen, size_t n, uint8_t seed, const char *what)
{
    uint8_t *b = malloc(n + 1);
    fill(b, n, seed);
    ssize_t r = to ? sendto(fd, b, n, MSG_DONTWAIT, (const struct sockaddr *)to, tolen) : send(fd, b, n, MSG_DONTWAIT);
    WL_CHECK(r == (ssize_t)n, "send %s (%zu bytes)", what, n);
    free(b);
}

/* Receives one message: its length must be n (not truncated), its bytes from `seed`, and its
 * sender's name `from` (NULL: unnamed). */
static void expect_msg(int fd, size_t n, uint8_t seed, const struct sockaddr_un *from, socklen_t fromlen,
                       const char *what)
{
    uint8_t *want = malloc(n + 1), *got = malloc(n + 64);
    fill(want, n, seed);
    struct sockaddr_un src;
    socklen_t sl = sizeof src;
    memset(&src, 0, sizeof src);
    ssize_t r;
    do
        r = recvfrom(fd, got, n + 64, MSG_DONTWAIT, (struct sockaddr *)&src, &sl);
    while (r < 0 && errno == EINTR);
    WL_CHECK(r >= 0, "%s: recvfrom", what);
    if ((size_t)r != n)
        wl_fail("%s: a message of %zd bytes, expected %zu (boundaries lost)", what, r, n);
    if (memcmp(got, want, n) != 0)
        wl_fail("%s: the bytes differ", what);
    socklen_t base = (socklen_t)offsetof(struct sockaddr_un, sun_path);
    if (from == NULL) {
        if (sl > base)
            wl_fail("%s: sender named %s%s, expected unnamed", what, src.sun_path[0] ? "" : "@",
                    src.sun_path[0] ? src.sun_path : src.sun_path + 1);
    } else {
        int same = from->sun_path[0] ? (sl > base && strcmp(src.sun_path, from->sun_path) == 0)
                                     : (sl == fromlen && memcmp(src.sun_path, from->sun_path, fromlen - base) == 0);
        if (!same)
            wl_fail("%s: sender %s%s (len %u), expected %s%s", what, src.sun_path[0] ? "" : "@",
                    src.sun_path[0] ? src.sun_path : src.sun_path + 1, (unsigned)sl, from->sun_path[0] ? "" : "@",
                    from->sun_path[0] ? from->sun_path : from->sun_path + 1);
    }
    free(want);
    free(got);
}

static void expect_empty(int fd, const char *what)
{
    char c;
    if (recv(fd, &c, 1, MSG_DONTWAIT) != -1 || errno != EAGAIN)
        wl_fail("%s: more messages than expected", what);
}

static int getint(int fd, int opt)
{
    int v = 0;
    socklen_t l = sizeof v;
    WL_CHECK(getsockopt(fd, SOL_SOCKET, opt, &v, &l) == 0, "getsockopt %d", opt);
    return v;
}

/* Sends one message from a fresh socket bound to `name` (NULL: unnamed), then closes it. */
static void from_closed(const struct sockaddr_un *name, socklen_t nlen, const struct sockaddr_un *to, socklen_t tolen,
                        size_t n, uint8_t seed, int unlink_after)
{
    int s = socket(AF_UNIX, SOCK_DGRAM, 0);
    WL_CHECK(s >= 0, "socket");
    if (name) {
        if (name->sun_path[0])
            unlink(name->sun_path);
        WL_CHECK(bind(s, (const struct sockaddr *)name, nlen) == 0, "bind sender");
    }
    send_msg(s, to, tolen, n, seed, "closed sender");
    close(s);
    if (name && unlink_after)
        WL_CHECK(unlink(name->sun_path) == 0, "unlink %s", name->sun_path);
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    struct sockaddr_un srv_a, a_a, b_a, d_a, e_a, t_a;
    socklen_t srv_l = path_addr(&srv_a, ".srv"), a_l = path_addr(&a_a, ".a"), d_l = path_addr(&d_a, ".d"),
              e_l = path_addr(&e_a, ".e");
    socklen_t b_l = abstract_addr(&b_a, "b"), t_l = abstract_addr(&t_a, "t");
    unlink(srv_a.sun_path);
    int srv = socket(AF_UNIX, SOCK_DGRAM, 0);
    WL_CHECK(srv >= 0 && bind(srv, (struct sockaddr *)&srv_a, srv_l) == 0, "bind srv");
    int rcvbuf = 70000;
    WL_CHECK(setsockopt(srv, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf) == 0, "SO_RCVBUF");
    unlink(a_a.sun_path);
    int a = socket(AF_UNIX, SOCK_DGRAM, 0);
    WL_CHECK(a >= 0 && bind(a, (struct sockaddr *)&a_a, a_l) == 0, "bind a");
    int sndbuf = 150000;
    WL_CHECK(setsockopt(a, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf) == 0, "SO_SNDBUF");

    send_msg(a, &srv_a, srv_l, 100, 0x01, "a 1");
    pid_t b = fork();
    WL_CHECK(b >= 0, "fork b");
    if (b == 0) {
        int s = socket(AF_UNIX, SOCK_DGRAM, 0);
        if (s < 0 || bind(s, (struct sockaddr *)&b_a, b_l) != 0)
            _exit(1);
        send_msg(s, &srv_a, srv_l, 200, 0x02, "b");
        _exit(0);
    }
    int st = 0;
    WL_CHECK(waitpid(b, &st, 0) == b && WIFEXITED(st) && WEXITSTATUS(st) == 0, "sender b");
    from_closed(NULL, 0, &srv_a, srv_l, 300, 0x03, 0);
    send_msg(a, &srv_a, srv_l, 0, 0x04, "a empty");
    from_closed(&d_a, d_l, &srv_a, srv_l, 400, 0x05, 1);
    from_closed(&e_a, e_l, &srv_a, srv_l, 500, 0x06, 0);
    send_msg(a, &srv_a, srv_l, 60000, 0x07, "a big");
    from_closed(NULL, 0, &srv_a, srv_l, 1, 0x08, 0);
    send_msg(a, &srv_a, srv_l, 700, 0x09, "a last");
    int one = 1;
    WL_CHECK(setsockopt(srv, SOL_SOCKET, SO_PASSCRED, &one, sizeof one) == 0, "SO_PASSCRED");
    int srv_rcv = getint(srv, SO_RCVBUF), a_snd = getint(a, SO_SNDBUF);

    int dp[2], sp[2];
    WL_CHECK(socketpair(AF_UNIX, SOCK_DGRAM, 0, dp) == 0, "socketpair dgram");
    WL_CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sp) == 0, "socketpair seqpacket");
    send_msg(dp[0], NULL, 0, 10, 0x11, "dp 0->1 a");
    send_msg(dp[0], NULL, 0, 0, 0x12, "dp 0->1 empty");
    send_msg(dp[0], NULL, 0, 3000, 0x13, "dp 0->1 b");
    send_msg(dp[1], NULL, 0, 20, 0x14, "dp 1->0");
    send_msg(sp[0], NULL, 0, 5, 0x21, "sp 0->1 a");
    send_msg(sp[0], NULL, 0, 9000, 0x22, "sp 0->1 b");
    send_msg(sp[0], NULL, 0, 6, 0x23, "sp 0->1 c");
    send_msg(sp[1], NULL, 0, 70, 0x24, "sp 1->0 a");
    send_msg(sp[1], NULL, 0, 80, 0x25, "sp 1->0 b");

    int t = socket(AF_UNIX, SOCK_DGRAM, 0);
    WL_CHECK(t >= 0 && bind(t, (struct sockaddr *)&t_a, t_l) == 0, "bind t");
    int k = socket(AF_UNIX, SOCK_DGRAM, 0);
    WL_CHECK(k >= 0 && connect(k, (struct sockaddr *)&t_a, t_l) == 0, "connect k");
    send_msg(k, NULL, 0, 33, 0x31, "k 1");
    send_msg(k, NULL, 0, 44, 0x32, "k 2");

    struct sockaddr_un cs_a;
    socklen_t cs_l = abstract_addr(&cs_a, "cs");
    int cs = socket(AF_UNIX, SOCK_DGRAM, 0);
    WL_CHECK(cs >= 0 && setsockopt(cs, SOL_SOCKET, SO_PASSCRED, &one, sizeof one) == 0, "cs SO_PASSCRED");
    WL_CHECK(bind(cs, (struct sockaddr *)&cs_a, cs_l) == 0, "bind cs");
    send_msg(a, &cs_a, cs_l, 11, 0x41, "a to cs");
    int sync[2];
    WL_CHECK(pipe(sync) == 0, "pipe");

    pid_t child = fork();
    WL_CHECK(child >= 0, "fork");
    if (child == 0) {
        wl_is_child = 1;
        close(dp[0]);
        close(sp[0]);
        close(sync[0]);
        int u = socket(AF_UNIX, SOCK_DGRAM, 0);
        WL_CHECK(u >= 0, "child socket");
        send_msg(u, &cs_a, cs_l, 12, 0x42, "child to cs");
        close(u);
        WL_CHECK(write(sync[1], "s", 1) == 1, "child sync");
        close(sync[1]);
        wl_wait_term();
        expect_msg(dp[1], 10, 0x11, NULL, 0, "child: dp 1");
        expect_msg(dp[1], 0, 0x12, NULL, 0, "child: dp empty");
        expect_msg(dp[1], 3000, 0x13, NULL, 0, "child: dp 2");
        expect_empty(dp[1], "child: dp");
        expect_msg(sp[1], 5, 0x21, NULL, 0, "child: sp 1");
        expect_msg(sp[1], 9000, 0x22, NULL, 0, "child: sp 2");
        expect_msg(sp[1], 6, 0x23, NULL, 0, "child: sp 3");
        expect_empty(sp[1], "child: sp");
        send_msg(dp[1], NULL, 0, 15, 0x15, "child: dp after");
        send_msg(sp[1], NULL, 0, 16, 0x26, "child: sp after");
        wl_pass();
    }
    close(dp[1]);
    close(sp[1]);
    close(sync[1]);
    char sy;
    WL_CHECK(read(sync[0], &sy, 1) == 1, "sync with the child");
    close(sync[0]);

    wl_ready();
    wl_wait_term();

    expect_msg(srv, 100, 0x01, &a_a, a_l, "srv 1 (a)");
    expect_msg(srv, 200, 0x02, &b_a, b_l, "srv 2 (b, exited)");
    expect_msg(srv, 300, 0x03, NULL, 0, "srv 3 (unnamed, closed)");
    /* The credentials of a message queued before SO_PASSCRED: pid 0. */
    {
        char buf[8], ctl[CMSG_SPACE(sizeof(struct ucred))];
        struct iovec iov = { buf, sizeof buf };
        struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof ctl };
        ssize_t r = recvmsg(srv, &m, MSG_DONTWAIT);
        WL_CHECK(r == 0, "srv 4 (a, empty): recvmsg");
        struct cmsghdr *h = CMSG_FIRSTHDR(&m);
        if (!h || h->cmsg_type != SCM_CREDENTIALS)
            wl_fail("srv 4: no credentials although SO_PASSCRED is on");
        struct ucred u;
        memcpy(&u, CMSG_DATA(h), sizeof u);
        if (u.pid != 0)
            wl_fail("srv 4: credentials of pid %d, expected none (pid 0)", (int)u.pid);
    }
    expect_msg(srv, 400, 0x05, &d_a, d_l, "srv 5 (d, closed and unlinked)");
    expect_msg(srv, 500, 0x06, &e_a, e_l, "srv 6 (e, closed)");
    expect_msg(srv, 60000, 0x07, &a_a, a_l, "srv 7 (a, big)");
    expect_msg(srv, 1, 0x08, NULL, 0, "srv 8 (unnamed)");
    expect_msg(srv, 700, 0x09, &a_a, a_l, "srv 9 (a)");
    expect_empty(srv, "srv");
    struct stat sb;
    if (stat(d_a.sun_path, &sb) == 0)
        wl_fail("%s exists again", d_a.sun_path);
    if (stat(e_a.sun_path, &sb) != 0 || !S_ISSOCK(sb.st_mode))
        wl_fail("%s is no longer a socket file", e_a.sun_path);
    if (getint(srv, SO_PASSCRED) != 1)
        wl_fail("srv lost SO_PASSCRED");
    if (getint(srv, SO_RCVBUF) != srv_rcv)
        wl_fail("srv SO_RCVBUF %d, expected %d", getint(srv, SO_RCVBUF), srv_rcv);
    if (getint(a, SO_SNDBUF) != a_snd)
        wl_fail("a SO_SNDBUF %d, expected %d", getint(a, SO_SNDBUF), a_snd);
    send_msg(a, &srv_a, srv_l, 50, 0x0a, "a after");
    expect_msg(srv, 50, 0x0a, &a_a, a_l, "srv after restore (a)");

    expect_msg(dp[0], 20, 0x14, NULL, 0, "dp 0");
    expect_empty(dp[0], "dp 0");
    expect_msg(sp[0], 70, 0x24, NULL, 0, "sp 0 a");
    expect_msg(sp[0], 80, 0x25, NULL, 0, "sp 0 b");
    expect_empty(sp[0], "sp 0");

    expect_msg(t, 33, 0x31, NULL, 0, "t 1 (from k)");
    expect_msg(t, 44, 0x32, NULL, 0, "t 2 (from k)");
    expect_empty(t, "t");
    struct sockaddr_un pa;
    socklen_t pl = sizeof pa;
    WL_CHECK(getpeername(k, (struct sockaddr *)&pa, &pl) == 0, "k getpeername (connection lost)");
    if (pl != t_l || memcmp(pa.sun_path, t_a.sun_path, t_l - offsetof(struct sockaddr_un, sun_path)) != 0)
        wl_fail("k is connected to another name");
    send_msg(k, NULL, 0, 55, 0x33, "k after");
    expect_msg(t, 55, 0x33, NULL, 0, "t after restore (from k)");

    /* The credentials the messages carried: the root's and the child's. */
    for (int i = 0; i < 2; i++) {
        char buf[64], ctl[CMSG_SPACE(sizeof(struct ucred))];
        struct iovec iov = { buf, sizeof buf };
        struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof ctl };
        ssize_t r = recvmsg(cs, &m, MSG_DONTWAIT);
        WL_CHECK(r == 11 + i, "cs %d: recvmsg", i);
        struct cmsghdr *h = CMSG_FIRSTHDR(&m);
        if (!h || h->cmsg_type != SCM_CREDENTIALS)
            wl_fail("cs %d: no credentials", i);
        struct ucred u;
        memcpy(&u, CMSG_DATA(h), sizeof u);
        pid_t want = i == 0 ? getpid() : child;
        if (u.pid != want || u.uid != getuid() || u.gid != getgid())
            wl_fail("cs %d: credentials pid %d uid %d gid %d, expected pid %d uid %d gid %d", i, (int)u.pid,
                    (int)u.uid, (int)u.gid, (int)want, (int)getuid(), (int)getgid());
    }
    expect_empty(cs, "cs");

    WL_CHECK(kill(child, SIGTERM) == 0, "signal child");
    wl_expect_child_pass(child, "dgram child");
    expect_msg(dp[0], 15, 0x15, NULL, 0, "dp from the child after restore");
    expect_msg(sp[0], 16, 0x26, NULL, 0, "sp from the child after restore");
    unlink(srv_a.sun_path);
    unlink(a_a.sun_path);
    unlink(e_a.sun_path);
    wl_pass();
}
