/* memfloor: not a workload. The benchmark's floor: how fast this machine can populate fresh
 * anonymous memory (mmap MAP_POPULATE) and copy into it (memcpy). Prints one line:
 * "populate_memcpy_mib_s <value> populate_s <s> memcpy_s <s>". argv[1] = MiB (default 1024). */
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
    double t0 = now();
    uint8_t *dst = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (dst == MAP_FAILED) {
        perror("mmap destination");
        return 1;
    }
    double t1 = now();
    memcpy(dst, src, len);
    double t2 = now();
    unsigned sum = 0;
    for (size_t i = 0; i < len; i += 4096)
        sum += dst[i];
    printf("populate_memcpy_mib_s %.1f populate_s %.4f memcpy_s %.4f checksum %u\n", (double)mib / (t2 - t0),
           t1 - t0, t2 - t1, sum);
    return 0;
}
