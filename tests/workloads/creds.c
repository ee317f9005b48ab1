/* creds: process attributes beyond memory and files. Started as root, it drops to
 * uids 1200/1201/1202 (real/effective/saved), gids 1100/1101/1102, groups {1001,1002,1003},
 * keeps CAP_KILL and CAP_NET_BIND_SERVICE (effective+permitted, CAP_KILL also inheritable), drops
 * CAP_SYS_MODULE from the bounding set, sets no_new_privs, dumpable, a parent-death signal,
 * rlimits (NOFILE 777/888, STACK 4 MiB/unlimited, CORE 0/1234), nice 7, personality
 * ADDR_NO_RANDOMIZE and comm "wl-creds". After SIGTERM all of them are compared, and the
 * parent-death signal must never have fired (the runner, its parent, stays alive). The run
 * directory is made world-writable first so the unprivileged process can write its verdict. */
#include "wl.h"
#include <grp.h>
#include <libgen.h>
#include <linux/capability.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>

#define KEEP_EFF ((1u << CAP_KILL) | (1u << CAP_NET_BIND_SERVICE))
#define KEEP_INH (1u << CAP_KILL)

static volatile int pdeath_count;
static void on_pdeath(int sig)
{
    (void)sig;
    pdeath_count++;
}

struct caps {
    uint64_t eff, perm, inh;
};

static struct caps get_caps(void)
{
    struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
    struct __user_cap_data_struct d[2];
    memset(d, 0, sizeof d);
    WL_CHECK(syscall(SYS_capget, &h, d) == 0, "capget");
    struct caps c = { d[0].effective | (uint64_t)d[1].effective << 32,
                      d[0].permitted | (uint64_t)d[1].permitted << 32,
                      d[0].inheritable | (uint64_t)d[1].inheritable << 32 };
    return c;
}

static void set_caps(uint32_t eff, uint32_t perm, uint32_t inh)
{
    struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
    struct __user_cap_data_struct d[2];
    memset(d, 0, sizeof d);
    d[0].effective = eff;
    d[0].permitted = perm;
    d[0].inheritable = inh;
    WL_CHECK(syscall(SYS_capset, &h, d) == 0, "capset");
}

struct limit {
    int res;
    const char *name;
    rlim_t soft, hard;
};

