/* precopy_writer: memory that keeps changing while seamless pre-copies it (argv[2] MiB of
 * anonymous memory, default 4). A writer thread rewrites random pages of several areas with a
 * checksummed pattern of (area, page, generation), about argv[3] pages a second (default
 * 16,000), and records each page's generation in a table; it also drops pages with
 * MADV_DONTNEED and reads them back (the zero page, which is not soft-dirty), replaces an area
 * in place (munmap + mmap MAP_FIXED, new contents), and grows one with mremap (moving it).
 * Areas: anonymous private (huge pages allowed), a 2 MiB-aligned MADV_HUGEPAGE area, a private
 * file mapping (copy-on-write pages), shared anonymous memory. On SIGTERM the writer stops and
 * every page of every area is checked against its table: a write that reached the process
 * after its page was copied and then missed by the frozen pass shows up as an older
 * generation. The one operation in flight at the freeze (recorded before it starts) may show
 * either state. Also the benchmark's "service that dirties a little of its memory". */
#include "wl.h"
#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>

#define PAGE 4096UL
#define NAREAS 4
#define SLOT_PAGES 16
#define GROW_MAX 64

struct area {
    const char *name;
    uint8_t *addr;
    size_t pages;
    uint32_t *gen; /* per page: 0 = zeros (dropped), else the generation written */
};

static struct area areas[NAREAS];
static _Atomic long inflight_area = -1, inflight_page = -1;
/* The area replaced in place and the one grown with mremap. */
static uint8_t *slot;
static _Atomic uint32_t slot_gen;
static _Atomic int slot_busy;
static uint8_t *grow;
static _Atomic size_t grow_pages;
static _Atomic int grow_busy;
static _Atomic uint64_t ops;
/* Pause between bursts of 16 page writes (microseconds). */
static long burst_pause_us = 1000;

static uint64_t seed_of(int area, size_t page, uint32_t gen)
{
    return ((uint64_t)area << 48) ^ ((uint64_t)page << 20) ^ gen;
}

static void fill_page(uint8_t *p, uint64_t seed)
{
    uint64_t *w = (uint64_t *)p;
    for (size_t i = 0; i < PAGE / 8; i++)
        w[i] = wl_pattern(seed, i);
}

