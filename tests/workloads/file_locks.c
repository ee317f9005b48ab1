/* file_locks: every kind of file lock, held by two processes, each verified after restore by
 * the holders themselves and by a helper forked only then (so that nothing of the check is
 * in the image).
 *
 *  root R, child C (forked first: it shares only fd 11 with R)
 *  fd 10 (R)  OUTFILE.lka: POSIX write lock 100..149 and POSIX read lock 1000..EOF
 *  fd 20 (C)  OUTFILE.lka opened again: POSIX read lock 500..599
 *  fd 11 (R, C)  OUTFILE.lkb, one description shared by both: flock LOCK_EX taken by R
 *  fd 12 (R)  OUTFILE.lkc: OFD write lock 0..9 and OFD read lock 20..29
 *  fd 13 (R)  OUTFILE.lkd read-only: read lease
 *  fd 14 (R)  OUTFILE.lke: flock LOCK_SH
 *  fd 21 (C)  OUTFILE.lkf: flock LOCK_SH taken by C
 *  fd 22 (C)  OUTFILE.lkg: write lease taken by C
 *
 * Checks: the lines of /proc/locks for these files (without their ordinals) are the same set
 * as at READY (same kinds, types, pids, ranges: nothing lost, nothing added); a helper sees
 * every range locked or free as it should with F_GETLK / F_OFD_GETLK (type, owner pid, start,
 * length of the conflicting lock), cannot take the flocks it must not and can take the
 * shared one; C converting the flock on the shared description succeeds (it is the
 * description's); F_GETLEASE gives the leases on fds 13 and 22 and none elsewhere. The lease
 * files are never opened by anyone else (that would break the leases). */
#include "wl.h"
#include <sys/file.h>
#include <sys/stat.h>

#define NFILES 7
static const char *suffix[NFILES] = { ".lka", ".lkb", ".lkc", ".lkd", ".lke", ".lkf", ".lkg" };
static char paths[NFILES][4096];
static unsigned long inodes[NFILES];
static char snapshot[8192];

static int open_at(int i, int flags, int want)
{
    int fd = open(paths[i], flags | O_CLOEXEC);
    WL_CHECK(fd >= 0, "open %s", paths[i]);
    WL_CHECK(dup2(fd, want) == want, "dup2 %d", want);
    close(fd);
    return want;
}