static const struct limit limits[] = {
    { RLIMIT_NOFILE, "NOFILE", 777, 888 },
    { RLIMIT_STACK, "STACK", 4 << 20, RLIM_INFINITY },
    { RLIMIT_CORE, "CORE", 0, 1234 },
};

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    WL_CHECK(geteuid() == 0, "the creds workload must start as root");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", wl_outfile);
    WL_CHECK(chmod(dirname(dir), 01777) == 0, "chmod run directory");

    for (size_t i = 0; i < sizeof limits / sizeof limits[0]; i++) {
        struct rlimit rl = { limits[i].soft, limits[i].hard };
        WL_CHECK(setrlimit(limits[i].res, &rl) == 0, "setrlimit %s", limits[i].name);
    }
    WL_CHECK(setpriority(PRIO_PROCESS, 0, 7) == 0, "setpriority");
    WL_CHECK(personality(PER_LINUX | ADDR_NO_RANDOMIZE) != -1, "personality");
    WL_CHECK(prctl(PR_SET_NAME, "wl-creds", 0, 0, 0) == 0, "PR_SET_NAME");
    WL_CHECK(prctl(PR_CAPBSET_DROP, CAP_SYS_MODULE, 0, 0, 0) == 0, "PR_CAPBSET_DROP");
    WL_CHECK(prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) == 0, "PR_SET_KEEPCAPS");
    gid_t groups[] = { 1001, 1002, 1003 };
    WL_CHECK(setgroups(3, groups) == 0, "setgroups");
    WL_CHECK(setresgid(1100, 1101, 1102) == 0, "setresgid");
    WL_CHECK(setresuid(1200, 1201, 1202) == 0, "setresuid");
    set_caps(KEEP_EFF, KEEP_EFF, KEEP_INH);
    WL_CHECK(prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) == 0, "PR_SET_KEEPCAPS off");
    WL_CHECK(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0, "PR_SET_NO_NEW_PRIVS");
    WL_CHECK(prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) == 0, "PR_SET_DUMPABLE");
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_pdeath;
    sa.sa_flags = SA_RESTART;
    WL_CHECK(sigaction(SIGUSR2, &sa, NULL) == 0, "sigaction SIGUSR2");
    WL_CHECK(prctl(PR_SET_PDEATHSIG, SIGUSR2, 0, 0, 0) == 0, "PR_SET_PDEATHSIG");
    char bnd_before[64];
    WL_CHECK(wl_status_field(0, "CapBnd", bnd_before, sizeof bnd_before) == 0, "CapBnd");

    pid_t parent_at_start = getppid();
    wl_ready();
    wl_wait_term();

    uid_t r, e, s;
    gid_t rg, eg, sg;
    WL_CHECK(getresuid(&r, &e, &s) == 0 && getresgid(&rg, &eg, &sg) == 0, "getres[ug]id");
    if (r != 1200 || e != 1201 || s != 1202)
        wl_fail("uids are %u/%u/%u, expected 1200/1201/1202", r, e, s);
    if (rg != 1100 || eg != 1101 || sg != 1102)
        wl_fail("gids are %u/%u/%u, expected 1100/1101/1102", rg, eg, sg);
    char fsuid[64];
    WL_CHECK(wl_status_field(0, "Uid", fsuid, sizeof fsuid) == 0, "Uid line");
    if (strcmp(fsuid, "1200\t1201\t1202\t1201") != 0)
        wl_fail("/proc/self/status Uid is '%s', expected fsuid 1201 too", fsuid);
    gid_t now[16];
    int n = getgroups(16, now);
    if (n != 3 || now[0] != 1001 || now[1] != 1002 || now[2] != 1003)
        wl_fail("supplementary groups: %d entries (%u %u %u...), expected 1001 1002 1003", n, n > 0 ? now[0] : 0,
                n > 1 ? now[1] : 0, n > 2 ? now[2] : 0);
    struct caps c = get_caps();
    if (c.eff != KEEP_EFF || c.perm != KEEP_EFF || c.inh != KEEP_INH)
        wl_fail("capabilities eff 0x%llx perm 0x%llx inh 0x%llx, expected 0x%x 0x%x 0x%x", (unsigned long long)c.eff,
                (unsigned long long)c.perm, (unsigned long long)c.inh, KEEP_EFF, KEEP_EFF, KEEP_INH);
    char bnd[64];
    WL_CHECK(wl_status_field(0, "CapBnd", bnd, sizeof bnd) == 0, "CapBnd");
    if (strcmp(bnd, bnd_before) != 0)
        wl_fail("bounding set is %s, expected %s (CAP_SYS_MODULE dropped)", bnd, bnd_before);
    if (prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1)
        wl_fail("no_new_privs is not set");
    if (prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 1)
        wl_fail("dumpable is %d, expected 1", prctl(PR_GET_DUMPABLE, 0, 0, 0, 0));
    for (size_t i = 0; i < sizeof limits / sizeof limits[0]; i++) {
        struct rlimit rl;
        WL_CHECK(getrlimit(limits[i].res, &rl) == 0, "getrlimit");
        if (rl.rlim_cur != limits[i].soft || rl.rlim_max != limits[i].hard)
            wl_fail("RLIMIT_%s is %llu/%llu, expected %llu/%llu", limits[i].name, (unsigned long long)rl.rlim_cur,
                    (unsigned long long)rl.rlim_max, (unsigned long long)limits[i].soft,
                    (unsigned long long)limits[i].hard);
    }
    errno = 0;
    int nice_now = getpriority(PRIO_PROCESS, 0);
    if (nice_now != 7)
        wl_fail("nice value is %d, expected 7", nice_now);
    int pers = personality(0xffffffff);
    if (pers != (PER_LINUX | ADDR_NO_RANDOMIZE))
        wl_fail("personality is 0x%x, expected 0x%x", pers, PER_LINUX | ADDR_NO_RANDOMIZE);
    char comm[32] = "";
    prctl(PR_GET_NAME, comm, 0, 0, 0);
    if (strcmp(comm, "wl-creds") != 0)
        wl_fail("comm is '%s', expected 'wl-creds'", comm);
    int pdeath = 0;
    prctl(PR_GET_PDEATHSIG, &pdeath, 0, 0, 0);
    /* A restored tree root gets a new parent (the restorer, then a subreaper): then the
       parent-death signal, which would fire when that stand-in parent exits, is cleared. */
    int want = getppid() == parent_at_start ? SIGUSR2 : 0;
    if (pdeath != want)
        wl_fail("parent-death signal is %d, expected %d (parent %d, was %d)", pdeath, want, getppid(),
                parent_at_start);
    if (pdeath_count)
        wl_fail("the parent-death signal was delivered %d times although the parent (the runner) never died",
                pdeath_count);
    wl_pass();
}
