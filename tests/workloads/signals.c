/* signals: signal dispositions and pending state.
 *  SIGUSR2: SA_SIGINFO|SA_RESTART|SA_ONSTACK handler with sa_mask {SIGINT, SIGQUIT}
 *  SIGHUP: ignored;  sigaltstack: 64 KiB
 *  SIGUSR1: blocked and raised (thread-directed pending, SI_TKILL)
 *  SIGRTMIN+3: blocked and queued twice with values (process-wide pending, SI_QUEUE)
 * After SIGTERM: dispositions, mask, pending set and alternate stack are compared, then the
 * handlers actually run (on the alternate stack, with their masks, with the queued values). */
#include "wl.h"

static uint8_t altstack[64 * 1024] __attribute__((aligned(16)));

static volatile int usr2_count, usr2_on_altstack, usr2_mask_ok;
static volatile int usr1_count, usr1_code, usr1_pid;
static volatile int rt_count, rt_code[4], rt_value[4];

static void on_usr2(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)si;
    (void)uc;
    int local;
    uintptr_t a = (uintptr_t)&local;
    usr2_on_altstack = a >= (uintptr_t)altstack && a < (uintptr_t)altstack + sizeof altstack;
    sigset_t cur;
    sigprocmask(SIG_BLOCK, NULL, &cur);
    usr2_mask_ok = sigismember(&cur, SIGINT) && sigismember(&cur, SIGQUIT) && sigismember(&cur, SIGUSR2);
    usr2_count++;
}

static void on_usr1(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)uc;
    usr1_count++;
    usr1_code = si->si_code;
    usr1_pid = si->si_pid;
}

static void on_rt(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)uc;
    if (rt_count < 4) {
        rt_code[rt_count] = si->si_code;
        rt_value[rt_count] = si->si_value.sival_int;
    }
    rt_count++;
}

static void install(int sig, void (*fn)(int, siginfo_t *, void *), int flags, int mask1, int mask2)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = fn;
    sa.sa_flags = SA_SIGINFO | flags;
    sigemptyset(&sa.sa_mask);
    if (mask1)
        sigaddset(&sa.sa_mask, mask1);
    if (mask2)
        sigaddset(&sa.sa_mask, mask2);
    WL_CHECK(sigaction(sig, &sa, NULL) == 0, "sigaction %d", sig);
}

