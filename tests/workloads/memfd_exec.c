/* memfd_exec: processes whose executable no path reaches, across checkpoint/restore.
 *  C1: a child started with fexecve() on a memfd "wl-exec" holding a copy of this program,
 *      sealed F_SEAL_SHRINK|GROW|WRITE|SEAL (what container runtimes do to re-execute
 *      themselves); the root keeps its descriptor of the memfd.
 *  C2: a child executing a copy of this program (OUTFILE.exe) that it unlinks once running.
 * Each child, before the dump and after it: /proc/self/exe names the same object
 * ("/memfd:wl-exec (deleted)", "...exe (deleted)"), reads the program's bytes (size and
 * FNV-1a hash handed over by the root), has the same mappings of it (addresses, protection,
 * offsets, names: /proc/self/maps); C1's exe has its seals; C2's exe mode and link count 0.
 * The root checks that C1's exe is the very memfd it holds (device and inode) and that the
 * memfd still holds the program with its seals. */
#include "wl.h"
#include <sys/mman.h>
#include <sys/stat.h>

#ifndef MFD_EXEC
#define MFD_EXEC 0x0010U
#endif
#define SEALS (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL)

static char *slurp(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    WL_CHECK(fd >= 0, "open %s", path);
    struct stat st;
    WL_CHECK(fstat(fd, &st) == 0, "fstat %s", path);
    char *b = malloc((size_t)st.st_size + 1);
    WL_CHECK(b != NULL, "malloc");
    size_t done = 0;
    while (done < (size_t)st.st_size) {
        ssize_t n = read(fd, b + done, (size_t)st.st_size - done);
        WL_CHECK(n > 0, "read %s", path);
        done += (size_t)n;
    }
    close(fd);
    *len = done;
    return b;
}

static unsigned long long fnv(const char *b, size_t n)
{
    unsigned long long h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)b[i]) * 1099511628211ULL;
    return h;
}

/* The lines of /proc/self/maps that map the executable (named `name`). */
static void exe_maps(const char *name, char *out, size_t size)
{
    FILE *f = fopen("/proc/self/maps", "re");
    WL_CHECK(f != NULL, "open maps");
    char line[4608];
    out[0] = 0;
    while (fgets(line, sizeof line, f)) {
        if (!strstr(line, name))
            continue;
        /* start-end perms offset, then the name (the device and inode columns may change). */
        char range[64], perms[8], off[32];
        if (sscanf(line, "%63s %7s %31s", range, perms, off) != 3)
            continue;
        size_t l = strlen(out);
        snprintf(out + l, size - l, "%s %s %s|", range, perms, off);
    }
    fclose(f);
}

static void exe_link(char *buf, size_t size)
{
    ssize_t n = readlink("/proc/self/exe", buf, size - 1);
    WL_CHECK(n > 0, "readlink /proc/self/exe");
    buf[n] = 0;
}

/* The re-executed child: OUTFILE child1|child2 SIZE HASH [COPY]. */
static int run_child(int argc, char **argv)
{
    wl_init(argc, argv);
    wl_is_child = 1;
    int second = strcmp(argv[2], "child2") == 0;
    size_t want_len = strtoull(argv[3], NULL, 10);
    unsigned long long want_hash = strtoull(argv[4], NULL, 16);
    if (second)
        WL_CHECK(argc > 5 && unlink(argv[5]) == 0, "unlink the copy");
    char link[4200], maps[8192];
    exe_link(link, sizeof link);
    const char *name = second ? ".exe (deleted)" : "/memfd:wl-exec (deleted)";
    if (!strstr(link, name))
        wl_fail("exe links to %s before the dump", link);
    exe_maps(name, maps, sizeof maps);
    if (!maps[0])
        wl_fail("no mapping of %s", name);
    char ready[4096];
    snprintf(ready, sizeof ready, "%s.%s", wl_outfile, argv[2]);
    WL_CHECK(wl_write_file(ready, "up\n") == 0, "write %s", ready);
    wl_wait_term();

    char after[4200], maps_after[8192];
    exe_link(after, sizeof after);
    if (strcmp(after, link) != 0)
        wl_fail("exe links to %s, before %s", after, link);
    exe_maps(name, maps_after, sizeof maps_after);
    if (strcmp(maps, maps_after) != 0)
        wl_fail("mappings of the executable %s, before %s", maps_after, maps);
    size_t len;
    char *b = slurp("/proc/self/exe", &len);
    if (len != want_len || fnv(b, len) != want_hash)
        wl_fail("/proc/self/exe reads %zu bytes hash %llx, expected %zu bytes hash %llx", len, fnv(b, len), want_len,
                want_hash);
    int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    WL_CHECK(fd >= 0, "open /proc/self/exe");
    struct stat st;
    WL_CHECK(fstat(fd, &st) == 0, "fstat exe");
    if (second) {
        if (st.st_nlink != 0 || (st.st_mode & 07777) != 0750)
            wl_fail("exe links %lu mode %o, expected 0 and 750", (unsigned long)st.st_nlink, st.st_mode & 07777);
    } else if (fcntl(fd, F_GET_SEALS) != SEALS) {
        wl_fail("exe seals %#x, expected %#x", fcntl(fd, F_GET_SEALS), SEALS);
    }
    wl_pass();
}

