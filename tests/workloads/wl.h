/* Shared helpers of the seamless test workloads (protocol: see README.md).
 *
 * A workload is started as `NAME OUTFILE [ARGS...]`. It sets up its state, writes
 * "READY\n" to OUTFILE.ready, waits for SIGTERM, verifies everything it set up and
 * writes "PASS\n" or "FAIL: reason\n" to OUTFILE, then exits 0 (PASS) or 1 (FAIL).
 */
#ifndef SEAMLESS_WL_H
#define SEAMLESS_WL_H

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *wl_outfile;
static volatile sig_atomic_t wl_term;
/* Set in forked helper processes: they report through OUTFILE.fail.PID and their exit code. */
static int wl_is_child;

static __attribute__((unused)) void wl_on_term(int sig) { (void)sig; wl_term = 1; }

/* Writes a whole buffer to a fresh file (no descriptor stays open afterwards). */
static __attribute__((unused)) int wl_write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    size_t len = strlen(text), done = 0;
    while (done < len) {
        ssize_t n = write(fd, text + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            close(fd);
            return -1;
        }
        done += (size_t)n;
    }
    close(fd);
    return 0;
}

/* Reports the result and exits: the only way a workload ends after READY. */
static __attribute__((unused)) void wl_result(int ok, const char *reason)
{
    char line[1024];
    if (wl_is_child) {
        if (!ok) {
            char path[4096];
            snprintf(path, sizeof path, "%s.fail.%d", wl_outfile, (int)getpid());
            snprintf(line, sizeof line, "%s\n", reason);
            wl_write_file(path, line);
            fprintf(stderr, "pid %d: FAIL: %s\n", (int)getpid(), reason);
        }
        _exit(ok ? 0 : 1);
    }
    if (ok)
        snprintf(line, sizeof line, "PASS\n");
    else
        snprintf(line, sizeof line, "FAIL: %s\n", reason);
    if (wl_write_file(wl_outfile, line) != 0)
        fprintf(stderr, "cannot write %s: %s\n", wl_outfile, strerror(errno));
    fprintf(stderr, "%s", line);
    _exit(ok ? 0 : 1);
}

__attribute__((format(printf, 1, 2), noreturn, unused)) static void wl_fail(const char *fmt, ...)
{
    char reason[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    wl_result(0, reason);
    _exit(1);
}

__attribute__((noreturn, unused)) static void wl_pass(void)
{
    wl_result(1, "");
    _exit(0);
}

/* Fails with errno text when `cond` is false (setup and verification). */
#define WL_CHECK(cond, ...)                                                               \
    do {                                                                              \
        if (!(cond)) {                                                                \
            char wl_msg_[600];                                                        \
            int wl_errno_ = errno;                                                    \
            snprintf(wl_msg_, sizeof wl_msg_, __VA_ARGS__);                           \
            wl_fail("%s (line %d, errno %d %s)", wl_msg_, __LINE__, wl_errno_,       \
                    strerror(wl_errno_));                                             \
        }                                                                             \
    } while (0)

/* Parses OUTFILE and installs the SIGTERM handler (no SA_RESTART: blocking calls see EINTR). */
static __attribute__((unused)) void wl_init(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s OUTFILE [ARGS...]\n", argv[0]);
        exit(2);
    }
    wl_outfile = argv[1];
    /* Start from a known descriptor table: only stdin, stdout and stderr are inherited. */
    if (syscall(SYS_close_range, 3U, ~0U, 0U) != 0) {
        perror("close_range");
        exit(2);
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = wl_on_term;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGTERM, &sa, NULL) != 0) {
        perror("sigaction SIGTERM");
        exit(2);
    }
}

/* Builds OUTFILE + suffix (for the ready marker and data files next to it). */
static __attribute__((unused)) void wl_path(char *buf, size_t size, const char *suffix)
{
    snprintf(buf, size, "%s%s", wl_outfile, suffix);
}

/* Announces that every piece of state is in place. */
static __attribute__((unused)) void wl_ready(void)
{
    char path[4096];
    wl_path(path, sizeof path, ".ready");
    if (wl_write_file(path, "READY\n") != 0) {
        fprintf(stderr, "cannot write %s: %s\n", path, strerror(errno));
        exit(2);
    }
}

static __attribute__((unused)) void wl_sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

/* Sleeps in short naps until SIGTERM arrived. */
static __attribute__((unused)) void wl_wait_term(void)
{
    while (!wl_term)
        wl_sleep_ms(20);
}

