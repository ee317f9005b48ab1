/* mq_notify: mq_notify(3) registrations on POSIX message queues, across checkpoint/restore.
 *  Q1 (named): 2 messages queued; the root registered SIGEV_SIGNAL with SIGRTMIN+3 and
 *     sigev_value 0x5eed1234 (an SA_SIGINFO handler records what arrives).
 *  Q2 (named, empty): a child registered SIGEV_NONE.
 *  Q3 (unlinked, empty): the root registered SIGEV_SIGNAL with SIGUSR1, value 77.
 * After restore: each queue's status shows the same registration (NOTIFY, SIGNO, NOTIFY_PID),
 * no notification signal arrived meanwhile (nor is one pending), Q1 still holds its two
 * messages in order; a message sent to empty Q3 raises SIGUSR1 with si_code SI_MESGQ and
 * value 77, Q1 emptied and sent to raises SIGRTMIN+3 with 0x5eed1234, and each registration is
 * gone once it fired; the child's Q2 registration is gone after its message arrives. */
#include "wl.h"
#include <mqueue.h>

static volatile sig_atomic_t got_signo, got_code, got_count;
static volatile long got_value;

static void on_note(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    got_signo = sig;
    got_code = si->si_code;
    got_value = (long)si->si_value.sival_ptr;
    got_count++;
}

static char n1[64], n2[64], n3[64];

/* NOTIFY, SIGNO, NOTIFY_PID of a queue. */
static void status(mqd_t q, int out[3])
{
    char buf[256];
    ssize_t n = pread(q, buf, sizeof buf - 1, 0);
    WL_CHECK(n > 0, "reading the queue status");
    buf[n] = 0;
    const char *f[3] = { "NOTIFY:", "SIGNO:", "NOTIFY_PID:" };
    for (int i = 0; i < 3; i++) {
        const char *p = strstr(buf, f[i]);
        if (i == 0)
            p = strstr(buf, " NOTIFY:") ? strstr(buf, " NOTIFY:") + 1 : NULL;
        WL_CHECK(p != NULL, "no %s in %s", f[i], buf);
        out[i] = atoi(p + strlen(f[i]));
    }
}

static void expect_status(mqd_t q, const char *name, int notify, int signo, int pid)
{
    int s[3];
    status(q, s);
    if (s[0] != notify || s[1] != signo || s[2] != pid)
        wl_fail("%s: NOTIFY:%d SIGNO:%d NOTIFY_PID:%d, expected %d %d %d", name, s[0], s[1], s[2], notify, signo, pid);
}

