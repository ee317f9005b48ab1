/* timerfd_signalfd: timerfds and a signalfd across checkpoint/restore.
 *  t1: CLOCK_MONOTONIC, first expiry 4 s after setup, then every 1 s: must not fire early
 *      (relative to when it was armed) and must keep its interval.
 *  t2: CLOCK_MONOTONIC non-blocking, expired once before the dump and not read: 1 tick pending.
 *  t3: created, never armed: stays disarmed.
 *  t4: CLOCK_REALTIME, 100 s then every 7 s: remaining time <= 100 s and close to it, interval 7 s.
 *  sfd: signalfd for SIGUSR1|SIGUSR2 (both blocked), non-blocking; SIGUSR2 pending at the dump,
 *       read through sfd after restore; SIGUSR1 sent after restore is read too (mask kept). */
#include "wl.h"
#include <sys/signalfd.h>
#include <sys/timerfd.h>

static double ts_sec(struct timespec t) { return (double)t.tv_sec + (double)t.tv_nsec / 1e9; }

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGUSR2);
    WL_CHECK(sigprocmask(SIG_BLOCK, &set, NULL) == 0, "sigprocmask");
    int sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    WL_CHECK(sfd >= 0, "signalfd");

    int t1 = timerfd_create(CLOCK_MONOTONIC, 0);
    int t2 = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    int t3 = timerfd_create(CLOCK_BOOTTIME, 0);
    int t4 = timerfd_create(CLOCK_REALTIME, TFD_CLOEXEC);
    WL_CHECK(t1 >= 0 && t2 >= 0 && t3 >= 0 && t4 >= 0, "timerfd_create");
    double armed = wl_now(CLOCK_MONOTONIC);
    struct itimerspec its = { .it_value = { 4, 0 }, .it_interval = { 1, 0 } };
    WL_CHECK(timerfd_settime(t1, 0, &its, NULL) == 0, "arm t1");
    its = (struct itimerspec){ .it_value = { 0, 10 * 1000 * 1000 } };
    WL_CHECK(timerfd_settime(t2, 0, &its, NULL) == 0, "arm t2");
    its = (struct itimerspec){ .it_value = { 100, 0 }, .it_interval = { 7, 0 } };
    WL_CHECK(timerfd_settime(t4, 0, &its, NULL) == 0, "arm t4");
    wl_sleep_ms(50);
    WL_CHECK(kill(getpid(), SIGUSR2) == 0, "raise SIGUSR2");

    wl_ready();
    wl_wait_term();

    /* Signals: SIGUSR2 pending from before, SIGUSR1 sent now. */
    struct signalfd_siginfo si;
    ssize_t n = read(sfd, &si, sizeof si);
    WL_CHECK(n == sizeof si, "read signalfd (pending SIGUSR2)");
    if (si.ssi_signo != SIGUSR2)
        wl_fail("signalfd delivered signal %u, expected SIGUSR2", si.ssi_signo);
    if (read(sfd, &si, sizeof si) != -1 || errno != EAGAIN)
        wl_fail("signalfd not empty / not non-blocking after the pending signal");
    WL_CHECK(kill(getpid(), SIGUSR1) == 0, "raise SIGUSR1");
    WL_CHECK(read(sfd, &si, sizeof si) == sizeof si, "read signalfd (SIGUSR1)");
    if (si.ssi_signo != SIGUSR1)
        wl_fail("signalfd delivered %u, expected SIGUSR1 (mask lost?)", si.ssi_signo);

    /* t2: one pending expiry. */
    uint64_t ticks = 0;
    WL_CHECK(read(t2, &ticks, 8) == 8, "read t2");
    if (ticks != 1)
        wl_fail("t2 has %llu expirations, expected 1", (unsigned long long)ticks);
    if (read(t2, &ticks, 8) != -1 || errno != EAGAIN)
        wl_fail("t2 fired again or lost O_NONBLOCK");

    /* t3 disarmed, t4 remaining/interval. */
    struct itimerspec cur;
    WL_CHECK(timerfd_gettime(t3, &cur) == 0, "gettime t3");
    if (cur.it_value.tv_sec || cur.it_value.tv_nsec || cur.it_interval.tv_sec)
        wl_fail("t3 is armed (%.3f s)", ts_sec(cur.it_value));
    WL_CHECK(timerfd_gettime(t4, &cur) == 0, "gettime t4");
    double left = ts_sec(cur.it_value);
    double since = wl_now(CLOCK_MONOTONIC) - armed;
    if (left > 100.0 || left < 100.0 - since - 5.0 || cur.it_interval.tv_sec != 7 || cur.it_interval.tv_nsec)
        wl_fail("t4 remaining %.3f s interval %ld.%09ld, expected <= 100 - %.1f and 7 s", left,
                (long)cur.it_interval.tv_sec, (long)cur.it_interval.tv_nsec, since);
    if (fcntl(t4, F_GETFD) != FD_CLOEXEC || fcntl(t1, F_GETFD) != 0)
        wl_fail("timerfd close-on-exec flags changed");

    /* t1: blocking read; the first expiry is not earlier than 4 s after arming. */
    WL_CHECK(timerfd_gettime(t1, &cur) == 0, "gettime t1");
    if (cur.it_interval.tv_sec != 1)
        wl_fail("t1 interval %ld s, expected 1", (long)cur.it_interval.tv_sec);
    for (;;) {
        n = read(t1, &ticks, 8);
        if (n == 8)
            break;
        WL_CHECK(n < 0 && errno == EINTR, "read t1");
    }
    double fired = wl_now(CLOCK_MONOTONIC) - armed;
    if (fired < 3.95)
        wl_fail("t1 fired %.3f s after arming, expected >= 4 s", fired);
    /* Then two expiries in a row, read as they come: they are an interval (1 s) apart. (The
     * first read above may have returned expirations that were pending at the dump, and the
     * next expiry then comes whenever the timer's phase says, so only the gap between two
     * later expiries measures the interval.) */
    uint64_t more = 0;
    WL_CHECK(read(t1, &more, 8) == 8, "read t1 again");
    double second = wl_now(CLOCK_MONOTONIC) - armed;
    WL_CHECK(read(t1, &more, 8) == 8, "read t1 a third time");
    double third = wl_now(CLOCK_MONOTONIC) - armed;
    if (third - second < 0.5 && more == 1)
        wl_fail("t1 interval too short: %.3f s", third - second);
    wl_pass();
}
