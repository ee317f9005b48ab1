/* vdso_glibc: dynamically linked glibc program calling clock_gettime, gettimeofday and time in a
 * busy loop through the vDSO while being checkpointed. Checks: CLOCK_MONOTONIC never goes
 * backwards; vDSO time agrees with the system-call time (a stale copied vvar page would freeze
 * it); the vDSO is mapped where AT_SYSINFO_EHDR says; glibc's rseq area is still registered with
 * the kernel (probed with an rseq(2) registration that must fail with EBUSY) and tracks the CPU;
 * every [vdso]/[vvar*] area seen before the dump is still mapped with the same bounds afterwards
 * (whatever it is called then), and at most as many areas are new as the kernel now has special
 * ones (a different kernel's vDSO block moves in next to the old one). */
#include "wl.h"
#include <sys/auxv.h>
#include <sys/rseq.h>
#include <sys/time.h>

static double raw_clock(clockid_t clock)
{
    struct timespec ts;
    syscall(SYS_clock_gettime, clock, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static unsigned long vdso_start(void)
{
    FILE *f = fopen("/proc/self/maps", "re");
    if (!f)
        return 0;
    char line[512];
    unsigned long lo = 0, found = 0;
    while (fgets(line, sizeof line, f))
        if (strstr(line, "[vdso]") && sscanf(line, "%lx-", &lo) == 1)
            found = lo;
    fclose(f);
    return found;
}

#define MAX_AREAS 256
struct area {
    unsigned long lo, hi;
    int special; /* [vdso] or [vvar*] */
};

/* The areas of /proc/self/maps into a static table (no allocation but fopen's own). */
static int read_areas(struct area *out)
{
    FILE *f = fopen("/proc/self/maps", "re");
    if (!f)
        return -1;
    char line[512];
    int n = 0;
    while (n < MAX_AREAS && fgets(line, sizeof line, f)) {
        if (sscanf(line, "%lx-%lx", &out[n].lo, &out[n].hi) != 2)
            continue;
        out[n].special = strstr(line, "[vdso]") != NULL || strstr(line, "[vvar") != NULL;
        /* The heap's end moves with malloc: not an area of interest here. */
        if (strstr(line, "[heap]"))
            continue;
        n++;
    }
    fclose(f);
    return n;
}

static int has_area(const struct area *a, int n, unsigned long lo, unsigned long hi)
{
    for (int i = 0; i < n; i++)
        if (a[i].lo == lo && a[i].hi == hi)
            return 1;
    return 0;
}

static struct area before[MAX_AREAS], after[MAX_AREAS];

static struct rseq *rseq_area(void)
{
    return (struct rseq *)((char *)__builtin_thread_pointer() + __rseq_offset);
}

/* The registration length the kernel knows (the one that makes a re-registration EBUSY). */
static int rseq_registered_len(void)
{
    for (int len = 20; len <= 256; len += 4) {
        long r = syscall(SYS_rseq, rseq_area(), len, 0, RSEQ_SIG);
        if (r == 0) {
            syscall(SYS_rseq, rseq_area(), len, RSEQ_FLAG_UNREGISTER, RSEQ_SIG);
            return 0; /* was not registered at all */
        }
        if (errno == EBUSY)
            return len;
    }
    return -1;
}

static int cpu_matches(void)
{
    for (int i = 0; i < 100; i++) {
        unsigned cpu = 0;
        syscall(SYS_getcpu, &cpu, NULL, NULL);
        if ((int)rseq_area()->cpu_id == (int)cpu)
            return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    unsigned long ehdr = getauxval(AT_SYSINFO_EHDR);
    WL_CHECK(ehdr != 0, "no AT_SYSINFO_EHDR: no vDSO");
    WL_CHECK(vdso_start() == ehdr, "[vdso] mapping at 0x%lx, AT_SYSINFO_EHDR 0x%lx", vdso_start(), ehdr);
    WL_CHECK(__rseq_size > 0, "glibc did not register rseq (__rseq_size 0; GLIBC_TUNABLES?)");
    int rseq_len = rseq_registered_len();
    WL_CHECK(rseq_len > 0, "cannot find glibc's rseq registration (probe result %d)", rseq_len);
    WL_CHECK(cpu_matches(), "rseq cpu_id %d does not follow getcpu", (int)rseq_area()->cpu_id);

    struct timespec last;
    clock_gettime(CLOCK_MONOTONIC, &last);
    long iterations = 0;
    int announced = 0, nbefore = 0;
    while (!wl_term) {
        for (int i = 0; i < 2000; i++) {
            struct timespec mono, real;
            struct timeval tv;
            clock_gettime(CLOCK_MONOTONIC, &mono);
            if (mono.tv_sec < last.tv_sec || (mono.tv_sec == last.tv_sec && mono.tv_nsec < last.tv_nsec))
                wl_fail("CLOCK_MONOTONIC went backwards: %ld.%09ld after %ld.%09ld (iteration %ld)", (long)mono.tv_sec,
                        mono.tv_nsec, (long)last.tv_sec, last.tv_nsec, iterations);
            last = mono;
            /* time() reads the seconds the timer tick last stored (CLOCK_REALTIME_COARSE), which
             * lag the precise clock by as long as a tick is late: seconds in a busy TCG guest.
             * So each is compared with a reading of its own kind taken just before it. */
            struct timespec coarse;
            clock_gettime(CLOCK_REALTIME, &real);
            clock_gettime(CLOCK_REALTIME_COARSE, &coarse);
            gettimeofday(&tv, NULL);
            time_t t = time(NULL);
            if (t < coarse.tv_sec || tv.tv_sec < real.tv_sec)
                wl_fail("time() %ld is before CLOCK_REALTIME_COARSE %ld, or gettimeofday %ld before CLOCK_REALTIME %ld",
                        (long)t, (long)coarse.tv_sec, (long)tv.tv_sec, (long)real.tv_sec);
            iterations++;
        }
        if (!announced) {
            nbefore = read_areas(before);
            WL_CHECK(nbefore > 0, "cannot read /proc/self/maps");
            wl_ready();
            announced = 1;
        }
        wl_sleep_ms(3);
    }

    /* The vDSO must read live kernel time, not a frozen copy. */
    wl_sleep_ms(50);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    wl_sleep_ms(100);
    clock_gettime(CLOCK_MONOTONIC, &b);
    double step = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
    if (step < 0.09)
        wl_fail("vDSO CLOCK_MONOTONIC advanced %.3f s over a 100 ms sleep (stale vvar?)", step);
    double vm = (double)b.tv_sec + (double)b.tv_nsec / 1e9, sm = raw_clock(CLOCK_MONOTONIC);
    if (sm - vm > 0.5 || vm - sm > 0.5)
        wl_fail("vDSO CLOCK_MONOTONIC %.3f differs from the system call's %.3f", vm, sm);
    struct timespec r;
    clock_gettime(CLOCK_REALTIME, &r);
    double vr = (double)r.tv_sec + (double)r.tv_nsec / 1e9, sr = raw_clock(CLOCK_REALTIME);
    if (sr - vr > 0.5 || vr - sr > 0.5)
        wl_fail("vDSO CLOCK_REALTIME %.3f differs from the system call's %.3f", vr, sr);

    /* glibc resolved its vDSO entry points at startup, inside the image at AT_SYSINFO_EHDR: that
     * address must still hold an executable ELF image. On the same kernel it is the [vdso]
     * itself; after a cross-kernel restore it may be a patched copy jumping into the new vDSO. */
    if (getauxval(AT_SYSINFO_EHDR) != ehdr)
        wl_fail("AT_SYSINFO_EHDR changed from 0x%lx to 0x%lx", ehdr, getauxval(AT_SYSINFO_EHDR));
    char desc[512];
    if (wl_maps_describe((void *)ehdr, 4096, desc, sizeof desc) != 0)
        wl_fail("nothing is mapped at the original vDSO address 0x%lx any more", ehdr);
    if (strncmp(desc, "r-x", 3) != 0 || memcmp((void *)ehdr, "\177ELF", 4) != 0)
        wl_fail("the original vDSO address 0x%lx holds '%s', not an executable ELF image", ehdr, desc);
    fprintf(stderr, "vdso_glibc: vDSO image at 0x%lx is '%s', [vdso] at 0x%lx\n", ehdr, desc, vdso_start());
    int nafter = read_areas(after);
    if (nafter <= 0)
        wl_fail("cannot read /proc/self/maps after the restore");
    int specials_now = 0, added = 0;
    for (int i = 0; i < nafter; i++) {
        specials_now += after[i].special;
        if (!has_area(before, nbefore, after[i].lo, after[i].hi)) {
            added++;
            fprintf(stderr, "vdso_glibc: new area %lx-%lx%s\n", after[i].lo, after[i].hi,
                    after[i].special ? " (vDSO/vvar)" : "");
        }
    }
    for (int i = 0; i < nbefore; i++)
        if (!before[i].special && !has_area(after, nafter, before[i].lo, before[i].hi))
            fprintf(stderr, "vdso_glibc: area %lx-%lx is gone or has other bounds\n", before[i].lo, before[i].hi);
    for (int i = 0; i < nbefore; i++)
        if (before[i].special && !has_area(after, nafter, before[i].lo, before[i].hi))
            wl_fail("the vDSO/vvar area %lx-%lx is no longer mapped with those bounds", before[i].lo, before[i].hi);
    if (added > specials_now)
        wl_fail("%d areas are new after the restore, more than the %d vDSO/vvar areas of this kernel", added,
                specials_now);
    long rr = syscall(SYS_rseq, rseq_area(), rseq_len, 0, RSEQ_SIG);
    if (rr == 0)
        wl_fail("rseq area is no longer registered with the kernel");
    if (errno != EBUSY)
        wl_fail("rseq re-registration probe gave %s instead of EBUSY: registered with other parameters",
                strerror(errno));
    if (!cpu_matches())
        wl_fail("rseq cpu_id %d does not follow getcpu after restore", (int)rseq_area()->cpu_id);
    fprintf(stderr, "vdso_glibc: %ld loop iterations\n", iterations);
    wl_pass();
}