static void wait_note(int count)
{
    for (int i = 0; i < 200 && got_count < count; i++)
        wl_sleep_ms(10);
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_note;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    WL_CHECK(sigaction(SIGRTMIN + 3, &sa, NULL) == 0 && sigaction(SIGUSR1, &sa, NULL) == 0, "sigaction");
    snprintf(n1, sizeof n1, "/wl-mqn1-%d", (int)getpid());
    snprintf(n2, sizeof n2, "/wl-mqn2-%d", (int)getpid());
    snprintf(n3, sizeof n3, "/wl-mqn3-%d", (int)getpid());
    struct mq_attr attr = { .mq_maxmsg = 8, .mq_msgsize = 64 };
    mqd_t q1 = mq_open(n1, O_CREAT | O_EXCL | O_RDWR | O_NONBLOCK | O_CLOEXEC, 0600, &attr);
    mqd_t q2 = mq_open(n2, O_CREAT | O_EXCL | O_RDWR | O_NONBLOCK | O_CLOEXEC, 0600, &attr);
    mqd_t q3 = mq_open(n3, O_CREAT | O_EXCL | O_RDWR | O_NONBLOCK | O_CLOEXEC, 0600, &attr);
    WL_CHECK(q1 >= 0 && q2 >= 0 && q3 >= 0, "mq_open");
    WL_CHECK(mq_unlink(n3) == 0, "mq_unlink %s", n3);
    WL_CHECK(mq_send(q1, "first", 5, 3) == 0 && mq_send(q1, "second", 6, 1) == 0, "mq_send Q1");
    struct sigevent e1 = { .sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGRTMIN + 3 };
    e1.sigev_value.sival_ptr = (void *)0x5eed1234L;
    struct sigevent e3 = { .sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGUSR1 };
    e3.sigev_value.sival_ptr = (void *)77L;
    WL_CHECK(mq_notify(q1, &e1) == 0 && mq_notify(q3, &e3) == 0, "mq_notify");

    int go[2];
    WL_CHECK(pipe2(go, O_CLOEXEC) == 0, "pipe");
    pid_t child = fork();
    WL_CHECK(child >= 0, "fork");
    if (child == 0) {
        wl_is_child = 1;
        struct sigevent en = { .sigev_notify = SIGEV_NONE };
        WL_CHECK(mq_notify(q2, &en) == 0, "child: mq_notify");
        WL_CHECK(write(go[1], "k", 1) == 1, "child: report");
        wl_wait_term();
        expect_status(q2, "Q2 in the child", SIGEV_NONE, 0, (int)getpid());
        WL_CHECK(mq_send(q2, "n", 1, 0) == 0, "child: mq_send Q2");
        expect_status(q2, "Q2 after its message", 0, 0, 0);
        char b[64];
        WL_CHECK(mq_receive(q2, b, sizeof b, NULL) == 1, "child: mq_receive Q2");
        wl_pass();
    }
    char k;
    WL_CHECK(read(go[0], &k, 1) == 1, "child did not register");
    expect_status(q1, "Q1", SIGEV_SIGNAL, SIGRTMIN + 3, (int)getpid());
    expect_status(q2, "Q2", SIGEV_NONE, 0, (int)child);
    expect_status(q3, "Q3", SIGEV_SIGNAL, SIGUSR1, (int)getpid());

    wl_ready();
    wl_wait_term();

    expect_status(q1, "Q1", SIGEV_SIGNAL, SIGRTMIN + 3, (int)getpid());
    expect_status(q2, "Q2", SIGEV_NONE, 0, (int)child);
    expect_status(q3, "Q3", SIGEV_SIGNAL, SIGUSR1, (int)getpid());
    sigset_t pend;
    WL_CHECK(sigpending(&pend) == 0, "sigpending");
    if (got_count != 0 || sigismember(&pend, SIGUSR1) || sigismember(&pend, SIGRTMIN + 3))
        wl_fail("a notification arrived (%d, signal %d value %#lx) or is pending without a message", (int)got_count,
                (int)got_signo, (long)got_value);
    struct mq_attr a;
    WL_CHECK(mq_getattr(q1, &a) == 0, "mq_getattr");
    if (a.mq_curmsgs != 2 || a.mq_maxmsg != 8 || a.mq_msgsize != 64)
        wl_fail("Q1 holds %ld messages (max %ld, size %ld)", a.mq_curmsgs, a.mq_maxmsg, a.mq_msgsize);

    WL_CHECK(mq_send(q3, "three", 5, 0) == 0, "mq_send Q3");
    wait_note(1);
    if (got_count != 1 || got_signo != SIGUSR1 || got_code != SI_MESGQ || got_value != 77)
        wl_fail("Q3 notification: %d signal(s), signal %d code %d value %ld, expected SIGUSR1 SI_MESGQ 77",
                (int)got_count, (int)got_signo, (int)got_code, (long)got_value);
    expect_status(q3, "Q3 after it fired", 0, 0, 0);

    char b[64];
    unsigned prio;
    if (mq_receive(q1, b, sizeof b, &prio) != 5 || memcmp(b, "first", 5) != 0 || prio != 3 ||
        mq_receive(q1, b, sizeof b, &prio) != 6 || memcmp(b, "second", 6) != 0 || prio != 1)
        wl_fail("Q1 messages changed");
    if (got_count != 1)
        wl_fail("receiving from Q1 raised a notification");
    WL_CHECK(mq_send(q1, "again", 5, 0) == 0, "mq_send Q1");
    wait_note(2);
    if (got_count != 2 || got_signo != SIGRTMIN + 3 || got_code != SI_MESGQ || got_value != 0x5eed1234L)
        wl_fail("Q1 notification: %d signal(s), signal %d code %d value %#lx, expected %d SI_MESGQ 0x5eed1234",
                (int)got_count, (int)got_signo, (int)got_code, (long)got_value, SIGRTMIN + 3);
    expect_status(q1, "Q1 after it fired", 0, 0, 0);

    WL_CHECK(kill(child, SIGTERM) == 0, "signal child");
    wl_expect_child_pass(child, "mq_notify child");
    mq_unlink(n1);
    mq_unlink(n2);
    wl_pass();
}
