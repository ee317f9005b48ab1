/* anonfds: anonymous-inode descriptors.
 *  an eventfd with counter 5 (non-blocking), a semaphore eventfd with counter 3,
 *  a timerfd (CLOCK_MONOTONIC, first expiry 3 s, then every 1 s),
 *  a signalfd for SIGUSR1 with a raised SIGUSR1 pending,
 *  an epoll instance watching the first eventfd (data 0xE1) and the timerfd (data 0x71).
 * After SIGTERM: epoll reports the eventfd, counters and semaphore semantics are intact, the timer
 * keeps its period and expires no earlier than 3 s after arming, the signalfd delivers SIGUSR1. */
#include "wl.h"
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    int efd = eventfd(5, EFD_NONBLOCK | EFD_CLOEXEC);
    int sem = eventfd(3, EFD_SEMAPHORE | EFD_NONBLOCK);
    WL_CHECK(efd >= 0 && sem >= 0, "eventfd");
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
    WL_CHECK(tfd >= 0, "timerfd_create");
    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    WL_CHECK(sigprocmask(SIG_BLOCK, &usr1, NULL) == 0, "block SIGUSR1");
    int sfd = signalfd(-1, &usr1, SFD_NONBLOCK);
    WL_CHECK(sfd >= 0, "signalfd");
    WL_CHECK(raise(SIGUSR1) == 0, "raise");
    int ep = epoll_create1(0);
    WL_CHECK(ep >= 0, "epoll_create1");
    struct epoll_event ev = { .events = EPOLLIN, .data.u64 = 0xE1 };
    WL_CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, efd, &ev) == 0, "epoll_ctl eventfd");
    ev.data.u64 = 0x71;
    WL_CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev) == 0, "epoll_ctl timerfd");
    double t0 = wl_now(CLOCK_MONOTONIC);
    struct itimerspec its = { .it_interval = { 1, 0 }, .it_value = { 3, 0 } };
    WL_CHECK(timerfd_settime(tfd, 0, &its, NULL) == 0, "timerfd_settime");

    wl_ready();
    wl_wait_term();

    struct epoll_event out[4];
    int n = epoll_wait(ep, out, 4, 0);
    int saw_efd = 0;
    for (int i = 0; i < n; i++)
        saw_efd |= out[i].data.u64 == 0xE1 && (out[i].events & EPOLLIN);
    if (!saw_efd)
        wl_fail("epoll_wait returned %d events without the ready eventfd (data 0xE1)", n);
    uint64_t v = 0;
    if (read(efd, &v, 8) != 8 || v != 5)
        wl_fail("eventfd read %llu, expected 5 (%s)", (unsigned long long)v, strerror(errno));
    if (read(efd, &v, 8) != -1 || errno != EAGAIN)
        wl_fail("eventfd not empty/non-blocking after reading its counter");
    for (int i = 0; i < 3; i++)
        if (read(sem, &v, 8) != 8 || v != 1)
            wl_fail("semaphore eventfd read %d gave %llu, expected 1 (EFD_SEMAPHORE lost?)", i,
                    (unsigned long long)v);
    if (read(sem, &v, 8) != -1 || errno != EAGAIN)
        wl_fail("semaphore eventfd had more than 3");

    struct itimerspec cur;
    WL_CHECK(timerfd_gettime(tfd, &cur) == 0, "timerfd_gettime");
    if (cur.it_interval.tv_sec != 1 || cur.it_interval.tv_nsec != 0)
        wl_fail("timerfd interval %ld.%09ld, expected 1 s", (long)cur.it_interval.tv_sec, cur.it_interval.tv_nsec);
    uint64_t expirations = 0;
    ssize_t r = read(tfd, &expirations, 8); /* blocks until the first expiry */
    double at = wl_now(CLOCK_MONOTONIC);
    if (r != 8 || expirations < 1)
        wl_fail("timerfd read returned %zd (%llu expirations)", r, (unsigned long long)expirations);
    if (at < t0 + 3 - 0.01)
        wl_fail("timerfd expired %.3f s after arming, before its 3 s", at - t0);

    struct signalfd_siginfo si;
    if (read(sfd, &si, sizeof si) != sizeof si)
        wl_fail("signalfd has no pending SIGUSR1 (%s)", strerror(errno));
    if (si.ssi_signo != SIGUSR1 || si.ssi_code != SI_TKILL || (pid_t)si.ssi_pid != getpid())
        wl_fail("signalfd delivered signo %u code %d pid %u, expected SIGUSR1 SI_TKILL %d", si.ssi_signo,
                si.ssi_code, si.ssi_pid, (int)getpid());
    wl_pass();
}