static void wait_file(const char *path)
{
    for (int i = 0; i < 500; i++) {
        if (access(path, F_OK) == 0) {
            unlink(path);
            return;
        }
        wl_sleep_ms(20);
    }
    wl_fail("%s did not appear", path);
}

int main(int argc, char **argv)
{
    if (argc > 4 && (strcmp(argv[2], "child1") == 0 || strcmp(argv[2], "child2") == 0))
        return run_child(argc, argv);
    wl_init(argc, argv);
    size_t len;
    char *prog = slurp("/proc/self/exe", &len);
    unsigned long long hash = fnv(prog, len);
    char lens[32], hashs[32];
    snprintf(lens, sizeof lens, "%zu", len);
    snprintf(hashs, sizeof hashs, "%llx", hash);

    int mfd = memfd_create("wl-exec", MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_EXEC);
    if (mfd < 0 && errno == EINVAL)
        mfd = memfd_create("wl-exec", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    WL_CHECK(mfd >= 0, "memfd_create");
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(mfd, prog + done, len - done);
        WL_CHECK(n > 0, "write memfd");
        done += (size_t)n;
    }
    WL_CHECK(fcntl(mfd, F_ADD_SEALS, SEALS) == 0, "F_ADD_SEALS");

    char copy[4096];
    wl_path(copy, sizeof copy, ".exe");
    int c = open(copy, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0700);
    WL_CHECK(c >= 0 && write(c, prog, len) == (ssize_t)len && fchmod(c, 0750) == 0 && close(c) == 0, "write %s", copy);

    pid_t c1 = fork();
    WL_CHECK(c1 >= 0, "fork");
    if (c1 == 0) {
        char *args[] = { argv[0], argv[1], "child1", lens, hashs, NULL };
        extern char **environ;
        fexecve(mfd, args, environ);
        wl_is_child = 1;
        wl_fail("fexecve: %s", strerror(errno));
    }
    pid_t c2 = fork();
    WL_CHECK(c2 >= 0, "fork");
    if (c2 == 0) {
        char *args[] = { copy, argv[1], "child2", lens, hashs, copy, NULL };
        execv(copy, args);
        wl_is_child = 1;
        wl_fail("execv %s: %s", copy, strerror(errno));
    }
    char ready[4096];
    wl_path(ready, sizeof ready, ".child1");
    wait_file(ready);
    wl_path(ready, sizeof ready, ".child2");
    wait_file(ready);
    wl_ready();
    wl_wait_term();

    char path[64];
    snprintf(path, sizeof path, "/proc/%d/exe", (int)c1);
    struct stat theirs, ours;
    WL_CHECK(stat(path, &theirs) == 0 && fstat(mfd, &ours) == 0, "stat %s", path);
    if (theirs.st_dev != ours.st_dev || theirs.st_ino != ours.st_ino)
        wl_fail("the child's executable is not the memfd the root holds (%lu:%lu vs %lu:%lu)",
                (unsigned long)theirs.st_dev, (unsigned long)theirs.st_ino, (unsigned long)ours.st_dev,
                (unsigned long)ours.st_ino);
    if (fcntl(mfd, F_GET_SEALS) != SEALS)
        wl_fail("memfd seals %#x", fcntl(mfd, F_GET_SEALS));
    char *again = malloc(len);
    WL_CHECK(again != NULL && pread(mfd, again, len, 0) == (ssize_t)len, "read memfd");
    if (fnv(again, len) != hash)
        wl_fail("the memfd no longer holds the program");
    WL_CHECK(kill(c1, SIGTERM) == 0 && kill(c2, SIGTERM) == 0, "signal children");
    wl_expect_child_pass(c1, "memfd-exec child");
    wl_expect_child_pass(c2, "deleted-exec child");
    wl_pass();
}
