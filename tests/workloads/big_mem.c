/* big_mem: one large anonymous private area (default 1024 MiB, or argv[2] MiB) filled with a
 * position-dependent pattern; every word is verified after SIGTERM. Also used by the benchmark. */
#include "wl.h"
#include <sys/mman.h>

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    size_t mib = argc > 2 ? strtoul(argv[2], NULL, 10) : 1024;
    size_t len = mib << 20;
    uint8_t *area = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    WL_CHECK(area != MAP_FAILED, "mmap %zu MiB", mib);
    wl_fill(area, len, 0xB16);
    char before[512];
    WL_CHECK(wl_maps_describe(area, len, before, sizeof before) == 0, "maps");
    wl_ready();
    wl_wait_term();
    char after[512];
    if (wl_maps_describe(area, len, after, sizeof after) != 0 || strcmp(before, after) != 0)
        wl_fail("the %zu MiB area at %p changed in /proc/self/maps: was '%s', now '%s'", mib, (void *)area,
                before, after);
    long bad = wl_verify(area, len, 0xB16);
    if (bad >= 0)
        wl_fail("the %zu MiB area differs at byte %ld (MiB %ld)", mib, bad, bad >> 20);
    wl_pass();
}
