/* sched_attrs: scheduling and process attributes, per thread and per process.
 *
 *  root R, 5 threads (leader + 4), each with its own name (PR_SET_NAME):
 *    leader   SCHED_OTHER, nice 3, I/O priority best-effort 6, affinity {CPU 0} (when the
 *             machine has more than one CPU)
 *    t-batch  SCHED_BATCH, nice 5, I/O priority idle
 *    t-idle   SCHED_IDLE
 *    t-fifo   SCHED_FIFO priority 10 | SCHED_RESET_ON_FORK, nice -4
 *    t-rr     SCHED_RR priority 20, affinity {last CPU}, I/O priority best-effort 1
 *  R is a child subreaper.
 *  child G: a process group leader (sleeps); child Z: joined G's group, then exited with code
 *    7 and is left a zombie (its group and session must be G's and R's, not R's group).
 *  child C (one thread): parent-death signal SIGUSR2 (never fires: R outlives it), not
 *    dumpable, securebits KEEP_CAPS | NOROOT | NO_CAP_AMBIENT_RAISE, uids 1300 with
 *    effective = permitted = {NET_BIND_SERVICE, KILL, SETPCAP, DAC_OVERRIDE (to write its
 *    marker and failure files)}, inheritable
 *    {NET_BIND_SERVICE}, ambient {NET_BIND_SERVICE}, bounding set without SYS_MODULE.
 *
 * After SIGTERM, R reads every thread's attributes from outside (sched_getscheduler,
 * sched_getparam, getpriority, sched_getaffinity, ioprio_get, /proc/self/task/TID/comm) and
 * C checks its own (getresuid, capget, PR_CAP_AMBIENT_IS_SET for every capability,
 * PR_GET_SECUREBITS, PR_CAPBSET_READ, PR_GET_PDEATHSIG, PR_GET_DUMPABLE). */
#include "wl.h"
#include <linux/capability.h>
#include <pthread.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/resource.h>

#define NT 5
struct want {
    const char *name;
    int policy;
    int prio;
    int nice;
    int ioprio;
    int cpu; /* -1: all CPUs, -2: the last CPU */
};
static struct want wants[NT] = {
    { "sa-leader", SCHED_OTHER, 0, 3, (2 << 13) | 6, 0 },
    { "t-batch", SCHED_BATCH, 0, 5, (3 << 13), -1 },
    { "t-idle", SCHED_IDLE, 0, 0, 0, -1 },
    { "t-fifo", SCHED_FIFO | SCHED_RESET_ON_FORK, 10, -4, 0, -1 },
    { "t-rr", SCHED_RR, 20, 0, (2 << 13) | 1, -2 },
};
static pid_t tids[NT];
static volatile int started;
static int ncpu;

static int cpu_of(int c) { return c == -2 ? ncpu - 1 : c; }

static void setup_self(int i)
{
    struct want *w = &wants[i];
    tids[i] = (pid_t)syscall(SYS_gettid);
    WL_CHECK(prctl(PR_SET_NAME, w->name, 0, 0, 0) == 0, "PR_SET_NAME %s", w->name);
    struct sched_param sp = { .sched_priority = w->prio };
    WL_CHECK(sched_setscheduler(0, w->policy, &sp) == 0, "sched_setscheduler %s", w->name);
    WL_CHECK(setpriority(PRIO_PROCESS, 0, w->nice) == 0, "setpriority %s", w->name);
    if (w->ioprio)
        WL_CHECK(syscall(SYS_ioprio_set, 1, 0, w->ioprio) == 0, "ioprio_set %s", w->name);
    if (w->cpu != -1 && ncpu > 1) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpu_of(w->cpu), &set);
        WL_CHECK(sched_setaffinity(0, sizeof set, &set) == 0, "sched_setaffinity %s", w->name);
    }
}

static void *thread_main(void *arg)
{
    setup_self((int)(intptr_t)arg);
    __atomic_add_fetch(&started, 1, __ATOMIC_SEQ_CST);
    for (;;)
        wl_sleep_ms(20);
    return NULL;
}

/* Fields 3 (state), 5 (pgrp) and 6 (session) of /proc/PID/stat. */
static void stat_of(pid_t pid, char *state, int *pgrp, int *sid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "re");
    WL_CHECK(f && fgets(buf, sizeof buf, f), "read %s", path);
    fclose(f);
    char *p = strrchr(buf, ')');
    WL_CHECK(p && sscanf(p + 2, "%c %*d %d %d", state, pgrp, sid) == 3, "parse %s", path);
}

