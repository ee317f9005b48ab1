/* posix_mq: POSIX message queues across checkpoint/restore.
 *  A: /wl-mq-PID-a, mode 0640, maxmsg 8, msgsize 128, messages (1 "one") (5 "five-a")
 *     (5 "five-b") (0 "") (31 128 bytes); opened read-write (fd qa, shared with a child by
 *     fork), write-only non-blocking (fd qw, its own description), and dup'ed (fd qd, same
 *     description as qa).
 *  B: /wl-mq-PID-b, maxmsg 3, msgsize 16, one message (2 "ghost"), unlinked while open,
 *     non-blocking.
 * After restore: attributes of each descriptor (flags, maxmsg, msgsize, count), mode and
 * owner; A is reached by its name, B is not; the child sends (7 "from child") on the shared
 * descriptor; every message comes back by priority, in order within a priority, with its
 * text, then EAGAIN; close-on-exec flags (mq_open sets it, the dup has not). A is unlinked at the end. */
#include "wl.h"
#include <mqueue.h>
#include <sys/stat.h>

static char name_a[64], name_b[64];

static void check_attr(mqd_t q, long flags, long maxmsg, long msgsize, long cur, const char *what)
{
    struct mq_attr a;
    WL_CHECK(mq_getattr(q, &a) == 0, "%s: mq_getattr", what);
    if (a.mq_flags != flags || a.mq_maxmsg != maxmsg || a.mq_msgsize != msgsize || a.mq_curmsgs != cur)
        wl_fail("%s: flags %#lx maxmsg %ld msgsize %ld curmsgs %ld, expected %#lx %ld %ld %ld", what, a.mq_flags,
                a.mq_maxmsg, a.mq_msgsize, a.mq_curmsgs, flags, maxmsg, msgsize, cur);
}

static void expect_msg(mqd_t q, unsigned prio, const char *text, size_t len, const char *what)
{
    char buf[256];
    unsigned p = 99;
    ssize_t n = mq_receive(q, buf, sizeof buf, &p);
    if (n < 0)
        wl_fail("%s: mq_receive failed (errno %d), expected priority %u", what, errno, prio);
    if ((size_t)n != len || p != prio || memcmp(buf, text, len) != 0)
        wl_fail("%s: got priority %u, %zd bytes, expected priority %u, %zu bytes", what, p, n, prio, len);
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    snprintf(name_a, sizeof name_a, "/wl-mq-%d-a", (int)getpid());
    snprintf(name_b, sizeof name_b, "/wl-mq-%d-b", (int)getpid());
    mode_t old = umask(0);
    struct mq_attr at = { .mq_maxmsg = 8, .mq_msgsize = 128 };
    mqd_t qa = mq_open(name_a, O_CREAT | O_EXCL | O_RDWR, 0640, &at);
    WL_CHECK(qa != (mqd_t)-1, "mq_open A");
    mqd_t qw = mq_open(name_a, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
    WL_CHECK(qw != (mqd_t)-1, "mq_open A write-only");
    mqd_t qd = dup(qa);
    WL_CHECK(qd >= 0, "dup A");
    static char big[128];
    for (int i = 0; i < 128; i++)
        big[i] = (char)(i * 13 + 1);
    WL_CHECK(mq_send(qa, "one", 3, 1) == 0, "send 1");
    WL_CHECK(mq_send(qw, "five-a", 6, 5) == 0, "send 2");
    WL_CHECK(mq_send(qd, "five-b", 6, 5) == 0, "send 3");
    WL_CHECK(mq_send(qa, "", 0, 0) == 0, "send 4");
    WL_CHECK(mq_send(qw, big, 128, 31) == 0, "send 5");
    struct mq_attr bt = { .mq_maxmsg = 3, .mq_msgsize = 16 };
    mqd_t qb = mq_open(name_b, O_CREAT | O_EXCL | O_RDWR | O_NONBLOCK, 0600, &bt);
    WL_CHECK(qb != (mqd_t)-1, "mq_open B");
    WL_CHECK(mq_send(qb, "ghost", 5, 2) == 0, "send B");
    WL_CHECK(mq_unlink(name_b) == 0, "mq_unlink B");
    umask(old);

    pid_t child = fork();
    WL_CHECK(child >= 0, "fork");
    if (child == 0) {
        wl_is_child = 1;
        wl_wait_term();
        check_attr(qa, 0, 8, 128, 5, "child: A");
        WL_CHECK(mq_send(qa, "from child", 10, 7) == 0, "child: send");
        wl_pass();
    }

    wl_ready();
    wl_wait_term();

    check_attr(qa, 0, 8, 128, 5, "A read-write");
    check_attr(qw, O_NONBLOCK, 8, 128, 5, "A write-only");
    check_attr(qd, 0, 8, 128, 5, "A dup");
    check_attr(qb, O_NONBLOCK, 3, 16, 1, "B");
    struct stat st;
    WL_CHECK(fstat(qa, &st) == 0, "fstat A");
    if ((st.st_mode & 07777) != 0640 || st.st_uid != getuid() || st.st_gid != getgid())
        wl_fail("A: mode %o owner %u:%u, expected 640 and %u:%u", st.st_mode & 07777, st.st_uid, st.st_gid, getuid(),
                getgid());
    WL_CHECK(fstat(qb, &st) == 0, "fstat B");
    if ((st.st_mode & 07777) != 0600 || st.st_nlink != 0)
        wl_fail("B: mode %o links %lu, expected 600 and unlinked", st.st_mode & 07777, (unsigned long)st.st_nlink);
    /* mq_open(3) always sets close-on-exec; the dup does not have it. */
    if ((fcntl(qw, F_GETFD) & FD_CLOEXEC) == 0 || (fcntl(qa, F_GETFD) & FD_CLOEXEC) == 0 ||
        (fcntl(qd, F_GETFD) & FD_CLOEXEC) != 0)
        wl_fail("close-on-exec flags of the queue descriptors changed");
    if (mq_open(name_b, O_RDONLY) != (mqd_t)-1 || errno != ENOENT)
        wl_fail("B is reachable by its name again");
    mqd_t again = mq_open(name_a, O_RDONLY | O_NONBLOCK);
    WL_CHECK(again != (mqd_t)-1, "A by name");
    check_attr(again, O_NONBLOCK, 8, 128, 5, "A by name");
    mq_close(again);

    WL_CHECK(kill(child, SIGTERM) == 0, "signal child");
    wl_expect_child_pass(child, "queue child");
    expect_msg(qa, 31, big, 128, "A message 1");
    expect_msg(qa, 7, "from child", 10, "A message 2");
    expect_msg(qd, 5, "five-a", 6, "A message 3");
    expect_msg(qa, 5, "five-b", 6, "A message 4");
    expect_msg(qa, 1, "one", 3, "A message 5");
    expect_msg(qa, 0, "", 0, "A message 6");
    WL_CHECK(mq_setattr(qa, &(struct mq_attr){ .mq_flags = O_NONBLOCK }, NULL) == 0, "A non-blocking");
    char buf[256];
    if (mq_receive(qa, buf, sizeof buf, NULL) != -1 || errno != EAGAIN)
        wl_fail("A has more messages than were sent");
    expect_msg(qb, 2, "ghost", 5, "B message");
    if (mq_send(qb, "x", 1, 0) != 0)
        wl_fail("B cannot take a message (errno %d)", errno);
    mq_unlink(name_a);
    wl_pass();
}
