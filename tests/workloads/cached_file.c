/* cached_file: a process whose data file is hot in the page cache. Writes OUTFILE.data (MiB as
 * second argument, default 64), keeps it open, reads it whole three times (the warm read time)
 * and waits. After SIGTERM: how much of the file is resident (mincore), the time of the first
 * whole read (verifying its contents), then, after dropping the file from the cache
 * (POSIX_FADV_DONTNEED), the time of a cold read. PASS when at least 99 % was resident and the
 * first read took at most 1.2 x the slowest warm read (+ 50 ms). The numbers go to stderr:
 * "cached_file: resident R %, warm MIN..MAX s, first read F s, cold read C s". */
#include "wl.h"
#include <sys/mman.h>

#define MIB (1024L * 1024L)

static uint8_t buf[MIB];

static double read_all(int fd, long mib, int verify)
{
    double t0 = wl_now(CLOCK_MONOTONIC);
    for (long i = 0; i < mib; i++) {
        ssize_t n = pread(fd, buf, MIB, i * MIB);
        if (n == -1 && errno == EINTR) {
            i--;
            continue;
        }
        WL_CHECK(n == MIB, "read of MiB %ld gave %zd", i, n);
        if (verify && wl_verify(buf, MIB, 0xCAC4E + (uint64_t)i) != -1)
            wl_fail("MiB %ld of the data file differs", i);
    }
    return wl_now(CLOCK_MONOTONIC) - t0;
}

static double resident_percent(int fd, long mib)
{
    size_t len = (size_t)(mib * MIB);
    void *p = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
    WL_CHECK(p != MAP_FAILED, "mmap of the data file");
    size_t pages = len / 4096;
    unsigned char *vec = malloc(pages);
    WL_CHECK(vec != NULL, "malloc");
    WL_CHECK(mincore(p, len, vec) == 0, "mincore");
    size_t in = 0;
    for (size_t i = 0; i < pages; i++)
        in += vec[i] & 1;
    free(vec);
    munmap(p, len);
    return 100.0 * (double)in / (double)pages;
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    long mib = argc > 2 && argv[2][0] ? atol(argv[2]) : 64;
    WL_CHECK(mib > 0 && mib <= 4096, "size %ld MiB", mib);
    char path[4096];
    wl_path(path, sizeof path, ".data");
    int w = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    WL_CHECK(w >= 0, "create %s", path);
    for (long i = 0; i < mib; i++) {
        wl_fill(buf, MIB, 0xCAC4E + (uint64_t)i);
        WL_CHECK(pwrite(w, buf, MIB, i * MIB) == MIB, "write MiB %ld", i);
    }
    WL_CHECK(fsync(w) == 0 && close(w) == 0, "fsync");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    WL_CHECK(fd >= 0, "open %s", path);
    double warm_min = 1e9, warm_max = 0;
    read_all(fd, mib, 1);
    for (int i = 0; i < 3; i++) {
        double t = read_all(fd, mib, 0);
        warm_min = t < warm_min ? t : warm_min;
        warm_max = t > warm_max ? t : warm_max;
    }
    wl_ready();
    wl_wait_term();
    double resident = resident_percent(fd, mib);
    double first = read_all(fd, mib, 0);
    read_all(fd, mib, 1);
    WL_CHECK(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) == 0, "fadvise DONTNEED");
    double cold = read_all(fd, mib, 0);
    fprintf(stderr, "cached_file: resident %.1f %%, warm %.3f..%.3f s, first read %.3f s, cold read %.3f s\n",
            resident, warm_min, warm_max, first, cold);
    if (resident < 99.0)
        wl_fail("only %.1f %% of the %ld MiB data file was in the page cache", resident, mib);
    if (first > 1.2 * warm_max + 0.05)
        wl_fail("first read %.3f s, more than 1.2 x the warm %.3f s", first, warm_max);
    wl_pass();
}
