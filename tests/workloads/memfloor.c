/* memfloor: not a workload. The benchmark's floor: how fast this machine can populate fresh
 * anonymous memory (mmap MAP_POPULATE) and copy into it (memcpy). argv[1] = MiB (default 1024),
 * argv[2] = repetitions (default 3). Prints one line for the best repetition:
 * "populate_memcpy_mib_s <value> populate_s <s> memcpy_s <s>" (every repetition on stderr). */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 1024;
    size_t len = mib << 20;
    uint8_t *src = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (src == MAP_FAILED) {
        perror("mmap source");
        return 1;
    }
    for (size_t i = 0; i < len; i += 4096)
        src[i] = (uint8_t)(i >> 12);
    int reps = argc > 2 ? atoi(argv[2]) : 3;
    double best = 0, best_pop = 0, best_copy = 0;
    unsigned sum = 0;
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        uint8_t *dst = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
        if (dst == MAP_FAILED) {
            perror("mmap destination");
            return 1;
        }
        double t1 = now();
        memcpy(dst, src, len);
        double t2 = now();
        for (size_t i = 0; i < len; i += 4096)
            sum += dst[i];
        double rate = (double)mib / (t2 - t0);
        fprintf(stderr, "repetition %d: %.1f MiB/s (populate %.4f s, memcpy %.4f s)\n", r + 1, rate, t1 - t0, t2 - t1);
        if (rate > best) {
            best = rate;
            best_pop = t1 - t0;
            best_copy = t2 - t1;
        }
        munmap(dst, len);
    }
    printf("populate_memcpy_mib_s %.1f populate_s %.4f memcpy_s %.4f checksum %u\n", best, best_pop, best_copy, sum);
    return 0;
}