static void check_thread(int i)
{
    struct want *w = &wants[i];
    pid_t tid = tids[i];
    int policy = sched_getscheduler(tid);
    struct sched_param sp;
    WL_CHECK(policy >= 0 && sched_getparam(tid, &sp) == 0, "sched_getscheduler %d", tid);
    if (policy != w->policy || sp.sched_priority != w->prio)
        wl_fail("thread %s (%d): policy %#x priority %d, expected %#x %d", w->name, tid, policy, sp.sched_priority,
                w->policy, w->prio);
    errno = 0;
    int nice = getpriority(PRIO_PROCESS, tid);
    if (nice != w->nice || errno)
        wl_fail("thread %s (%d): nice %d, expected %d", w->name, tid, nice, w->nice);
    int io = (int)syscall(SYS_ioprio_get, 1, tid);
    if (io != w->ioprio)
        wl_fail("thread %s (%d): I/O priority %#x, expected %#x", w->name, tid, io, w->ioprio);
    cpu_set_t set;
    WL_CHECK(sched_getaffinity(tid, sizeof set, &set) == 0, "sched_getaffinity %d", tid);
    int want_count = (w->cpu == -1 || ncpu == 1) ? ncpu : 1;
    if (CPU_COUNT(&set) != want_count || (want_count == 1 && !CPU_ISSET(cpu_of(w->cpu == -1 ? 0 : w->cpu), &set)))
        wl_fail("thread %s (%d): affinity has %d CPUs (CPU %d in it: %d), expected %d", w->name, tid, CPU_COUNT(&set),
                cpu_of(w->cpu), CPU_ISSET(cpu_of(w->cpu < 0 && w->cpu != -2 ? 0 : w->cpu), &set), want_count);
    char path[128], comm[64] = "";
    snprintf(path, sizeof path, "/proc/self/task/%d/comm", tid);
    FILE *f = fopen(path, "re");
    WL_CHECK(f && fgets(comm, sizeof comm, f), "read %s", path);
    fclose(f);
    comm[strcspn(comm, "\n")] = 0;
    if (strcmp(comm, w->name) != 0)
        wl_fail("thread %d: name %s, expected %s", tid, comm, w->name);
}

#define SECBITS ((1 << 4) | (1 << 0) | (1 << 6)) /* KEEP_CAPS | NOROOT | NO_CAP_AMBIENT_RAISE */
#define CAPS ((1ull << CAP_NET_BIND_SERVICE) | (1ull << CAP_KILL) | (1ull << CAP_SETPCAP) | (1ull << CAP_DAC_OVERRIDE))

static void caps_get(uint64_t *eff, uint64_t *prm, uint64_t *inh)
{
    struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct d[2];
    WL_CHECK(syscall(SYS_capget, &h, d) == 0, "capget");
    *eff = d[0].effective | (uint64_t)d[1].effective << 32;
    *prm = d[0].permitted | (uint64_t)d[1].permitted << 32;
    *inh = d[0].inheritable | (uint64_t)d[1].inheritable << 32;
}

