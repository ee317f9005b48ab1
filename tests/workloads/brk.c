/* brk: the program break. Grows the heap in steps with sbrk, shrinks it once, fills it, and
 * mixes in glibc malloc (which also uses brk). After SIGTERM: the break and heap start are where
 * they were, contents match, and the heap can still grow (the kernel's brk was restored, not
 * just the pages). */
#include "wl.h"
#include <malloc.h>

static unsigned long stat_field(int n)
{
    char buf[4096];
    int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t len = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (len <= 0)
        return 0;
    buf[len] = 0;
    char *p = strrchr(buf, ')');
    /* p points at ") S ..." : field 3 follows. */
    int field = 2;
    unsigned long value = 0;
    for (char *tok = strtok(p + 1, " "); tok; tok = strtok(NULL, " ")) {
        field++;
        if (field == n) {
            value = strtoul(tok, NULL, 10);
            break;
        }
    }
    return value;
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    mallopt(M_MMAP_THRESHOLD, 1 << 20); /* keep small blocks on the brk heap */
    unsigned long start_brk = stat_field(47);
    WL_CHECK(start_brk != 0, "start_brk from /proc/self/stat");

    uint8_t *steps[8];
    for (int i = 0; i < 8; i++) {
        steps[i] = sbrk(64 * 1024);
        WL_CHECK(steps[i] != (void *)-1, "sbrk step %d", i);
    }
    WL_CHECK(sbrk(-32 * 1024) != (void *)-1, "sbrk shrink");
    uint8_t *end = sbrk(0);
    size_t heap_len = (size_t)(end - steps[0]);
    wl_fill(steps[0], heap_len, 0xB4B);

    void *blocks[64];
    for (int i = 0; i < 64; i++) {
        blocks[i] = malloc(1000 + 97 * (size_t)i);
        WL_CHECK(blocks[i] != NULL, "malloc %d", i);
        wl_fill(blocks[i], 1000 + 97 * (size_t)i - 7, 0xA110C + (uint64_t)i);
    }
    for (int i = 0; i < 64; i += 2) {
        free(blocks[i]);
        blocks[i] = NULL;
    }
    void *brk_before = sbrk(0);

    wl_ready();
    wl_wait_term();

    if (sbrk(0) != brk_before)
        wl_fail("program break is %p, expected %p", sbrk(0), brk_before);
    if (stat_field(47) != start_brk)
        wl_fail("start_brk is 0x%lx, expected 0x%lx", stat_field(47), start_brk);
    long bad = wl_verify(steps[0], heap_len, 0xB4B);
    if (bad >= 0)
        wl_fail("sbrk heap differs at byte %ld", bad);
    for (int i = 1; i < 64; i += 2) {
        bad = wl_verify(blocks[i], 1000 + 97 * (size_t)i - 7, 0xA110C + (uint64_t)i);
        if (bad >= 0)
            wl_fail("malloc block %d differs at byte %ld", i, bad);
    }
    /* Growth after restore: brk(2) must accept a larger break and the pages must be usable. */
    uint8_t *more = sbrk(1 << 20);
    if (more == (void *)-1)
        wl_fail("sbrk(1 MiB) after restore failed: %s", strerror(errno));
    if (more != brk_before)
        wl_fail("heap grew at %p, expected %p", (void *)more, brk_before);
    wl_fill(more, 1 << 20, 0xB4C);
    bad = wl_verify(more, 1 << 20, 0xB4C);
    if (bad >= 0)
        wl_fail("new heap pages differ at byte %ld", bad);
    WL_CHECK(sbrk(-(1 << 20)) != (void *)-1, "sbrk shrink after restore");
    for (int i = 0; i < 64; i += 2) {
        blocks[i] = malloc(3000);
        WL_CHECK(blocks[i] != NULL, "malloc after restore");
        memset(blocks[i], 0x5a, 3000);
    }
    for (int i = 0; i < 64; i++)
        free(blocks[i]);
    wl_pass();
}
