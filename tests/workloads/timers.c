/* timers: an ITIMER_REAL (4 s, one shot) and a POSIX timer (CLOCK_MONOTONIC, SIGEV_SIGNAL
 * SIGUSR1 with a value, first expiry 5 s then every 1 s), armed before READY so that they fire
 * after a prompt restore, plus a created-but-disarmed POSIX timer. After SIGTERM the workload waits
 * (up to 25 s after arming) for the timers, then checks when and how they fired.
 *
 * The period is checked on the timer's own schedule: each handler records when the NEXT expiry
 * is due (now + timer_gettime's remaining time), and consecutive due times must be 1 s apart.
 * The handler times themselves may be closer: an expiry that comes while the process is frozen
 * for a checkpoint is queued and handled late, like one that comes while it is not scheduled. */
#include "wl.h"
#include <sys/time.h>

static volatile int alarm_count, posix_count, posix_code, posix_value;
static volatile double alarm_at, posix_at[8], posix_due[8];
static timer_t posix_timer;

/* When the next expiry of the POSIX timer is due, on CLOCK_MONOTONIC; -1 if unreadable. Both
 * clock reads must be close together (the thread was not preempted between them). */
static double next_due(void)
{
    for (int tries = 0; tries < 5; tries++) {
        struct itimerspec cur;
        double before = wl_now(CLOCK_MONOTONIC);
        if (timer_gettime(posix_timer, &cur) != 0)
            return -1;
        double after = wl_now(CLOCK_MONOTONIC);
        if (after - before < 0.002)
            return before + (double)cur.it_value.tv_sec + (double)cur.it_value.tv_nsec / 1e9;
    }
    return -1;
}

static void on_alarm(int sig)
{
    (void)sig;
    alarm_at = wl_now(CLOCK_MONOTONIC);
    alarm_count++;
}

static void on_posix(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)uc;
    if (posix_count < 8) {
        posix_at[posix_count] = wl_now(CLOCK_MONOTONIC);
        posix_due[posix_count] = next_due();
    }
    posix_code = si->si_code;
    posix_value = si->si_value.sival_int;
    posix_count++;
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sa.sa_flags = SA_RESTART;
    WL_CHECK(sigaction(SIGALRM, &sa, NULL) == 0, "sigaction SIGALRM");
    sa.sa_sigaction = on_posix;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    WL_CHECK(sigaction(SIGUSR1, &sa, NULL) == 0, "sigaction SIGUSR1");

    timer_t posix, idle;
    struct sigevent sev;
    memset(&sev, 0, sizeof sev);
    sev.sigev_notify = SIGEV_SIGNAL;
    sev.sigev_signo = SIGUSR1;
    sev.sigev_value.sival_int = 0x1234;
    WL_CHECK(timer_create(CLOCK_MONOTONIC, &sev, &posix) == 0, "timer_create");
    posix_timer = posix;
    sev.sigev_signo = SIGUSR2;
    WL_CHECK(timer_create(CLOCK_REALTIME, &sev, &idle) == 0, "timer_create idle");

    double t0 = wl_now(CLOCK_MONOTONIC);
    struct itimerval itv = { .it_interval = { 0, 0 }, .it_value = { 4, 0 } };
    WL_CHECK(setitimer(ITIMER_REAL, &itv, NULL) == 0, "setitimer");
    struct itimerspec its = { .it_interval = { 1, 0 }, .it_value = { 5, 0 } };
    WL_CHECK(timer_settime(posix, 0, &its, NULL) == 0, "timer_settime");

    wl_ready();
    wl_wait_term();

    while ((alarm_count < 1 || posix_count < 3) && wl_now(CLOCK_MONOTONIC) < t0 + 25)
        wl_sleep_ms(20);
    if (alarm_count != 1)
        wl_fail("ITIMER_REAL fired %d times in 25 s, expected once", alarm_count);
    if (alarm_at < t0 + 4 - 0.01)
        wl_fail("ITIMER_REAL fired %.3f s after arming, earlier than its 4 s", alarm_at - t0);
    struct itimerval left;
    WL_CHECK(getitimer(ITIMER_REAL, &left) == 0, "getitimer");
    if (left.it_value.tv_sec || left.it_value.tv_usec || left.it_interval.tv_sec || left.it_interval.tv_usec)
        wl_fail("ITIMER_REAL still armed after firing");

    if (posix_count < 3)
        wl_fail("POSIX timer fired %d times in 25 s, expected at least 3", posix_count);
    if (posix_at[0] < t0 + 5 - 0.01)
        wl_fail("POSIX timer first fired %.3f s after arming, earlier than its 5 s", posix_at[0] - t0);
    for (int i = 1; i < 3; i++) {
        if (posix_due[i] < 0 || posix_due[i - 1] < 0)
            wl_fail("POSIX timer: timer_gettime in the handler failed (timer id lost?)");
        double gap = posix_due[i] - posix_due[i - 1];
        int overrun = timer_getoverrun(posix);
        if (gap < 0.99 - 0.01 && overrun == 0)
            wl_fail("POSIX timer period %.3f s (due times %.3f, %.3f), expected 1 s", gap, posix_due[i - 1],
                    posix_due[i]);
    }
    if (posix_code != SI_TIMER || posix_value != 0x1234)
        wl_fail("POSIX timer siginfo code %d value 0x%x, expected SI_TIMER (%d) 0x1234", posix_code, posix_value,
                SI_TIMER);
    struct itimerspec cur;
    if (timer_gettime(posix, &cur) != 0)
        wl_fail("timer_gettime on the POSIX timer failed: %s (timer id lost?)", strerror(errno));
    if (cur.it_interval.tv_sec != 1 || cur.it_interval.tv_nsec != 0)
        wl_fail("POSIX timer interval is %ld.%09ld, expected 1 s", (long)cur.it_interval.tv_sec,
                cur.it_interval.tv_nsec);
    if (cur.it_value.tv_sec == 0 && cur.it_value.tv_nsec == 0)
        wl_fail("POSIX timer is disarmed");
    if (timer_gettime(idle, &cur) != 0)
        wl_fail("timer_gettime on the idle timer failed: %s", strerror(errno));
    if (cur.it_value.tv_sec || cur.it_value.tv_nsec)
        wl_fail("the idle timer got armed");
    WL_CHECK(timer_delete(posix) == 0 && timer_delete(idle) == 0, "timer_delete");
    wl_pass();
}
