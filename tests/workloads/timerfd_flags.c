/* timerfd_flags: timerfd settime flags across checkpoint/restore.
 *  t1: CLOCK_REALTIME, TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET, an hour ahead (the usual
 *      way to hear of wall-clock changes).
 *  t2: CLOCK_MONOTONIC, TFD_TIMER_ABSTIME, 4 s ahead, no interval.
 *  t3: CLOCK_BOOTTIME, relative, expired once and unread, 100 s interval.
 *  t4: CLOCK_REALTIME, disarmed after an absolute setting with TFD_TIMER_CANCEL_ON_SET.
 * After restore: each one's clock and settime flags as /proc/self/fdinfo shows them
 * (t1 and t4 03, t2 01, t3 0), t1's time left within its hour, t2 expires within 4 s from its
 * setting (a blocking read returns 1), t3 reads its unread expiration, t4 stays disarmed. */
#include "wl.h"
#include <sys/timerfd.h>

static void fdinfo_flags(int fd, int *clock, unsigned *flags)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
    int f = open(path, O_RDONLY | O_CLOEXEC);
    WL_CHECK(f >= 0, "open %s", path);
    ssize_t n = read(f, buf, sizeof buf - 1);
    close(f);
    WL_CHECK(n > 0, "read %s", path);
    buf[n] = 0;
    const char *c = strstr(buf, "clockid:"), *s = strstr(buf, "settime flags:");
    WL_CHECK(c && s, "fdinfo of fd %d: %s", fd, buf);
    *clock = atoi(c + 8);
    *flags = (unsigned)strtoul(s + 14, NULL, 8);
}

static void expect_flags(int fd, const char *name, int clock, unsigned flags)
{
    int c;
    unsigned f;
    fdinfo_flags(fd, &c, &f);
    if (c != clock || f != flags)
        wl_fail("%s: clockid %d settime flags %o, expected %d and %o", name, c, f, clock, flags);
}

static double left(int fd)
{
    struct itimerspec its;
    WL_CHECK(timerfd_gettime(fd, &its) == 0, "timerfd_gettime");
    return (double)its.it_value.tv_sec + its.it_value.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    struct timespec now;
    int t1 = timerfd_create(CLOCK_REALTIME, TFD_CLOEXEC);
    int t2 = timerfd_create(CLOCK_MONOTONIC, 0);
    int t3 = timerfd_create(CLOCK_BOOTTIME, TFD_NONBLOCK | TFD_CLOEXEC);
    int t4 = timerfd_create(CLOCK_REALTIME, 0);
    WL_CHECK(t1 >= 0 && t2 >= 0 && t3 >= 0 && t4 >= 0, "timerfd_create");
    WL_CHECK(clock_gettime(CLOCK_REALTIME, &now) == 0, "clock_gettime");
    struct itimerspec a = { .it_value = { now.tv_sec + 3600, now.tv_nsec } };
    WL_CHECK(timerfd_settime(t1, TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET, &a, NULL) == 0, "arm t1");
    WL_CHECK(timerfd_settime(t4, TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET, &a, NULL) == 0, "arm t4");
    struct itimerspec off = { { 0, 0 }, { 0, 0 } };
    WL_CHECK(timerfd_settime(t4, TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET, &off, NULL) == 0, "disarm t4");
    struct timespec mono;
    WL_CHECK(clock_gettime(CLOCK_MONOTONIC, &mono) == 0, "clock_gettime");
    struct itimerspec b = { .it_value = { mono.tv_sec + 4, mono.tv_nsec } };
    WL_CHECK(timerfd_settime(t2, TFD_TIMER_ABSTIME, &b, NULL) == 0, "arm t2");
    struct itimerspec c = { .it_interval = { 100, 0 }, .it_value = { 0, 1000000 } };
    WL_CHECK(timerfd_settime(t3, 0, &c, NULL) == 0, "arm t3");
    wl_sleep_ms(20);
    expect_flags(t1, "t1", CLOCK_REALTIME, 03);
    expect_flags(t2, "t2", CLOCK_MONOTONIC, 01);
    expect_flags(t3, "t3", CLOCK_BOOTTIME, 0);
    expect_flags(t4, "t4", CLOCK_REALTIME, 03);

    wl_ready();
    wl_wait_term();

    expect_flags(t1, "t1", CLOCK_REALTIME, 03);
    expect_flags(t2, "t2", CLOCK_MONOTONIC, 01);
    expect_flags(t3, "t3", CLOCK_BOOTTIME, 0);
    expect_flags(t4, "t4", CLOCK_REALTIME, 03);
    double l1 = left(t1);
    if (l1 <= 3000 || l1 > 3600)
        wl_fail("t1 has %.3f s left, expected within its hour", l1);
    if (left(t4) != 0)
        wl_fail("t4 was armed again: %.3f s left", left(t4));
    double l2 = left(t2);
    if (l2 > 4.0)
        wl_fail("t2 has %.3f s left, more than the 4 s it was set to", l2);
    uint64_t ticks = 0;
    WL_CHECK(read(t2, &ticks, sizeof ticks) == sizeof ticks, "read t2");
    if (ticks != 1)
        wl_fail("t2 expired %llu times, expected once", (unsigned long long)ticks);
    if (read(t3, &ticks, sizeof ticks) != sizeof ticks || ticks != 1)
        wl_fail("t3: the unread expiration is gone (errno %d)", errno);
    wl_pass();
}
