/* sigev_thread: POSIX timers with SIGEV_THREAD notification, the way glibc implements them. glibc
 * starts one helper thread (at the first such timer_create) that blocks SIGTIMER's siblings and
 * waits in sigwaitinfo for its internal SIGTIMER; each timer is a kernel timer with
 * SIGEV_THREAD_ID aimed at that helper's tid, its sigev_value pointing at glibc's own struct, and
 * every expiry makes the helper start a thread running the callback.
 *
 * Three timers: a fast periodic one (100 ms), a slow periodic one (700 ms) and a one-shot one
 * due 4 s after arming (after a prompt restore). Each callback counts its expiries and checks its
 * sigev_value. After SIGTERM the workload checks that both periodic timers fire again at their
 * rate over 2 s, that the one-shot fired exactly once and is disarmed, that a timer created
 * after the restore (glibc reuses the same helper thread, so its tid must be valid) fires, and
 * that timer_gettime/timer_delete still know every timer. */
#include "wl.h"
#include <pthread.h>
#include <stdatomic.h>

static atomic_int fast_count, slow_count, once_count, late_count, bad_value;
static volatile double once_at;

static void on_fast(union sigval v)
{
    if (v.sival_int != 101)
        atomic_store(&bad_value, v.sival_int);
    atomic_fetch_add(&fast_count, 1);
}

static void on_slow(union sigval v)
{
    if (v.sival_int != 202)
        atomic_store(&bad_value, v.sival_int);
    atomic_fetch_add(&slow_count, 1);
}

static void on_once(union sigval v)
{
    if (v.sival_int != 303)
        atomic_store(&bad_value, v.sival_int);
    once_at = wl_now(CLOCK_MONOTONIC);
    atomic_fetch_add(&once_count, 1);
}

static void on_late(union sigval v)
{
    if (v.sival_int != 404)
        atomic_store(&bad_value, v.sival_int);
    atomic_fetch_add(&late_count, 1);
}

static timer_t make(void (*fn)(union sigval), int value, clockid_t clock)
{
    struct sigevent sev;
    memset(&sev, 0, sizeof sev);
    sev.sigev_notify = SIGEV_THREAD;
    sev.sigev_notify_function = fn;
    sev.sigev_value.sival_int = value;
    timer_t t;
    WL_CHECK(timer_create(clock, &sev, &t) == 0, "timer_create SIGEV_THREAD value %d", value);
    return t;
}

static void arm(timer_t t, long value_ms, long interval_ms)
{
    struct itimerspec its = {
        .it_interval = { interval_ms / 1000, (interval_ms % 1000) * 1000000L },
        .it_value = { value_ms / 1000, (value_ms % 1000) * 1000000L },
    };
    WL_CHECK(timer_settime(t, 0, &its, NULL) == 0, "timer_settime");
}

/* Counts the threads of this process (the helper thread must still be one of them). */
static int thread_count(void)
{
    char v[64];
    if (wl_status_field(0, "Threads", v, sizeof v) != 0)
        return -1;
    return atoi(v);
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    timer_t fast = make(on_fast, 101, CLOCK_MONOTONIC);
    timer_t slow = make(on_slow, 202, CLOCK_REALTIME);
    timer_t once = make(on_once, 303, CLOCK_MONOTONIC);
    double t0 = wl_now(CLOCK_MONOTONIC);
    arm(fast, 100, 100);
    arm(slow, 700, 700);
    arm(once, 4000, 0);
    /* Let both periodic timers fire before READY: the helper thread exists and is waiting. */
    while ((atomic_load(&fast_count) < 3 || atomic_load(&slow_count) < 1) && wl_now(CLOCK_MONOTONIC) < t0 + 10)
        wl_sleep_ms(20);
    if (atomic_load(&fast_count) < 3 || atomic_load(&slow_count) < 1)
        wl_fail("before READY: fast timer fired %d times, slow %d times in 10 s", atomic_load(&fast_count),
                atomic_load(&slow_count));
    int threads_before = thread_count();
    if (threads_before < 2)
        wl_fail("before READY: %d threads, glibc's timer helper thread missing", threads_before);

    wl_ready();
    wl_wait_term();

    /* The periodic timers keep firing at their rate. */
    int f0 = atomic_load(&fast_count), s0 = atomic_load(&slow_count);
    double m0 = wl_now(CLOCK_MONOTONIC);
    while (wl_now(CLOCK_MONOTONIC) < m0 + 2.1)
        wl_sleep_ms(20);
    int df = atomic_load(&fast_count) - f0, ds = atomic_load(&slow_count) - s0;
    if (df < 10)
        wl_fail("after restore the 100 ms SIGEV_THREAD timer fired %d times in 2.1 s (expected about 21)", df);
    if (ds < 2)
        wl_fail("after restore the 700 ms SIGEV_THREAD timer fired %d times in 2.1 s (expected 3)", ds);

    /* The one-shot: exactly once, not early. */
    while (atomic_load(&once_count) < 1 && wl_now(CLOCK_MONOTONIC) < t0 + 30)
        wl_sleep_ms(20);
    if (atomic_load(&once_count) != 1)
        wl_fail("one-shot SIGEV_THREAD timer fired %d times in 30 s, expected once", atomic_load(&once_count));
    if (once_at < t0 + 4 - 0.01)
        wl_fail("one-shot timer fired %.3f s after arming, earlier than its 4 s", once_at - t0);
    struct itimerspec cur;
    WL_CHECK(timer_gettime(once, &cur) == 0, "timer_gettime one-shot (timer id lost?)");
    if (cur.it_value.tv_sec || cur.it_value.tv_nsec || cur.it_interval.tv_sec || cur.it_interval.tv_nsec)
        wl_fail("one-shot timer still armed after firing");
    WL_CHECK(timer_gettime(fast, &cur) == 0, "timer_gettime fast (timer id lost?)");
    if (cur.it_interval.tv_sec != 0 || cur.it_interval.tv_nsec != 100000000L)
        wl_fail("fast timer interval %ld.%09ld, expected 0.1 s", (long)cur.it_interval.tv_sec, cur.it_interval.tv_nsec);
    WL_CHECK(timer_gettime(slow, &cur) == 0, "timer_gettime slow (timer id lost?)");
    if (cur.it_interval.tv_sec != 0 || cur.it_interval.tv_nsec != 700000000L)
        wl_fail("slow timer interval %ld.%09ld, expected 0.7 s", (long)cur.it_interval.tv_sec, cur.it_interval.tv_nsec);

    /* A new SIGEV_THREAD timer goes to the same helper thread (its tid, remembered by glibc). */
    timer_t late = make(on_late, 404, CLOCK_MONOTONIC);
    arm(late, 50, 0);
    double l0 = wl_now(CLOCK_MONOTONIC);
    while (atomic_load(&late_count) < 1 && wl_now(CLOCK_MONOTONIC) < l0 + 5)
        wl_sleep_ms(10);
    if (atomic_load(&late_count) != 1)
        wl_fail("a SIGEV_THREAD timer created after restore fired %d times in 5 s, expected once",
                atomic_load(&late_count));
    if (atomic_load(&bad_value))
        wl_fail("a callback got sigev_value %d", atomic_load(&bad_value));
    WL_CHECK(timer_delete(fast) == 0 && timer_delete(slow) == 0, "timer_delete periodic");
    WL_CHECK(timer_delete(once) == 0 && timer_delete(late) == 0, "timer_delete");
    wl_pass();
}
