/* unix_scm: descriptors in flight (SCM_RIGHTS) in unread messages of unix sockets.
 *  dp: SOCK_DGRAM socketpair (both ends in the root), 5 messages queued on dp[1]:
 *      "pipe" + a pipe's read end (the pipe holds "abc"; only its write end stays open here),
 *      "file" + a regular file OUTFILE.f opened O_RDWR at offset 1234 (no other descriptor),
 *      "sock" + one end of a stream socketpair with 100 bytes queued for it (the other end
 *               stays here),
 *      "none" without descriptors,
 *      "two"  + an eventfd with count 7 and the same pipe read end again.
 *  sp: SOCK_STREAM socketpair: "hello" (no descriptors), "world" + the file again, "tail",
 *      unread on sp[1].
 *  qp: SOCK_SEQPACKET socketpair with one packet carrying the write end of a second pipe.
 * After restore: every message with its bytes and the number of descriptors; the pipe gives
 * "abc" (both copies are the same pipe), the file is at offset 1234 with its contents and
 * shares that offset with the second copy, the socket receives the 100 bytes and can answer,
 * the eventfd reads 7; the stream reads "helloworld" with the file, then "tail"; the second
 * pipe's write end still writes into the pipe whose read end stayed here. */
#include "wl.h"
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>

static void send_fds(int s, const char *data, const int *fds, int n)
{
    char cbuf[CMSG_SPACE(sizeof(int) * 4)];
    memset(cbuf, 0, sizeof cbuf);
    struct iovec iov = { .iov_base = (void *)data, .iov_len = strlen(data) };
    struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
    if (n > 0) {
        m.msg_control = cbuf;
        m.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)n);
        struct cmsghdr *h = CMSG_FIRSTHDR(&m);
        h->cmsg_level = SOL_SOCKET;
        h->cmsg_type = SCM_RIGHTS;
        h->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)n);
        memcpy(CMSG_DATA(h), fds, sizeof(int) * (size_t)n);
    }
    WL_CHECK(sendmsg(s, &m, MSG_DONTWAIT) == (ssize_t)strlen(data), "sendmsg %s", data);
}

/* Receives one message: its bytes must be `data` and it must carry `n` descriptors, put in
 * `fds`. */
static void recv_fds(int s, const char *data, int *fds, int n, const char *what)
{
    char buf[64], cbuf[CMSG_SPACE(sizeof(int) * 8)];
    struct iovec iov = { .iov_base = buf, .iov_len = sizeof buf };
    struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf };
    ssize_t r = recvmsg(s, &m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    WL_CHECK(r >= 0, "%s: recvmsg", what);
    if ((size_t)r != strlen(data) || memcmp(buf, data, (size_t)r) != 0)
        wl_fail("%s: %zd bytes '%.*s', expected '%s'", what, r, (int)(r > 0 ? r : 0), buf, data);
    int got = 0;
    for (struct cmsghdr *h = CMSG_FIRSTHDR(&m); h; h = CMSG_NXTHDR(&m, h))
        if (h->cmsg_level == SOL_SOCKET && h->cmsg_type == SCM_RIGHTS) {
            int k = (int)((h->cmsg_len - CMSG_LEN(0)) / sizeof(int));
            if (got + k <= 8)
                memcpy(fds + got, CMSG_DATA(h), sizeof(int) * (size_t)k);
            got += k;
        }
    if (got != n)
        wl_fail("%s: %d descriptors, expected %d", what, got, n);
    if (m.msg_flags & MSG_CTRUNC)
        wl_fail("%s: control data truncated", what);
}

