/* memory: every kind of memory area a process has, with checksummed contents.
 *  - anonymous private, anonymous shared with a forked child (sharing re-checked after restore
 *    in both directions), file-backed private with copy-on-write pages, file-backed shared
 *    (writes reach the file, also after restore), stack data, brk heap, a PROT_NONE guard
 *    area with contents, a read-only area, a sparse area with few populated pages (holes must
 *    stay unpopulated: mincore) under MADV_NOHUGEPAGE (which must still be set: VmFlags "nh"),
 *    and the /proc/self/maps line of each area. */
#include "wl.h"
#include <setjmp.h>
#include <sys/mman.h>
#include <sys/stat.h>

#define PAGE 4096UL

/* Whether the area at addr has the two-letter VmFlags flag in /proc/self/smaps. */
static int has_vmflag(const void *addr, const char *flag)
{
    FILE *f = fopen("/proc/self/smaps", "re");
    if (!f)
        return -1;
    char line[1024];
    int in = 0, found = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, ':') != line + strcspn(line, " ") - 1)
            in = (uintptr_t)addr >= lo && (uintptr_t)addr < hi;
        else if (in && strncmp(line, "VmFlags:", 8) == 0) {
            char want[8];
            snprintf(want, sizeof want, " %s", flag);
            for (char *p = line + 8; (p = strstr(p, want)) != NULL; p++)
                if (p[3] == ' ' || p[3] == '\n')
                    found = 1;
            break;
        }
    }
    fclose(f);
    return found;
}

struct area {
    const char *name;
    void *addr;
    size_t len;
    char maps[512];
};

static struct area areas[16];
static int nareas;

static void track(const char *name, void *addr, size_t len)
{
    struct area *a = &areas[nareas++];
    a->name = name;
    a->addr = addr;
    a->len = len;
}

/* Records how every area looks in /proc/self/maps once setup is complete. */
static void snapshot_maps(void)
{
    for (int i = 0; i < nareas; i++)
        WL_CHECK(wl_maps_describe(areas[i].addr, areas[i].len, areas[i].maps, sizeof areas[i].maps) == 0,
                 "no maps line for %s", areas[i].name);
}

static sigjmp_buf probe_jmp;
static volatile sig_atomic_t probing;

static void on_segv(int sig)
{
    (void)sig;
    if (probing)
        siglongjmp(probe_jmp, 1);
    _exit(3);
}

/* Returns 1 when a read (write=0) or write (write=1) of addr faults. */
static int faults(volatile uint8_t *addr, int write)
{
    probing = 1;
    if (sigsetjmp(probe_jmp, 1)) {
        probing = 0;
        return 1;
    }
    if (write)
        *addr = *addr;
    else
        (void)*addr;
    probing = 0;
    return 0;
}

static void *map(size_t len, int prot, int flags, int fd)
{
    void *p = mmap(NULL, len, prot, flags, fd, 0);
    WL_CHECK(p != MAP_FAILED, "mmap %zu bytes", len);
    return p;
}

static int make_file(const char *suffix, size_t len, uint64_t seed)
{
    char path[4096];
    wl_path(path, sizeof path, suffix);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    WL_CHECK(fd >= 0, "create %s", path);
    void *buf = malloc(len);
    wl_fill(buf, len, seed);
    WL_CHECK(pwrite(fd, buf, len, 0) == (ssize_t)len, "write %s", path);
    free(buf);
    return fd;
}

static void check_file(int fd, size_t len, const char *what, uint64_t seed_for_page(size_t page))
{
    uint8_t *buf = malloc(len);
    WL_CHECK(pread(fd, buf, len, 0) == (ssize_t)len, "read back %s", what);
    for (size_t p = 0; p < len / PAGE; p++) {
        long bad = wl_verify(buf + p * PAGE, PAGE, seed_for_page(p));
        if (bad >= 0)
            wl_fail("%s: file page %zu differs at byte %ld", what, p, bad);
    }
    free(buf);
}

