/* cow_fork [MIB]: copy-on-write sharing between a parent and its forked children. The root fills
 * a MIB MiB (default 16, at least 16) private anonymous area (blocks of 1 MiB, a position-dependent
 * pattern), forks 4
 * children and then rewrites block 0 itself; child i rewrites block i+1 and child 0 also drops
 * block 10 with MADV_DONTNEED (it must read zeros there, the others the pattern). Every other
 * page is still shared by all five processes.
 *
 * After SIGTERM the root first measures the anonymous memory of the five processes (Pss_Anon
 * of /proc/PID/smaps_rollup, summed): with the sharing intact it is about MIB + 8 MiB; five
 * separate copies would be 5 x MIB, and more than 2 x MIB fails (for 64 MiB: about 72 MiB,
 * 320 MiB, 128 MiB). Then each child checks every
 * word of the area against what it must hold, and the root does the same for its own view. */
#include "wl.h"
#include <sys/mman.h>

#define BLOCK (1UL << 20)
static int BLOCKS = 16;
#define KIDS 4
#define ORIGINAL 1
#define PARENT_SEED 100
#define KID_SEED 200

static uint64_t *area;

static void fill_block(int b, uint64_t seed)
{
    uint64_t *w = area + (size_t)b * (BLOCK / 8);
    for (size_t i = 0; i < BLOCK / 8; i++)
        w[i] = wl_pattern(seed, (size_t)b * (BLOCK / 8) + i);
}

/* What block b holds for `who` (-1 = the root, 0..KIDS-1 = a child): 0 for zeros, else the seed. */
static uint64_t seed_of(int who, int b)
{
    if (b == 0)
        return who < 0 ? PARENT_SEED : ORIGINAL;
    if (b >= 1 && b <= KIDS && who == b - 1)
        return KID_SEED + (uint64_t)who;
    if (b == 10 && who == 0)
        return 0;
    return ORIGINAL;
}

static void verify(int who)
{
    for (int b = 0; b < BLOCKS; b++) {
        uint64_t seed = seed_of(who, b);
        const uint64_t *w = area + (size_t)b * (BLOCK / 8);
        for (size_t i = 0; i < BLOCK / 8; i++) {
            uint64_t want = seed ? wl_pattern(seed, (size_t)b * (BLOCK / 8) + i) : 0;
            if (w[i] != want)
                wl_fail("%s %d: block %d word %zu is %#llx, expected %#llx (seed %llu)", who < 0 ? "root" : "child",
                        who, b, i, (unsigned long long)w[i], (unsigned long long)want, (unsigned long long)seed);
        }
    }
}

/* Pss_Anon of a process in kB, -1 when unreadable. */
static long pss_anon(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/smaps_rollup", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "Pss_Anon: %ld kB", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    if (argc > 2)
        BLOCKS = atoi(argv[2]);
    if (BLOCKS < 16 || BLOCKS > 4096)
        wl_fail("area of %d MiB: 16 to 4096 allowed", BLOCKS);
    area = mmap(NULL, BLOCKS * BLOCK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    WL_CHECK(area != MAP_FAILED, "mmap %d MiB", BLOCKS);
    /* 4 KiB pages only: a huge page would be split and copied whole by the first write. */
    WL_CHECK(madvise(area, BLOCKS * BLOCK, MADV_NOHUGEPAGE) == 0, "madvise NOHUGEPAGE");
    for (int b = 0; b < BLOCKS; b++)
        fill_block(b, ORIGINAL);
    pid_t kids[KIDS];
    int ready[2];
    WL_CHECK(pipe(ready) == 0, "pipe");
    for (int i = 0; i < KIDS; i++) {
        pid_t k = fork();
        WL_CHECK(k >= 0, "fork");
        if (k == 0) {
            wl_is_child = 1;
            close(ready[0]);
            fill_block(i + 1, KID_SEED + (uint64_t)i);
            if (i == 0)
                WL_CHECK(madvise(area + 10 * (BLOCK / 8), BLOCK, MADV_DONTNEED) == 0, "MADV_DONTNEED");
            char c = 'k';
            WL_CHECK(write(ready[1], &c, 1) == 1, "ready byte");
            close(ready[1]);
            wl_wait_term();
            verify(i);
            wl_pass();
        }
        kids[i] = k;
    }
    close(ready[1]);
    for (int i = 0; i < KIDS; i++) {
        char c;
        WL_CHECK(read(ready[0], &c, 1) == 1, "child %d not ready", i);
    }
    close(ready[0]);
    fill_block(0, PARENT_SEED);
    long before = pss_anon(getpid());
    for (int i = 0; i < KIDS; i++)
        before += pss_anon(kids[i]);
    fprintf(stderr, "cow_fork: Pss_Anon of the five processes before READY: %ld kB\n", before);

    wl_ready();
    wl_wait_term();

    long total = pss_anon(getpid()), each[KIDS];
    for (int i = 0; i < KIDS; i++) {
        each[i] = pss_anon(kids[i]);
        if (each[i] < 0)
            wl_fail("cannot read Pss_Anon of child %d", (int)kids[i]);
        total += each[i];
    }
    fprintf(stderr, "cow_fork: Pss_Anon now: %ld kB (root %ld, children %ld %ld %ld %ld)\n", total, pss_anon(getpid()),
            each[0], each[1], each[2], each[3]);
    for (int i = 0; i < KIDS; i++)
        kill(kids[i], SIGTERM);
    for (int i = 0; i < KIDS; i++) {
        int st;
        WL_CHECK(waitpid(kids[i], &st, 0) == kids[i], "waitpid %d", (int)kids[i]);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            char path[4096], why[512] = "no reason";
            snprintf(path, sizeof path, "%s.fail.%d", wl_outfile, (int)kids[i]);
            FILE *f = fopen(path, "re");
            if (f) {
                if (!fgets(why, sizeof why, f))
                    snprintf(why, sizeof why, "empty reason");
                why[strcspn(why, "\n")] = 0;
                fclose(f);
            }
            wl_fail("child %d failed (status %#x): %s", (int)kids[i], st, why);
        }
    }
    verify(-1);
    if (total > 2L * BLOCKS * 1024)
        wl_fail("the five processes hold %ld kB of anonymous memory (Pss_Anon), more than twice the %d MiB area: "
                "it is no longer shared copy-on-write (before READY: %ld kB)",
                total, BLOCKS, before);
    wl_pass();
}