static void lock_range(int fd, int cmd, short type, off_t start, off_t len)
{
    struct flock fl = { .l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len };
    WL_CHECK(fcntl(fd, cmd, &fl) == 0, "lock fd %d %s %ld+%ld", fd, cmd == F_SETLK ? "POSIX" : "OFD", (long)start,
             (long)len);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The /proc/locks lines of our files, ordinals stripped, sorted, joined with '|'. */
static void our_locks(char *out, size_t size)
{
    FILE *f = fopen("/proc/locks", "re");
    WL_CHECK(f != NULL, "open /proc/locks");
    char line[512], *lines[64];
    int n = 0;
    while (fgets(line, sizeof line, f) && n < 64) {
        char *p = strchr(line, ':');
        if (!p)
            continue;
        p++;
        while (*p == ' ')
            p++;
        p[strcspn(p, "\n")] = 0;
        /* fields: KIND SUB TYPE PID MAJ:MIN:INO START END */
        char kind[32], sub[32], type[32], dev[64];
        int pid;
        if (sscanf(p, "%31s %31s %31s %d %63s", kind, sub, type, &pid, dev) != 5)
            continue;
        char *ino = strrchr(dev, ':');
        if (!ino)
            continue;
        unsigned long i = strtoul(ino + 1, NULL, 10);
        for (int k = 0; k < NFILES; k++)
            if (inodes[k] == i) {
                char norm[512];
                char *w = norm;
                /* Collapse runs of spaces (column widths are cosmetic). */
                for (char *c = p; *c && w < norm + sizeof norm - 1; c++)
                    if (!(*c == ' ' && w > norm && w[-1] == ' '))
                        *w++ = *c;
                *w = 0;
                lines[n++] = strdup(norm);
                break;
            }
    }
    fclose(f);
    qsort(lines, (size_t)n, sizeof lines[0], cmp_str);
    out[0] = 0;
    for (int k = 0; k < n; k++) {
        size_t len = strlen(out);
        snprintf(out + len, size - len, "%s%s", k ? "|" : "", lines[k]);
        free(lines[k]);
    }
}

/* In the helper: the lock that F_GETLK (cmd) reports for a `type` request on start+len. */
static void expect_lk(int fd, int cmd, short type, off_t start, off_t len, short want_type, pid_t want_pid,
                      off_t want_start, off_t want_len)
{
    struct flock fl = { .l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len };
    WL_CHECK(fcntl(fd, cmd, &fl) == 0, "GETLK fd %d", fd);
    const char *k = cmd == F_GETLK ? "F_GETLK" : "F_OFD_GETLK";
    if (want_type == F_UNLCK) {
        if (fl.l_type != F_UNLCK)
            wl_fail("%s %s %ld+%ld: conflicting lock type %d pid %d at %ld+%ld, expected none", k,
                    type == F_WRLCK ? "write" : "read", (long)start, (long)len, fl.l_type, fl.l_pid, (long)fl.l_start,
                    (long)fl.l_len);
        return;
    }
    if (fl.l_type != want_type || fl.l_pid != want_pid || fl.l_start != want_start || fl.l_len != want_len)
        wl_fail("%s %s %ld+%ld: got type %d pid %d %ld+%ld, expected type %d pid %d %ld+%ld", k,
                type == F_WRLCK ? "write" : "read", (long)start, (long)len, fl.l_type, fl.l_pid, (long)fl.l_start,
                (long)fl.l_len, want_type, want_pid, (long)want_start, (long)want_len);
}

static void try_flock(int i, int op, int want_ok)
{
    int fd = open(paths[i], O_RDONLY | O_CLOEXEC);
    WL_CHECK(fd >= 0, "helper open %s", paths[i]);
    int r = flock(fd, op | LOCK_NB);
    if (want_ok && r != 0)
        wl_fail("helper flock(%s, %s) failed (errno %d): a lock is held that should not be", paths[i],
                op == LOCK_EX ? "LOCK_EX" : "LOCK_SH", errno);
    if (!want_ok && (r == 0 || errno != EWOULDBLOCK))
        wl_fail("helper flock(%s, %s) = %d (errno %d), expected EWOULDBLOCK: the lock is gone", paths[i],
                op == LOCK_EX ? "LOCK_EX" : "LOCK_SH", r, errno);
    close(fd);
}

static void helper(pid_t root, pid_t child)
{
    wl_is_child = 1;
    int a = open(paths[0], O_RDWR | O_CLOEXEC), c = open(paths[2], O_RDWR | O_CLOEXEC);
    WL_CHECK(a >= 0 && c >= 0, "helper open");
    expect_lk(a, F_GETLK, F_RDLCK, 99, 1, F_UNLCK, 0, 0, 0);
    expect_lk(a, F_GETLK, F_RDLCK, 100, 1, F_WRLCK, root, 100, 50);
    expect_lk(a, F_GETLK, F_RDLCK, 149, 1, F_WRLCK, root, 100, 50);
    expect_lk(a, F_GETLK, F_WRLCK, 150, 350, F_UNLCK, 0, 0, 0);
    expect_lk(a, F_GETLK, F_WRLCK, 500, 100, F_RDLCK, child, 500, 100);
    expect_lk(a, F_GETLK, F_RDLCK, 500, 100, F_UNLCK, 0, 0, 0);
    expect_lk(a, F_GETLK, F_WRLCK, 600, 400, F_UNLCK, 0, 0, 0);
    expect_lk(a, F_GETLK, F_WRLCK, 5000, 1, F_RDLCK, root, 1000, 0);
    expect_lk(a, F_GETLK, F_RDLCK, 1000, 0, F_UNLCK, 0, 0, 0);
    expect_lk(c, F_OFD_GETLK, F_RDLCK, 0, 10, F_WRLCK, -1, 0, 10);
    expect_lk(c, F_OFD_GETLK, F_WRLCK, 10, 10, F_UNLCK, 0, 0, 0);
    expect_lk(c, F_OFD_GETLK, F_WRLCK, 25, 1, F_RDLCK, -1, 20, 10);
    expect_lk(c, F_OFD_GETLK, F_RDLCK, 20, 10, F_UNLCK, 0, 0, 0);
    expect_lk(c, F_OFD_GETLK, F_WRLCK, 30, 0, F_UNLCK, 0, 0, 0);
    try_flock(1, LOCK_SH, 0); /* B: exclusive, R's description */
    try_flock(4, LOCK_EX, 0); /* E: shared */
    try_flock(4, LOCK_SH, 1);
    try_flock(5, LOCK_EX, 0); /* F: shared, C's */
    try_flock(5, LOCK_SH, 1);
    try_flock(2, LOCK_EX, 1); /* C has OFD locks only: flock is a separate kind */
    _exit(0);
}

static void expect_lease(int fd, int want)
{
    int l = fcntl(fd, F_GETLEASE);
    if (l != want)
        wl_fail("F_GETLEASE fd %d = %d (errno %d), expected %d", fd, l, errno, want);
}

static void child_main(void)
{
    wl_is_child = 1;
    signal(SIGTERM, wl_on_term);
    open_at(0, O_RDWR, 20);
    lock_range(20, F_SETLK, F_RDLCK, 500, 100);
    open_at(5, O_RDONLY, 21);
    WL_CHECK(flock(21, LOCK_SH | LOCK_NB) == 0, "flock F");
    open_at(6, O_RDWR, 22);
    WL_CHECK(fcntl(22, F_SETLEASE, F_WRLCK) == 0, "write lease on G");
    char path[4096];
    wl_path(path, sizeof path, ".child");
    WL_CHECK(wl_write_file(path, "up\n") == 0, "child marker");
    wl_wait_term();
    expect_lease(22, F_WRLCK);
    expect_lease(21, F_UNLCK);
    /* The shared description holds the exclusive flock: converting through it succeeds. */
    WL_CHECK(flock(11, LOCK_EX | LOCK_NB) == 0, "flock(LOCK_EX) on the shared description of B");
    _exit(0);
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    for (int i = 0; i < NFILES; i++) {
        wl_path(paths[i], sizeof paths[i], suffix[i]);
        char data[8192];
        memset(data, 'a' + i, sizeof data);
        unlink(paths[i]);
        int fd = open(paths[i], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        WL_CHECK(fd >= 0 && write(fd, data, sizeof data) == (ssize_t)sizeof data, "create %s", paths[i]);
        struct stat st;
        WL_CHECK(fstat(fd, &st) == 0, "fstat");
        inodes[i] = (unsigned long)st.st_ino;
        close(fd);
    }
    open_at(1, O_RDWR, 11);
    char marker[4096];
    wl_path(marker, sizeof marker, ".child");
    unlink(marker);
    pid_t child = fork();
    WL_CHECK(child >= 0, "fork");
    if (child == 0)
        child_main();
    WL_CHECK(flock(11, LOCK_EX | LOCK_NB) == 0, "flock B");
    open_at(0, O_RDWR, 10);
    lock_range(10, F_SETLK, F_WRLCK, 100, 50);
    lock_range(10, F_SETLK, F_RDLCK, 1000, 0);
    open_at(2, O_RDWR, 12);
    lock_range(12, F_OFD_SETLK, F_WRLCK, 0, 10);
    lock_range(12, F_OFD_SETLK, F_RDLCK, 20, 10);
    open_at(3, O_RDONLY, 13);
    WL_CHECK(fcntl(13, F_SETLEASE, F_RDLCK) == 0, "read lease on D");
    open_at(4, O_RDONLY, 14);
    WL_CHECK(flock(14, LOCK_SH | LOCK_NB) == 0, "flock E");
    for (int i = 0; i < 500 && access(marker, F_OK) != 0; i++)
        wl_sleep_ms(10);
    WL_CHECK(access(marker, F_OK) == 0, "child did not start");
    our_locks(snapshot, sizeof snapshot);
    WL_CHECK(strlen(snapshot) > 0, "no locks in /proc/locks");
    wl_ready();
    wl_wait_term();

    char now[8192];
    our_locks(now, sizeof now);
    if (strcmp(now, snapshot) != 0)
        wl_fail("/proc/locks differs: now [%.400s], at READY [%.400s]", now, snapshot);
    expect_lease(13, F_RDLCK);
    expect_lease(10, F_UNLCK);
    expect_lease(14, F_UNLCK);
    pid_t h = fork();
    WL_CHECK(h >= 0, "fork helper");
    if (h == 0)
        helper(getppid(), child);
    wl_expect_child_pass(h, "lock-checking helper");
    WL_CHECK(kill(child, SIGTERM) == 0, "kill child");
    wl_expect_child_pass(child, "child");
    wl_pass();
}