#define FPRIV_PAGES 16
#define FSHARED_PAGES 16
static uint64_t fpriv_file_seed(size_t page) { return 0x5000 + page; }
static uint64_t fpriv_mem_seed(size_t page) { return page % 3 == 0 ? 0x5100 + page : 0x5000 + page; }
static uint64_t fshared_seed(size_t page) { return page % 2 == 0 ? 0x6100 + page : 0x6000 + page; }
static uint64_t fshared_after_seed(size_t page)
{
    return page == 5 ? 0x6200 : fshared_seed(page);
}

#define SPARSE_PAGES 1024
#define SPARSE_STEP 37

static void verify_page_pattern(const char *what, const uint8_t *addr, size_t pages, uint64_t seed)
{
    for (size_t p = 0; p < pages; p++) {
        long bad = wl_verify(addr + p * PAGE, PAGE, seed + p);
        if (bad >= 0)
            wl_fail("%s: page %zu (at %p) differs at byte %ld", what, p, (void *)(addr + p * PAGE), bad);
    }
}

static void fill_pages(uint8_t *addr, size_t pages, uint64_t seed)
{
    for (size_t p = 0; p < pages; p++)
        wl_fill(addr + p * PAGE, PAGE, seed + p);
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_segv;
    sigaction(SIGSEGV, &sa, NULL);

    /* Anonymous private. */
    uint8_t *anon = map(64 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1);
    fill_pages(anon, 64, 0x1000);
    track("anonymous private", anon, 64 * PAGE);

    /* Anonymous shared with a child: both halves written by different processes. */
    uint8_t *shared = map(32 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1);
    fill_pages(shared + PAGE, 15, 0x2000);
    volatile uint64_t *token = (volatile uint64_t *)shared;
    int ready_pipe[2];
    WL_CHECK(pipe(ready_pipe) == 0, "pipe");
    pid_t child = fork();
    WL_CHECK(child >= 0, "fork");
    if (child == 0) {
        wl_is_child = 1;
        close(ready_pipe[0]);
        fill_pages(shared + 16 * PAGE, 16, 0x2100);
        WL_CHECK(write(ready_pipe[1], "c", 1) == 1, "child ready");
        close(ready_pipe[1]);
        wl_wait_term();
        verify_page_pattern("shared area seen by child, parent half", shared + PAGE, 15, 0x2000);
        verify_page_pattern("shared area seen by child, child half", shared + 16 * PAGE, 16, 0x2100);
        if (token[0] != 0xC0FFEE0000000001ull)
            wl_fail("child does not see the parent's post-restore write to the shared area "
                    "(token 0x%llx): mapping no longer shared", (unsigned long long)token[0]);
        token[1] = 0xC0FFEE0000000002ull;
        wl_pass();
    }
    close(ready_pipe[1]);
    char c;
    WL_CHECK(read(ready_pipe[0], &c, 1) == 1, "wait for child");
    close(ready_pipe[0]);
    track("anonymous shared", shared, 32 * PAGE);

    /* File-backed private: every third page written (copy-on-write), file untouched. */
    int fpriv_fd = make_file(".fpriv", FPRIV_PAGES * PAGE, 0);
    for (size_t p = 0; p < FPRIV_PAGES; p++) {
        uint8_t buf[PAGE];
        wl_fill(buf, PAGE, fpriv_file_seed(p));
        WL_CHECK(pwrite(fpriv_fd, buf, PAGE, (off_t)(p * PAGE)) == (ssize_t)PAGE, "fill fpriv");
    }
    uint8_t *fpriv = map(FPRIV_PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fpriv_fd);
    close(fpriv_fd);
    for (size_t p = 0; p < FPRIV_PAGES; p += 3)
        wl_fill(fpriv + p * PAGE, PAGE, fpriv_mem_seed(p));
    track("file private", fpriv, FPRIV_PAGES * PAGE);

    /* File-backed shared: even pages written through the mapping. */
    int fshared_fd = make_file(".fshared", FSHARED_PAGES * PAGE, 0);
    for (size_t p = 0; p < FSHARED_PAGES; p++) {
        uint8_t buf[PAGE];
        wl_fill(buf, PAGE, 0x6000 + p);
        WL_CHECK(pwrite(fshared_fd, buf, PAGE, (off_t)(p * PAGE)) == (ssize_t)PAGE, "fill fshared");
    }
    uint8_t *fshared = map(FSHARED_PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fshared_fd);
    for (size_t p = 0; p < FSHARED_PAGES; p += 2)
        wl_fill(fshared + p * PAGE, PAGE, fshared_seed(p));
    track("file shared", fshared, FSHARED_PAGES * PAGE);
    /* The descriptor stays open too: used to read the file back. */

    /* Stack data. */
    uint8_t stack_data[64 * 1024];
    wl_fill(stack_data, sizeof stack_data, 0x3000);

    /* brk heap. */
    void *brk0 = sbrk(0);
    uint8_t *heap = sbrk(256 * 1024);
    WL_CHECK(heap != (void *)-1, "sbrk");
    wl_fill(heap, 256 * 1024, 0x4000);
    void *brk1 = sbrk(0);

    /* PROT_NONE guard area between two accessible pages; it has contents. */
    uint8_t *guard = map(4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1);
    fill_pages(guard, 4, 0x7000);
    WL_CHECK(mprotect(guard + PAGE, 2 * PAGE, PROT_NONE) == 0, "mprotect none");
    track("guard below", guard, PAGE);
    track("guard PROT_NONE", guard + PAGE, 2 * PAGE);
    track("guard above", guard + 3 * PAGE, PAGE);

    /* Read-only area. */
    uint8_t *ro = map(8 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1);
    fill_pages(ro, 8, 0x8000);
    WL_CHECK(mprotect(ro, 8 * PAGE, PROT_READ) == 0, "mprotect ro");
    track("read-only", ro, 8 * PAGE);

    /* Sparse: 4 MiB reserved, every 37th page touched. */
    uint8_t *sparse = map(SPARSE_PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1);
    madvise(sparse, SPARSE_PAGES * PAGE, MADV_NOHUGEPAGE);
    size_t touched = 0;
    for (size_t p = 0; p < SPARSE_PAGES; p += SPARSE_STEP, touched++)
        wl_fill(sparse + p * PAGE, PAGE, 0x9000 + p);
    track("sparse", sparse, SPARSE_PAGES * PAGE);
    unsigned char vec[SPARSE_PAGES];
    WL_CHECK(mincore(sparse, SPARSE_PAGES * PAGE, vec) == 0, "mincore");
    size_t resident = 0;
    for (size_t p = 0; p < SPARSE_PAGES; p++)
        resident += vec[p] & 1;
    WL_CHECK(resident == touched, "sparse area has %zu resident pages before dump, expected %zu", resident,
             touched);
    WL_CHECK(has_vmflag(sparse, "nh") == 1, "no 'nh' in the VmFlags of the sparse area after madvise");

    snapshot_maps();
    wl_ready();
    wl_wait_term();

    /* Layout first: every area still at its address with its protection. */
    for (int i = 0; i < nareas; i++) {
        char now[512];
        if (wl_maps_describe(areas[i].addr, areas[i].len, now, sizeof now) != 0)
            wl_fail("%s area at %p is no longer mapped", areas[i].name, areas[i].addr);
        if (strcmp(now, areas[i].maps) != 0)
            wl_fail("%s area at %p changed in /proc/self/maps: was '%s', now '%s'", areas[i].name,
                    areas[i].addr, areas[i].maps, now);
    }
    /* The advice is part of the area: without it khugepaged may fill the holes later. */
    if (has_vmflag(sparse, "nh") != 1)
        wl_fail("sparse area lost MADV_NOHUGEPAGE (no 'nh' in its VmFlags)");
    /* Holes of the sparse area must not have been populated. */
    WL_CHECK(mincore(sparse, SPARSE_PAGES * PAGE, vec) == 0, "mincore");
    resident = 0;
    for (size_t p = 0; p < SPARSE_PAGES; p++)
        resident += vec[p] & 1;
    if (resident != touched)
        wl_fail("sparse area has %zu resident pages, expected %zu (holes populated or pages lost)", resident,
                touched);

    verify_page_pattern("anonymous private", anon, 64, 0x1000);
    verify_page_pattern("anonymous shared, parent half", shared + PAGE, 15, 0x2000);
    verify_page_pattern("anonymous shared, child half", shared + 16 * PAGE, 16, 0x2100);
    for (size_t p = 0; p < FPRIV_PAGES; p++) {
        long bad = wl_verify(fpriv + p * PAGE, PAGE, fpriv_mem_seed(p));
        if (bad >= 0)
            wl_fail("file private mapping page %zu (%s) differs at byte %ld", p,
                    p % 3 == 0 ? "copy-on-write" : "file", bad);
    }
    {
        char path[4096];
        wl_path(path, sizeof path, ".fpriv");
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        WL_CHECK(fd >= 0, "open %s", path);
        check_file(fd, FPRIV_PAGES * PAGE, "file behind the private mapping (must be untouched)",
                   fpriv_file_seed);
        close(fd);
    }
    for (size_t p = 0; p < FSHARED_PAGES; p++) {
        long bad = wl_verify(fshared + p * PAGE, PAGE, fshared_seed(p));
        if (bad >= 0)
            wl_fail("file shared mapping page %zu differs at byte %ld", p, bad);
    }
    check_file(fshared_fd, FSHARED_PAGES * PAGE, "file behind the shared mapping", fshared_seed);
    /* A write through the shared mapping after restore must still reach the file. */
    wl_fill(fshared + 5 * PAGE, PAGE, 0x6200);
    check_file(fshared_fd, FSHARED_PAGES * PAGE, "file behind the shared mapping after a new write",
               fshared_after_seed);

    long bad = wl_verify(stack_data, sizeof stack_data, 0x3000);
    if (bad >= 0)
        wl_fail("stack data differs at byte %ld", bad);
    if (sbrk(0) != brk1)
        wl_fail("program break is %p, expected %p", sbrk(0), brk1);
    bad = wl_verify(heap, 256 * 1024, 0x4000);
    if (bad >= 0)
        wl_fail("brk heap differs at byte %ld", bad);
    (void)brk0;

    if (!faults(guard + PAGE, 0) || !faults(guard + 2 * PAGE + 100, 0))
        wl_fail("PROT_NONE guard area is readable");
    if (faults(guard, 1) || faults(guard + 3 * PAGE, 1))
        wl_fail("pages around the guard area are not writable");
    WL_CHECK(mprotect(guard + PAGE, 2 * PAGE, PROT_READ) == 0, "mprotect guard readable");
    verify_page_pattern("guard area (contents under PROT_NONE)", guard, 4, 0x7000);

    if (!faults(ro + 3 * PAGE, 1))
        wl_fail("read-only area is writable");
    verify_page_pattern("read-only area", ro, 8, 0x8000);

    for (size_t p = 0; p < SPARSE_PAGES; p++) {
        const uint64_t *w = (const uint64_t *)(sparse + p * PAGE);
        if (p % SPARSE_STEP == 0) {
            long b = wl_verify(w, PAGE, 0x9000 + p);
            if (b >= 0)
                wl_fail("sparse area page %zu differs at byte %ld", p, b);
        } else {
            for (size_t i = 0; i < PAGE / 8; i++)
                if (w[i] != 0)
                    wl_fail("sparse area hole page %zu is not zero", p);
        }
    }

    /* Sharing with the child, both directions, after restore. */
    token[0] = 0xC0FFEE0000000001ull;
    WL_CHECK(kill(child, SIGTERM) == 0, "signal child %d", (int)child);
    wl_expect_child_pass(child, "shared-memory child");
    if (token[1] != 0xC0FFEE0000000002ull)
        wl_fail("parent does not see the child's write to the shared area (0x%llx)",
                (unsigned long long)token[1]);
    wl_pass();
}
