/* big_mem: one large anonymous private area (default 1024 MiB, or argv[2] MiB) filled with a
 * position-dependent pattern; every word is verified after SIGTERM. With argv[3] = N, N more
 * threads keep running user code the whole time (each fills and re-verifies a buffer of its
 * own in a loop, and counts its rounds), so that a thread left in a bad state by an
 * interrupted checkpointer (registers, trap flag) shows up as a crash or a FAIL. Also used by
 * the benchmark. */
#include "wl.h"
#include <pthread.h>
#include <sys/mman.h>

#define MAX_THREADS 16
#define WORDS 4096

struct spinner {
    pthread_t thread;
    uint64_t seed;
    volatile uint64_t rounds;
    volatile long bad; /* -1: fine; otherwise the word that differed */
};

static void *spin(void *arg)
{
    struct spinner *s = arg;
    static __thread uint64_t buf[WORDS];
    while (!wl_term) {
        for (uint64_t i = 0; i < WORDS; i++)
            buf[i] = wl_pattern(s->seed + s->rounds, i);
        for (uint64_t i = 0; i < WORDS; i++)
            if (buf[i] != wl_pattern(s->seed + s->rounds, i)) {
                s->bad = (long)i;
                return NULL;
            }
        s->rounds++;
        wl_sleep_ms(1);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    size_t mib = argc > 2 ? strtoul(argv[2], NULL, 10) : 1024;
    int nthreads = argc > 3 ? atoi(argv[3]) : 0;
    WL_CHECK(nthreads >= 0 && nthreads <= MAX_THREADS, "thread count %d (0..%d)", nthreads, MAX_THREADS);
    size_t len = mib << 20;
    uint8_t *area = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    WL_CHECK(area != MAP_FAILED, "mmap %zu MiB", mib);
    wl_fill(area, len, 0xB16);
    static struct spinner spinners[MAX_THREADS];
    for (int i = 0; i < nthreads; i++) {
        spinners[i].seed = 1000u * (uint64_t)(i + 1);
        spinners[i].bad = -1;
        WL_CHECK(pthread_create(&spinners[i].thread, NULL, spin, &spinners[i]) == 0, "pthread_create %d", i);
    }
    char before[512];
    WL_CHECK(wl_maps_describe(area, len, before, sizeof before) == 0, "maps");
    wl_ready();
    wl_wait_term();
    for (int i = 0; i < nthreads; i++) {
        pthread_join(spinners[i].thread, NULL);
        if (spinners[i].bad >= 0)
            wl_fail("thread %d found word %ld of its buffer wrong in round %llu", i, spinners[i].bad,
                    (unsigned long long)spinners[i].rounds);
        if (spinners[i].rounds == 0)
            wl_fail("thread %d never completed a round", i);
    }
    char after[512];
    if (wl_maps_describe(area, len, after, sizeof after) != 0 || strcmp(before, after) != 0)
        wl_fail("the %zu MiB area at %p changed in /proc/self/maps: was '%s', now '%s'", mib, (void *)area,
                before, after);
    long bad = wl_verify(area, len, 0xB16);
    if (bad >= 0)
        wl_fail("the %zu MiB area differs at byte %ld (MiB %ld)", mib, bad, bad >> 20);
    wl_pass();
}
