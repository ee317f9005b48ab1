/* fanout: a root with N-1 children (argv[2], default 16 processes in total), each with a small
 * private area and a pattern of its own; after SIGTERM the root verifies itself, signals every
 * child and collects their verdicts (pid, ppid, memory). Used by the benchmark with N=100. */
#include "wl.h"
#include <sys/mman.h>

#define AREA (64 * 1024)

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    int n = argc > 2 ? atoi(argv[2]) : 16;
    WL_CHECK(n >= 1 && n <= 4096, "process count %d out of range", n);
    pid_t root = getpid();
    pid_t *kids = calloc((size_t)n, sizeof *kids);
    int ready[2];
    WL_CHECK(pipe(ready) == 0, "pipe");
    for (int i = 1; i < n; i++) {
        pid_t pid = fork();
        WL_CHECK(pid >= 0, "fork child %d", i);
        if (pid == 0) {
            wl_is_child = 1;
            close(ready[0]);
            pid_t me = getpid();
            uint8_t *area = mmap(NULL, AREA, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            WL_CHECK(area != MAP_FAILED, "mmap");
            wl_fill(area, AREA, 0xF000 + (uint64_t)i);
            WL_CHECK(write(ready[1], "r", 1) == 1, "ready");
            close(ready[1]);
            wl_wait_term();
            if (getpid() != me)
                wl_fail("child %d: pid is %d, was %d", i, (int)getpid(), (int)me);
            if (getppid() != root)
                wl_fail("child %d: parent is %d, expected %d", i, (int)getppid(), (int)root);
            long bad = wl_verify(area, AREA, 0xF000 + (uint64_t)i);
            if (bad >= 0)
                wl_fail("child %d: area differs at byte %ld", i, bad);
            wl_pass();
        }
        kids[i] = pid;
    }
    close(ready[1]);
    for (int i = 1; i < n; i++) {
        char c;
        WL_CHECK(read(ready[0], &c, 1) == 1, "child %d never became ready", i);
    }
    close(ready[0]);
    uint8_t *mine = malloc(AREA);
    wl_fill(mine, AREA, 0xF000);
    wl_ready();
    wl_wait_term();
    if (getpid() != root)
        wl_fail("root pid is %d, was %d", (int)getpid(), (int)root);
    long bad = wl_verify(mine, AREA, 0xF000);
    if (bad >= 0)
        wl_fail("root area differs at byte %ld", bad);
    for (int i = 1; i < n; i++)
        WL_CHECK(kill(kids[i], SIGTERM) == 0, "signal child %d (pid %d)", i, (int)kids[i]);
    for (int i = 1; i < n; i++) {
        char what[64];
        snprintf(what, sizeof what, "child %d", i);
        wl_expect_child_pass(kids[i], what);
    }
    wl_pass();
}