static void expect_action(int sig, void *handler, int flags, int mask1, int mask2)
{
    struct sigaction sa;
    WL_CHECK(sigaction(sig, NULL, &sa) == 0, "query sigaction %d", sig);
    void *h = (sa.sa_flags & SA_SIGINFO) ? (void *)sa.sa_sigaction : (void *)sa.sa_handler;
    if (h != handler)
        wl_fail("signal %d (%s): handler %p, expected %p", sig, strsignal(sig), h, handler);
    const int relevant = SA_SIGINFO | SA_RESTART | SA_ONSTACK | SA_NODEFER | SA_RESETHAND | SA_NOCLDSTOP;
    if ((sa.sa_flags & relevant) != flags)
        wl_fail("signal %d (%s): flags 0x%x, expected 0x%x", sig, strsignal(sig), sa.sa_flags & relevant, flags);
    for (int s = 1; s < NSIG; s++) {
        if (s == 32 || s == 33)
            continue;
        int want = s == mask1 || s == mask2;
        if (sigismember(&sa.sa_mask, s) != want)
            wl_fail("signal %d (%s): sa_mask %s signal %d", sig, strsignal(sig), want ? "lacks" : "has", s);
    }
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    int rt = SIGRTMIN + 3;
    install(SIGUSR2, on_usr2, SA_RESTART | SA_ONSTACK, SIGINT, SIGQUIT);
    install(SIGUSR1, on_usr1, 0, 0, 0);
    install(rt, on_rt, 0, 0, 0);
    struct sigaction ign;
    memset(&ign, 0, sizeof ign);
    ign.sa_handler = SIG_IGN;
    WL_CHECK(sigaction(SIGHUP, &ign, NULL) == 0, "ignore SIGHUP");
    ign.sa_handler = SIG_DFL; /* may have been inherited as ignored */
    WL_CHECK(sigaction(SIGINT, &ign, NULL) == 0, "default SIGINT");
    stack_t ss = { .ss_sp = altstack, .ss_size = sizeof altstack, .ss_flags = 0 };
    WL_CHECK(sigaltstack(&ss, NULL) == 0, "sigaltstack");

    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGUSR1);
    sigaddset(&block, rt);
    WL_CHECK(sigprocmask(SIG_BLOCK, &block, NULL) == 0, "block");
    WL_CHECK(raise(SIGUSR1) == 0, "raise SIGUSR1");
    union sigval v1 = { .sival_int = 0x1111 }, v2 = { .sival_int = 0x2222 };
    WL_CHECK(sigqueue(getpid(), rt, v1) == 0 && sigqueue(getpid(), rt, v2) == 0, "sigqueue");

    wl_ready();
    wl_wait_term();

    expect_action(SIGUSR2, (void *)on_usr2, SA_SIGINFO | SA_RESTART | SA_ONSTACK, SIGINT, SIGQUIT);
    expect_action(SIGUSR1, (void *)on_usr1, SA_SIGINFO, 0, 0);
    expect_action(rt, (void *)on_rt, SA_SIGINFO, 0, 0);
    expect_action(SIGHUP, (void *)SIG_IGN, 0, 0, 0);
    expect_action(SIGTERM, (void *)wl_on_term, 0, 0, 0);
    expect_action(SIGINT, (void *)SIG_DFL, 0, 0, 0);

    sigset_t cur, pend;
    WL_CHECK(sigprocmask(SIG_BLOCK, NULL, &cur) == 0, "sigprocmask");
    for (int s = 1; s < NSIG; s++) {
        if (s == 32 || s == 33)
            continue;
        int want = s == SIGUSR1 || s == rt;
        if (sigismember(&cur, s) != want)
            wl_fail("blocked mask %s signal %d (%s)", want ? "lacks" : "has", s, strsignal(s));
    }
    WL_CHECK(sigpending(&pend) == 0, "sigpending");
    if (!sigismember(&pend, SIGUSR1))
        wl_fail("the blocked SIGUSR1 is no longer pending");
    if (!sigismember(&pend, rt))
        wl_fail("the queued SIGRTMIN+3 is no longer pending");
    stack_t now;
    WL_CHECK(sigaltstack(NULL, &now) == 0, "query sigaltstack");
    if (now.ss_sp != altstack || now.ss_size != sizeof altstack || now.ss_flags != 0)
        wl_fail("sigaltstack is sp=%p size=%zu flags=%d, expected %p %zu 0", now.ss_sp, now.ss_size, now.ss_flags,
                (void *)altstack, sizeof altstack);

    raise(SIGHUP); /* ignored: must not kill us */
    raise(SIGUSR2);
    if (usr2_count != 1)
        wl_fail("SIGUSR2 handler ran %d times, expected 1", usr2_count);
    if (!usr2_on_altstack)
        wl_fail("SIGUSR2 handler did not run on the alternate stack");
    if (!usr2_mask_ok)
        wl_fail("SIGUSR2 handler ran without SIGINT/SIGQUIT/SIGUSR2 blocked");
    if (usr1_count != 0 || rt_count != 0)
        wl_fail("blocked signals were delivered early (usr1 %d, rt %d)", usr1_count, rt_count);

    sigprocmask(SIG_UNBLOCK, &block, NULL);
    if (usr1_count != 1)
        wl_fail("pending SIGUSR1 delivered %d times after unblocking, expected 1", usr1_count);
    if (usr1_code != SI_TKILL || usr1_pid != getpid())
        wl_fail("SIGUSR1 siginfo code %d pid %d, expected SI_TKILL (%d) from %d", usr1_code, usr1_pid, SI_TKILL,
                (int)getpid());
    if (rt_count != 2)
        wl_fail("queued SIGRTMIN+3 delivered %d times, expected 2", rt_count);
    if (rt_code[0] != SI_QUEUE || rt_code[1] != SI_QUEUE || rt_value[0] != 0x1111 || rt_value[1] != 0x2222)
        wl_fail("SIGRTMIN+3 siginfo (code %d value 0x%x), (code %d value 0x%x), expected SI_QUEUE 0x1111, 0x2222",
                rt_code[0], rt_value[0], rt_code[1], rt_value[1]);
    wl_pass();
}
