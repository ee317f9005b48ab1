/* seccomp_filter: seccomp filters per thread, the way sandboxed services hold them. With
 * no_new_privs set, the leader installs filter F1 (sysinfo fails with errno 42, installed with
 * SECCOMP_FILTER_FLAG_LOG), then starts threads B and C, which inherit it (one filter shared by
 * all three). B installs F2 for itself (uname fails with 43), the leader F3 for itself (getcpu
 * fails with 44, sysinfo with 45: the newer filter's errno wins, so the order of the filters
 * shows); C keeps F1 only. Everything else is allowed.
 *
 * After SIGTERM every thread makes the three calls (raw system calls) and must see exactly
 * its own filters' answers; each thread's /proc status says Seccomp 2 and its filter count
 * (2, 2, 1); no_new_privs is still set; and a thread started after the restore inherits the
 * leader's filters (F1 and F3). */
#include "wl.h"
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/sysinfo.h>
#include <sys/utsname.h>

#ifndef AUDIT_ARCH_X86_64
#define AUDIT_ARCH_X86_64 0xc000003eU
#endif

enum { LEADER, B, C, LATE, NTHREADS };
static volatile int check_now[NTHREADS], done[NTHREADS];
static int results[NTHREADS][3]; /* errno of sysinfo, uname, getcpu (0: succeeded) */
static volatile pid_t tids[NTHREADS];
static volatile int installed_b;

/* A filter failing nr with err and nr2 (if not -1) with err2, allowing everything else. */
static int install2(int nr, int err, int nr2, int err2, unsigned flags)
{
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)nr, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (unsigned)err),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)nr2, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (unsigned)err2),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = { .len = sizeof f / sizeof f[0], .filter = f };
    return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog);
}

static int install(int nr, int err, unsigned flags)
{
    return install2(nr, err, -1, 0, flags);
}

static int try_call(int which)
{
    struct sysinfo si;
    struct utsname u;
    unsigned cpu, node;
    long r = which == 0 ? syscall(SYS_sysinfo, &si) : which == 1 ? syscall(SYS_uname, &u) : syscall(SYS_getcpu, &cpu, &node, NULL);
    return r == 0 ? 0 : errno;
}

static void run_checks(int me)
{
    for (int i = 0; i < 3; i++)
        results[me][i] = try_call(i);
}

static void *thread_main(void *arg)
{
    int me = (int)(intptr_t)arg;
    tids[me] = (pid_t)syscall(SYS_gettid);
    if (me == B) {
        WL_CHECK(install(SYS_uname, 43, 0) == 0, "thread B: seccomp F2");
        installed_b = 1;
    }
    while (!check_now[me])
        wl_sleep_ms(5);
    run_checks(me);
    done[me] = 1;
    for (;;)
        wl_sleep_ms(100);
    return NULL;
}

static int status_int(pid_t tid, const char *key)
{
    char path[64], v[64];
    snprintf(path, sizeof path, "/proc/self/task/%d/status", (int)tid);
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    char line[256];
    int out = -1;
    size_t kl = strlen(key);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, kl) == 0 && line[kl] == ':') {
            snprintf(v, sizeof v, "%s", line + kl + 1);
            out = atoi(v);
        }
    fclose(f);
    return out;
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    WL_CHECK(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0, "PR_SET_NO_NEW_PRIVS");
    WL_CHECK(install(SYS_sysinfo, 42, SECCOMP_FILTER_FLAG_LOG) == 0, "seccomp F1");
    tids[LEADER] = getpid();
    pthread_t th;
    WL_CHECK(pthread_create(&th, NULL, thread_main, (void *)(intptr_t)B) == 0, "pthread_create B");
    WL_CHECK(pthread_create(&th, NULL, thread_main, (void *)(intptr_t)C) == 0, "pthread_create C");
    while (!installed_b || !tids[C])
        wl_sleep_ms(5);
    WL_CHECK(install2(SYS_getcpu, 44, SYS_sysinfo, 45, 0) == 0, "seccomp F3");

    wl_ready();
    wl_wait_term();

    WL_CHECK(pthread_create(&th, NULL, thread_main, (void *)(intptr_t)LATE) == 0, "pthread_create late");
    for (int t = B; t < NTHREADS; t++)
        check_now[t] = 1;
    run_checks(LEADER);
    double t0 = wl_now(CLOCK_MONOTONIC);
    while (!done[B] || !done[C] || !done[LATE]) {
        if (wl_now(CLOCK_MONOTONIC) > t0 + 10)
            wl_fail("the threads did not run their checks in 10 s");
        wl_sleep_ms(5);
    }
    static const char *names[NTHREADS] = { "leader", "B", "C", "late thread" };
    static const char *calls[3] = { "sysinfo", "uname", "getcpu" };
    /* Two filters with the same action: the newest one's errno wins (F3 over F1). */
    static const int want[NTHREADS][3] = { { 45, 0, 44 }, { 42, 43, 0 }, { 42, 0, 0 }, { 45, 0, 44 } };
    static const int filters[NTHREADS] = { 2, 2, 1, 2 };
    for (int t = 0; t < NTHREADS; t++) {
        for (int i = 0; i < 3; i++)
            if (results[t][i] != want[t][i])
                wl_fail("%s: %s gave errno %d, expected %d (its filters changed)", names[t], calls[i], results[t][i],
                        want[t][i]);
        int mode = status_int(tids[t], "Seccomp"), n = status_int(tids[t], "Seccomp_filters");
        if (mode != 2)
            wl_fail("%s: Seccomp mode %d, expected 2", names[t], mode);
        if (n >= 0 && n != filters[t])
            wl_fail("%s: %d seccomp filters, expected %d", names[t], n, filters[t]);
    }
    if (prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1)
        wl_fail("no_new_privs is no longer set");
    wl_pass();
}