static void child_main(void)
{
    wl_is_child = 1;
    signal(SIGTERM, wl_on_term);
    WL_CHECK(prctl(PR_CAPBSET_DROP, CAP_SYS_MODULE, 0, 0, 0) == 0, "PR_CAPBSET_DROP");
    /* The bounding set as it is now (the machine's may lack more than SYS_MODULE). */
    int bounding[CAP_LAST_CAP + 1];
    for (int c = 0; c <= CAP_LAST_CAP; c++)
        bounding[c] = prctl(PR_CAPBSET_READ, c, 0, 0, 0);
    WL_CHECK(prctl(PR_SET_SECUREBITS, (1 << 4) | (1 << 0), 0, 0, 0) == 0, "PR_SET_SECUREBITS");
    WL_CHECK(syscall(SYS_setresuid, 1300, 1300, 1300) == 0, "setresuid");
    struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct d[2] = { { (uint32_t)CAPS, (uint32_t)CAPS, 1u << CAP_NET_BIND_SERVICE }, { 0, 0, 0 } };
    WL_CHECK(syscall(SYS_capset, &h, d) == 0, "capset");
    WL_CHECK(prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_NET_BIND_SERVICE, 0, 0) == 0, "ambient raise");
    WL_CHECK(prctl(PR_SET_SECUREBITS, SECBITS, 0, 0, 0) == 0, "PR_SET_SECUREBITS all");
    WL_CHECK(prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == 0, "PR_SET_DUMPABLE");
    /* After the credentials: changing them clears the parent-death signal. */
    WL_CHECK(prctl(PR_SET_PDEATHSIG, SIGUSR2, 0, 0, 0) == 0, "PR_SET_PDEATHSIG");
    char path[4096];
    wl_path(path, sizeof path, ".child");
    WL_CHECK(wl_write_file(path, "up\n") == 0, "child marker");
    wl_wait_term();
    uid_t r, e, s;
    WL_CHECK(getresuid(&r, &e, &s) == 0, "getresuid");
    if (r != 1300 || e != 1300 || s != 1300)
        wl_fail("uids %d %d %d, expected 1300", r, e, s);
    uint64_t eff, prm, inh;
    caps_get(&eff, &prm, &inh);
    if (eff != CAPS || prm != CAPS || inh != (1ull << CAP_NET_BIND_SERVICE))
        wl_fail("capabilities eff %#llx prm %#llx inh %#llx, expected %#llx %#llx %#llx", (unsigned long long)eff,
                (unsigned long long)prm, (unsigned long long)inh, (unsigned long long)CAPS, (unsigned long long)CAPS,
                1ull << CAP_NET_BIND_SERVICE);
    for (int c = 0; c <= CAP_LAST_CAP; c++) {
        int amb = prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, c, 0, 0);
        if (amb != (c == CAP_NET_BIND_SERVICE))
            wl_fail("ambient capability %d is %d", c, amb);
        int bnd = prctl(PR_CAPBSET_READ, c, 0, 0, 0);
        if (bnd != bounding[c] || (c == CAP_SYS_MODULE && bnd != 0))
            wl_fail("bounding capability %d is %d, expected %d", c, bnd, bounding[c]);
    }
    int bits = prctl(PR_GET_SECUREBITS, 0, 0, 0, 0);
    if (bits != SECBITS)
        wl_fail("securebits %#x, expected %#x", bits, SECBITS);
    int sig = 0;
    WL_CHECK(prctl(PR_GET_PDEATHSIG, &sig, 0, 0, 0) == 0, "PR_GET_PDEATHSIG");
    if (sig != SIGUSR2)
        wl_fail("parent-death signal %d, expected %d", sig, SIGUSR2);
    int dumpable = prctl(PR_GET_DUMPABLE, 0, 0, 0, 0);
    if (dumpable != 0)
        wl_fail("dumpable %d, expected 0", dumpable);
    _exit(0);
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    ncpu = (int)sysconf(_SC_NPROCESSORS_ONLN);
    cpu_set_t all;
    WL_CHECK(sched_getaffinity(0, sizeof all, &all) == 0 && CPU_COUNT(&all) == ncpu,
             "the workload must start with every CPU allowed");
    WL_CHECK(prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0, "PR_SET_CHILD_SUBREAPER");
    char marker[4096];
    wl_path(marker, sizeof marker, ".child");
    unlink(marker);
    pid_t child = fork();
    WL_CHECK(child >= 0, "fork");
    if (child == 0)
        child_main();
    pid_t g = fork();
    WL_CHECK(g >= 0, "fork G");
    if (g == 0) {
        wl_is_child = 1;
        setpgid(0, 0);
        for (;;)
            pause();
    }
    WL_CHECK(setpgid(g, g) == 0, "setpgid G");
    pid_t z = fork();
    WL_CHECK(z >= 0, "fork Z");
    if (z == 0) {
        wl_is_child = 1;
        if (setpgid(0, g) != 0)
            _exit(99);
        _exit(7);
    }
    char zs = 0;
    int zpgrp = 0, zsid = 0;
    for (int i = 0; i < 500 && zs != 'Z'; i++) {
        stat_of(z, &zs, &zpgrp, &zsid);
        if (zs != 'Z')
            wl_sleep_ms(10);
    }
    WL_CHECK(zs == 'Z' && zpgrp == g, "zombie Z: state %c group %d (G %d)", zs, zpgrp, g);
    for (int i = 1; i < NT; i++) {
        pthread_t t;
        WL_CHECK(pthread_create(&t, NULL, thread_main, (void *)(intptr_t)i) == 0, "pthread_create");
    }
    while (__atomic_load_n(&started, __ATOMIC_SEQ_CST) < NT - 1)
        wl_sleep_ms(5);
    setup_self(0);
    for (int i = 0; i < 500 && access(marker, F_OK) != 0; i++)
        wl_sleep_ms(10);
    WL_CHECK(access(marker, F_OK) == 0, "child did not start");
    wl_ready();
    wl_wait_term();
    for (int i = 0; i < NT; i++)
        check_thread(i);
    int sub = 0;
    WL_CHECK(prctl(PR_GET_CHILD_SUBREAPER, &sub, 0, 0, 0) == 0 && sub == 1, "child subreaper %d", sub);
    stat_of(z, &zs, &zpgrp, &zsid);
    if (zs != 'Z' || zpgrp != g || zsid != getsid(0))
        wl_fail("zombie %d: state %c group %d session %d, expected Z %d %d", z, zs, zpgrp, zsid, g, getsid(0));
    int st = wl_wait_child(z);
    if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 7)
        wl_fail("zombie %d: wait status %#x, expected exit code 7", z, st);
    WL_CHECK(kill(g, SIGKILL) == 0, "kill G");
    wl_wait_child(g);
    WL_CHECK(kill(child, SIGTERM) == 0, "kill child");
    wl_expect_child_pass(child, "child");
    wl_pass();
}
