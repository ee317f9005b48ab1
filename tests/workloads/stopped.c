/* stopped: processes in a group stop. The root forks a child that counts in a shared page and
 * a child with three counting threads, stops both with SIGSTOP (waitpid WUNTRACED proves it),
 * and also a child that stopped itself with raise(SIGSTOP) before READY.
 *
 * After SIGTERM the root checks that each of them is still stopped (state T in
 * /proc/PID/stat, every thread of the threaded one too) and that none of their counters moved
 * for 300 ms; then it sends SIGCONT and each must run again (its counters advance, the
 * self-stopped one reports that raise returned), and on SIGTERM each child exits 0. */
#include "wl.h"
#include <dirent.h>
#include <pthread.h>
#include <sys/mman.h>

#define THREADS 3

struct shared {
    volatile uint64_t counter[2 + THREADS];
    volatile int resumed;
};
static struct shared *sh;

static void *spin(void *arg)
{
    volatile uint64_t *c = arg;
    for (;;) {
        (*c)++;
        wl_sleep_ms(2);
    }
    return NULL;
}

/* Every thread of pid is in state T. */
static int all_stopped(pid_t pid, char *why, size_t size)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    if (!d) {
        snprintf(why, size, "cannot list the threads of pid %d", (int)pid);
        return 0;
    }
    int n = 0, ok = 1;
    struct dirent *e;
    while (ok && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        pid_t t = atoi(e->d_name);
        char st = wl_task_state(pid, t);
        n++;
        if (st != 'T') {
            snprintf(why, size, "thread %d of pid %d is in state %c, not T (stopped)", (int)t, (int)pid, st);
            ok = 0;
        }
    }
    closedir(d);
    if (ok && n == 0) {
        snprintf(why, size, "pid %d has no threads", (int)pid);
        ok = 0;
    }
    return ok;
}

static void child_main(int idx)
{
    wl_is_child = 1;
    if (idx == 1) {
        pthread_t th;
        for (int i = 0; i < THREADS; i++)
            WL_CHECK(pthread_create(&th, NULL, spin, (void *)&sh->counter[2 + i]) == 0, "pthread_create");
    }
    if (idx == 2) {
        raise(SIGSTOP);
        sh->resumed = 1;
        wl_wait_term();
        wl_pass();
    }
    while (!wl_term) {
        sh->counter[idx]++;
        wl_sleep_ms(2);
    }
    wl_pass();
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    sh = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    WL_CHECK(sh != MAP_FAILED, "mmap shared");
    pid_t kids[3];
    for (int i = 0; i < 3; i++) {
        kids[i] = fork();
        WL_CHECK(kids[i] >= 0, "fork");
        if (kids[i] == 0)
            child_main(i);
    }
    /* Let the counters run, then stop the first two. */
    while (sh->counter[0] < 5 || sh->counter[2] < 5 || sh->counter[2 + THREADS - 1] < 5)
        wl_sleep_ms(5);
    for (int i = 0; i < 3; i++) {
        if (i < 2)
            WL_CHECK(kill(kids[i], SIGSTOP) == 0, "SIGSTOP");
        int st;
        WL_CHECK(waitpid(kids[i], &st, WUNTRACED) == kids[i], "waitpid WUNTRACED");
        if (!WIFSTOPPED(st) || WSTOPSIG(st) != SIGSTOP)
            wl_fail("child %d: wait status %#x, expected stopped by SIGSTOP", (int)kids[i], st);
    }
    char why[256];
    for (int i = 0; i < 3; i++)
        if (!all_stopped(kids[i], why, sizeof why))
            wl_fail("before READY: %s", why);

    wl_ready();
    wl_wait_term();

    for (int i = 0; i < 3; i++)
        if (!all_stopped(kids[i], why, sizeof why))
            wl_fail("after SIGTERM: %s", why);
    uint64_t before[2 + THREADS];
    for (int i = 0; i < 2 + THREADS; i++)
        before[i] = sh->counter[i];
    wl_sleep_ms(300);
    for (int i = 0; i < 2 + THREADS; i++)
        if (sh->counter[i] != before[i])
            wl_fail("counter %d moved from %llu to %llu while its process was stopped", i,
                    (unsigned long long)before[i], (unsigned long long)sh->counter[i]);
    if (sh->resumed)
        wl_fail("the self-stopped child ran on before SIGCONT");
    for (int i = 0; i < 3; i++)
        WL_CHECK(kill(kids[i], SIGCONT) == 0, "SIGCONT");
    double t0 = wl_now(CLOCK_MONOTONIC);
    for (;;) {
        int moved = sh->resumed;
        for (int i = 0; i < 2 + THREADS; i++)
            if (sh->counter[i] == before[i])
                moved = 0;
        if (moved)
            break;
        if (wl_now(CLOCK_MONOTONIC) > t0 + 10)
            wl_fail("after SIGCONT not every process ran again within 10 s (resumed %d)", sh->resumed);
        wl_sleep_ms(10);
    }
    for (int i = 0; i < 3; i++)
        kill(kids[i], SIGTERM);
    for (int i = 0; i < 3; i++) {
        int st;
        for (;;) {
            pid_t r = waitpid(kids[i], &st, 0);
            if (r == kids[i])
                break;
            WL_CHECK(r >= 0 || errno == EINTR, "waitpid %d", (int)kids[i]);
        }
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            wl_fail("child %d ended with status %#x", (int)kids[i], st);
    }
    wl_pass();
}