static __attribute__((unused)) double wl_now(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A position-dependent 64-bit pattern: distinct for every word of every area. */
static inline uint64_t wl_pattern(uint64_t seed, uint64_t index)
{
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + index * 0xBF58476D1CE4E5B9ull + 1;
    x ^= x >> 31;
    x *= 0x94D049BB133111EBull;
    x ^= x >> 29;
    return x;
}

static __attribute__((unused)) void wl_fill(void *area, size_t bytes, uint64_t seed)
{
    uint64_t *w = area;
    for (size_t i = 0; i < bytes / 8; i++)
        w[i] = wl_pattern(seed, i);
}

/* Returns the byte offset of the first mismatch, or -1 when the area matches. */
static __attribute__((unused)) long wl_verify(const void *area, size_t bytes, uint64_t seed)
{
    const uint64_t *w = area;
    for (size_t i = 0; i < bytes / 8; i++)
        if (w[i] != wl_pattern(seed, i))
            return (long)(i * 8);
    return -1;
}

/* Reads the value of a "Key:" line of /proc/self/status (or /proc/PID/status). */
static __attribute__((unused)) int wl_status_field(pid_t pid, const char *key, char *out, size_t size)
{
    char path[64], line[512];
    if (pid)
        snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    else
        snprintf(path, sizeof path, "/proc/self/status");
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    size_t klen = strlen(key);
    int found = -1;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
            char *v = line + klen + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            v[strcspn(v, "\n")] = 0;
            snprintf(out, size, "%s", v);
            found = 0;
            break;
        }
    }
    fclose(f);
    return found;
}

/* Describes the mapping containing [addr, addr+len) as "perms path@offset" (the file offset of
 * addr itself, for file mappings) into out. Fails (-1) when no single mapping covers the whole
 * range. The range bounds and anonymous offsets are left out: the kernel may merge neighbours. */
/* The state letter of thread tid of pid (R, S, T, t, Z, ...) from its stat file; '?' if unreadable. */
static __attribute__((unused)) char wl_task_state(pid_t pid, pid_t tid)
{
    char path[96], buf[512];
    snprintf(path, sizeof path, "/proc/%d/task/%d/stat", (int)pid, (int)tid);
    FILE *f = fopen(path, "re");
    if (!f)
        return '?';
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    return p && p[1] == ' ' ? p[2] : '?';
}

static __attribute__((unused)) int wl_maps_describe(const void *addr, size_t len, char *out, size_t size)
{
    FILE *f = fopen("/proc/self/maps", "re");
    if (!f)
        return -1;
    char line[4096];
    int found = -1;
    uintptr_t a = (uintptr_t)addr;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi, off;
        char perms[8], dev[32];
        unsigned long ino;
        int pos = 0;
        if (sscanf(line, "%lx-%lx %7s %lx %31s %lu %n", &lo, &hi, perms, &off, dev, &ino, &pos) < 6)
            continue;
        if (a >= lo && a < hi) {
            char *path = line + pos;
            path[strcspn(path, "\n")] = 0;
            if (a + len > hi)
                snprintf(out, size, "%s %s (only up to %lx)", perms, path, hi);
            else if (path[0] == '/')
                snprintf(out, size, "%s %s@%lx", perms, path, off + (a - lo));
            else
                snprintf(out, size, "%s %s", perms, path);
            found = 0;
            break;
        }
    }
    fclose(f);
    return found;
}

/* Waits for a child, returning its raw wait status (or -1). */
static __attribute__((unused)) int wl_wait_child(pid_t pid)
{
    int status;
    for (;;) {
        pid_t r = waitpid(pid, &status, 0);
        if (r == pid)
            return status;
        if (r < 0 && errno == EINTR)
            continue;
        return -1;
    }
}

/* Describes a wait status for failure messages. */
static __attribute__((unused)) const char *wl_describe_status(int status, char *buf, size_t size);

/* Waits for a forked helper and fails the workload with the helper's own reason unless it passed. */
static __attribute__((unused)) void wl_expect_child_pass(pid_t pid, const char *what)
{
    int status = wl_wait_child(pid);
    if (status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return;
    char path[4096], reason[700] = "", st[128];
    snprintf(path, sizeof path, "%s.fail.%d", wl_outfile, (int)pid);
    FILE *f = fopen(path, "re");
    if (f) {
        if (!fgets(reason, sizeof reason, f))
            reason[0] = 0;
        reason[strcspn(reason, "\n")] = 0;
        fclose(f);
    }
    wl_fail("%s (pid %d) %s%s%s", what, (int)pid, wl_describe_status(status, st, sizeof st),
            reason[0] ? ": " : "", reason);
}

static __attribute__((unused)) const char *wl_describe_status(int status, char *buf, size_t size)
{
    if (status == -1)
        snprintf(buf, size, "waitpid failed: %s", strerror(errno));
    else if (WIFEXITED(status))
        snprintf(buf, size, "exit code %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, size, "killed by signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
    else
        snprintf(buf, size, "status 0x%x", status);
    return buf;
}

#endif