/* -1 when the page holds the pattern of seed (or zeros for gen 0), else the word that differs. */
static long check_page(const uint8_t *p, uint64_t seed, int zero)
{
    const uint64_t *w = (const uint64_t *)p;
    for (size_t i = 0; i < PAGE / 8; i++)
        if (w[i] != (zero ? 0 : wl_pattern(seed, i)))
            return (long)i;
    return -1;
}

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void *writer(void *arg)
{
    (void)arg;
    uint32_t gen = 1;
    volatile uint8_t sink = 0;
    while (!wl_term) {
        for (int burst = 0; burst < 16 && !wl_term; burst++) {
            int a = (int)(next() % NAREAS);
            size_t pg = next() % areas[a].pages;
            uint8_t *p = areas[a].addr + pg * PAGE;
            atomic_store(&inflight_area, a);
            atomic_store(&inflight_page, (long)pg);
            atomic_signal_fence(memory_order_seq_cst);
            if (a == 0 && next() % 8 == 0) {
                /* Dropped and read back: the zero page, not soft-dirty. */
                WL_CHECK(madvise(p, PAGE, MADV_DONTNEED) == 0, "madvise DONTNEED");
                sink += p[0];
                areas[a].gen[pg] = 0;
            } else {
                gen++;
                fill_page(p, seed_of(a, pg, gen));
                areas[a].gen[pg] = gen;
            }
            atomic_signal_fence(memory_order_seq_cst);
            atomic_store(&inflight_area, -1);
            atomic_store(&inflight_page, -1);
            atomic_fetch_add(&ops, 1);
        }
        /* Replace the slot area in place with new contents. */
        atomic_store(&slot_busy, 1);
        WL_CHECK(munmap(slot, SLOT_PAGES * PAGE) == 0, "munmap slot");
        uint8_t *s = mmap(slot, SLOT_PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
        WL_CHECK(s == slot, "mmap slot again");
        uint32_t sg = atomic_load(&slot_gen) + 1;
        for (size_t i = 0; i < SLOT_PAGES; i += 2)
            fill_page(slot + i * PAGE, seed_of(7, i, sg));
        atomic_store(&slot_gen, sg);
        atomic_store(&slot_busy, 0);
        /* Grow (and move) the other one by a page, back to one page at the limit. */
        atomic_store(&grow_busy, 1);
        size_t n = atomic_load(&grow_pages);
        size_t m = n < GROW_MAX ? n + 1 : 1;
        uint8_t *g = mremap(grow, n * PAGE, m * PAGE, MREMAP_MAYMOVE);
        WL_CHECK(g != MAP_FAILED, "mremap %zu -> %zu pages", n, m);
        if (m > n)
            fill_page(g + n * PAGE, seed_of(8, n, 1));
        grow = g;
        atomic_store(&grow_pages, m);
        atomic_store(&grow_busy, 0);
        struct timespec ts = { burst_pause_us / 1000000, (burst_pause_us % 1000000) * 1000 };
        nanosleep(&ts, NULL);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    size_t mib = argc > 2 ? strtoul(argv[2], NULL, 10) : 4;
    size_t anon_pages = (mib << 20) / PAGE;
    /* argv[3]: page writes per second (about; default 16 per millisecond). */
    if (argc > 3 && atol(argv[3]) > 0)
        burst_pause_us = 16L * 1000000L / atol(argv[3]);
    /* 0: anonymous private; 1: 2 MiB-aligned MADV_HUGEPAGE; 2: private file; 3: shared anonymous. */
    uint8_t *a0 = mmap(NULL, anon_pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    WL_CHECK(a0 != MAP_FAILED, "mmap anon");
    size_t huge = 4UL << 20;
    uint8_t *raw = mmap(NULL, huge + (2UL << 20), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    WL_CHECK(raw != MAP_FAILED, "mmap huge");
    uint8_t *a1 = (uint8_t *)(((uintptr_t)raw + (2UL << 20) - 1) & ~((2UL << 20) - 1));
    madvise(a1, huge, MADV_HUGEPAGE);
    char path[4096];
    wl_path(path, sizeof path, ".fpriv");
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    WL_CHECK(fd >= 0, "open %s", path);
    size_t file_pages = 256;
    WL_CHECK(ftruncate(fd, (off_t)(file_pages * PAGE)) == 0, "ftruncate");
    uint8_t *a2 = mmap(NULL, file_pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    WL_CHECK(a2 != MAP_FAILED, "mmap file");
    close(fd);
    size_t shared_pages = 256;
    uint8_t *a3 = mmap(NULL, shared_pages * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    WL_CHECK(a3 != MAP_FAILED, "mmap shared");
    struct area init[NAREAS] = {
        { "anonymous", a0, anon_pages, NULL },
        { "huge", a1, huge / PAGE, NULL },
        { "private file", a2, file_pages, NULL },
        { "shared anonymous", a3, shared_pages, NULL },
    };
    for (int a = 0; a < NAREAS; a++) {
        areas[a] = init[a];
        areas[a].gen = calloc(areas[a].pages, sizeof(uint32_t));
        WL_CHECK(areas[a].gen != NULL, "calloc");
        /* Everything written once (the file area: every other page, the rest stays the file's zeros). */
        for (size_t p = 0; p < areas[a].pages; p += a == 2 ? 2 : 1) {
            fill_page(areas[a].addr + p * PAGE, seed_of(a, p, 1));
            areas[a].gen[p] = 1;
        }
    }
    slot = mmap(NULL, SLOT_PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    WL_CHECK(slot != MAP_FAILED, "mmap slot");
    grow = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    WL_CHECK(grow != MAP_FAILED, "mmap grow");
    fill_page(grow, seed_of(8, 0, 1));
    atomic_store(&grow_pages, 1);
    pthread_t t;
    WL_CHECK(pthread_create(&t, NULL, writer, NULL) == 0, "pthread_create");
    wl_ready();
    wl_wait_term();
    pthread_join(t, NULL);
    long ia = atomic_load(&inflight_area), ip = atomic_load(&inflight_page);
    for (int a = 0; a < NAREAS; a++)
        for (size_t p = 0; p < areas[a].pages; p++) {
            if (a == ia && (long)p == ip)
                continue;
            uint32_t g = areas[a].gen[p];
            int zero = g == 0;
            long bad = check_page(areas[a].addr + p * PAGE, seed_of(a, p, g), zero);
            WL_CHECK(bad < 0, "%s area page %zu (of %zu), generation %u: word %ld differs (%#lx)", areas[a].name, p,
                     areas[a].pages, g, bad, (unsigned long)((uint64_t *)(areas[a].addr + p * PAGE))[bad]);
        }
    if (!atomic_load(&slot_busy))
        for (size_t i = 0; i < SLOT_PAGES; i++) {
            long bad = check_page(slot + i * PAGE, seed_of(7, i, atomic_load(&slot_gen)), i % 2 == 1);
            WL_CHECK(bad < 0, "replaced area page %zu, generation %u: word %ld differs", i, atomic_load(&slot_gen), bad);
        }
    if (!atomic_load(&grow_busy))
        for (size_t i = 0; i < atomic_load(&grow_pages); i++) {
            long bad = check_page(grow + i * PAGE, seed_of(8, i, 1), 0);
            WL_CHECK(bad < 0, "grown area page %zu of %zu: word %ld differs", i, atomic_load(&grow_pages), bad);
        }
    WL_CHECK(atomic_load(&ops) > 0, "the writer never ran");
    wl_pass();
}