static void same_file(int a, int b, const char *what)
{
    struct stat x, y;
    WL_CHECK(fstat(a, &x) == 0 && fstat(b, &y) == 0, "%s: fstat", what);
    if (x.st_dev != y.st_dev || x.st_ino != y.st_ino)
        wl_fail("%s: not the same file", what);
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    char fpath[4096];
    wl_path(fpath, sizeof fpath, ".f");
    int f = open(fpath, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    WL_CHECK(f >= 0, "open %s", fpath);
    char content[4096];
    for (size_t i = 0; i < sizeof content; i++)
        content[i] = (char)('a' + i % 26);
    WL_CHECK(write(f, content, sizeof content) == (ssize_t)sizeof content, "write file");
    WL_CHECK(lseek(f, 1234, SEEK_SET) == 1234, "lseek");
    int pp[2], pq[2], sv[2], dp[2], sp[2], qp[2];
    WL_CHECK(pipe2(pp, O_CLOEXEC) == 0 && write(pp[1], "abc", 3) == 3, "pipe");
    WL_CHECK(pipe2(pq, O_CLOEXEC) == 0, "pipe 2");
    WL_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0, "socketpair sv");
    WL_CHECK(write(sv[0], content, 100) == 100, "sv bytes");
    int efd = eventfd(7, EFD_CLOEXEC);
    WL_CHECK(efd >= 0, "eventfd");
    WL_CHECK(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, dp) == 0, "socketpair dp");
    WL_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) == 0, "socketpair sp");
    WL_CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, qp) == 0, "socketpair qp");

    send_fds(dp[0], "pipe", &pp[0], 1);
    send_fds(dp[0], "file", &f, 1);
    send_fds(dp[0], "sock", &sv[1], 1);
    send_fds(dp[0], "none", NULL, 0);
    int two[2] = { efd, pp[0] };
    send_fds(dp[0], "two", two, 2);
    send_fds(sp[0], "hello", NULL, 0);
    send_fds(sp[0], "world", &f, 1);
    send_fds(sp[0], "tail", NULL, 0);
    send_fds(qp[0], "wpipe", &pq[1], 1);
    /* Only in flight from now on: the pipe's read end, the file, sv[1], the eventfd, pq[1]. */
    close(pp[0]);
    close(f);
    close(sv[1]);
    close(efd);
    close(pq[1]);

    wl_ready();
    wl_wait_term();

    int got[8];
    recv_fds(dp[1], "pipe", got, 1, "dp 1");
    int rp = got[0];
    char b3[4];
    if (read(rp, b3, sizeof b3) != 3 || memcmp(b3, "abc", 3) != 0)
        wl_fail("the pipe in flight does not hold abc");
    if (write(pp[1], "z", 1) != 1 || read(rp, b3, 1) != 1 || b3[0] != 'z')
        wl_fail("the pipe in flight is not the pipe whose write end stayed");
    recv_fds(dp[1], "file", got, 1, "dp 2");
    int rf = got[0];
    if (lseek(rf, 0, SEEK_CUR) != 1234)
        wl_fail("the file in flight is at offset %ld, expected 1234", (long)lseek(rf, 0, SEEK_CUR));
    if ((fcntl(rf, F_GETFL) & O_ACCMODE) != O_RDWR)
        wl_fail("the file in flight is not open O_RDWR");
    char b10[10];
    if (read(rf, b10, 10) != 10 || memcmp(b10, content + 1234, 10) != 0)
        wl_fail("the file in flight reads other bytes");
    recv_fds(dp[1], "sock", got, 1, "dp 3");
    int rs = got[0];
    char b100[100];
    size_t n = 0;
    while (n < 100) {
        ssize_t r = recv(rs, b100 + n, 100 - n, MSG_DONTWAIT);
        WL_CHECK(r > 0, "the socket in flight: recv after %zu bytes", n);
        n += (size_t)r;
    }
    if (memcmp(b100, content, 100) != 0)
        wl_fail("the socket in flight received other bytes");
    if (write(rs, "pong", 4) != 4 || read(sv[0], b100, 4) != 4 || memcmp(b100, "pong", 4) != 0)
        wl_fail("the socket in flight is not connected to sv[0]");
    recv_fds(dp[1], "none", got, 0, "dp 4");
    recv_fds(dp[1], "two", got, 2, "dp 5");
    uint64_t v = 0;
    if (read(got[0], &v, sizeof v) != sizeof v || v != 7)
        wl_fail("the eventfd in flight reads %llu, expected 7", (unsigned long long)v);
    same_file(got[1], rp, "the second copy of the pipe in flight");
    if (recv(dp[1], b10, 1, MSG_DONTWAIT) != -1 || errno != EAGAIN)
        wl_fail("dp: more messages than queued");

    recv_fds(sp[1], "helloworld", got, 1, "sp 1");
    int rf2 = got[0];
    same_file(rf2, rf, "the file in flight on the stream");
    if (lseek(rf2, 0, SEEK_CUR) != 1244)
        wl_fail("the stream's file copy does not share the offset (at %ld, expected 1244)", (long)lseek(rf2, 0, SEEK_CUR));
    recv_fds(sp[1], "tail", got, 0, "sp 2");

    recv_fds(qp[1], "wpipe", got, 1, "qp");
    if (write(got[0], "q", 1) != 1 || read(pq[0], b3, 1) != 1 || b3[0] != 'q')
        wl_fail("the pipe write end in flight does not reach the read end that stayed");
    unlink(fpath);
    wl_pass();
}
