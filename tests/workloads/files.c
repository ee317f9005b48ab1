/* files: regular files and devices at fixed descriptor numbers.
 *  fd 10: read-write file at offset 12345; fd 20 is dup(10) (shared offset)
 *  fd 11: O_APPEND file;  fd 12: deleted-but-open file (contents + offset 777)
 *  fd 13: read-only close-on-exec file at offset 4096
 *  fd 42: /dev/null (write), fd 43: /dev/zero (read)
 *  fd 14: a file whose open file description is shared with a forked child (the child moves the
 *         offset after restore, the parent must see it)
 * plus cwd and umask, and no descriptor beyond these (none leaked by a restorer). */
#include "wl.h"
#include <dirent.h>
#include <libgen.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

static uint8_t f1_data[65536], f3_data[20000 + 8], f4_data[16384];

static void make(const char *suffix, const void *data, size_t len, char *path, size_t psize)
{
    wl_path(path, psize, suffix);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    WL_CHECK(fd >= 0, "create %s", path);
    WL_CHECK(write(fd, data, len) == (ssize_t)len, "write %s", path);
    close(fd);
}

static void place(int fd, int want)
{
    WL_CHECK(fd >= 0, "open for fd %d", want);
    WL_CHECK(dup2(fd, want) == want, "dup2 %d", want);
    close(fd);
}

static off_t offset(int fd) { return lseek(fd, 0, SEEK_CUR); }

static void fd_link(int fd, char *out, size_t size)
{
    char proc[64];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(proc, out, size - 1);
    out[n < 0 ? 0 : n] = 0;
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", wl_outfile);
    WL_CHECK(chdir(dirname(dir)) == 0, "chdir");
    char cwd[4096];
    WL_CHECK(getcwd(cwd, sizeof cwd) != NULL, "getcwd");
    umask(027);

    char p1[4096], p2[4096], p3[4096], p4[4096];
    wl_fill(f1_data, sizeof f1_data, 0xF1);
    wl_fill(f3_data, sizeof f3_data, 0xF3);
    wl_fill(f4_data, sizeof f4_data, 0xF4);
    make(".f1", f1_data, sizeof f1_data, p1, sizeof p1);
    make(".f2", f1_data, 1000, p2, sizeof p2);
    make(".f4", f4_data, sizeof f4_data, p4, sizeof p4);

    place(open(p1, O_RDWR), 10);
    WL_CHECK(lseek(10, 12345, SEEK_SET) == 12345, "lseek fd 10");
    WL_CHECK(dup2(10, 20) == 20, "dup fd 10");
    place(open(p2, O_WRONLY | O_APPEND), 11);
    wl_path(p3, sizeof p3, ".f3");
    place(open(p3, O_RDWR | O_CREAT | O_TRUNC, 0600), 12);
    WL_CHECK(write(12, f3_data, 20000) == 20000, "write deleted file");
    WL_CHECK(lseek(12, 777, SEEK_SET) == 777, "lseek fd 12");
    WL_CHECK(unlink(p3) == 0, "unlink %s", p3);
    place(open(p4, O_RDONLY), 13);
    WL_CHECK(fcntl(13, F_SETFD, FD_CLOEXEC) == 0, "cloexec");
    WL_CHECK(lseek(13, 4096, SEEK_SET) == 4096, "lseek fd 13");
    /* A process reading its own /proc entry (redis keeps /proc/PID/stat open at times). */
    place(open("/proc/self/stat", O_RDONLY), 15);
    place(open("/dev/null", O_WRONLY), 42);
    place(open("/dev/zero", O_RDONLY), 43);
    char link3[4096];
    fd_link(12, link3, sizeof link3);
    char p5[4096];
    make(".f5", f1_data, sizeof f1_data, p5, sizeof p5);
    place(open(p5, O_RDWR), 14);
    WL_CHECK(lseek(14, 100, SEEK_SET) == 100, "lseek fd 14");
    pid_t child = fork();
    WL_CHECK(child >= 0, "fork");
    if (child == 0) {
        wl_is_child = 1;
        wl_wait_term();
        if (lseek(14, 0, SEEK_CUR) != 100)
            wl_fail("child: shared fd 14 offset is %ld, expected 100", (long)lseek(14, 0, SEEK_CUR));
        WL_CHECK(lseek(14, 31337, SEEK_SET) == 31337, "child lseek");
        wl_pass();
    }

    wl_ready();
    wl_wait_term();

    /* No stray descriptors. */
    DIR *d = opendir("/proc/self/fd");
    WL_CHECK(d != NULL, "opendir /proc/self/fd");
    const int expected[] = { 0, 1, 2, 10, 11, 12, 13, 14, 15, 20, 42, 43 };
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        int fd = atoi(e->d_name), ok = fd == dirfd(d);
        for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++)
            ok |= fd == expected[i];
        if (!ok) {
            char link[4096];
            fd_link(fd, link, sizeof link);
            wl_fail("unexpected descriptor %d -> %s", fd, link);
        }
    }
    closedir(d);

    char now[4096];
    if (!getcwd(now, sizeof now) || strcmp(now, cwd) != 0)
        wl_fail("cwd is '%s', expected '%s'", now, cwd);
    mode_t mask = umask(027);
    if (mask != 027)
        wl_fail("umask is %03o, expected 027", (unsigned)mask);

    /* fd 10 / fd 20 */
    char link[4096];
    fd_link(10, link, sizeof link);
    if (strcmp(link, p1) != 0)
        wl_fail("fd 10 points to '%s', expected '%s'", link, p1);
    if ((fcntl(10, F_GETFL) & O_ACCMODE) != O_RDWR)
        wl_fail("fd 10 is not O_RDWR (flags 0x%x)", fcntl(10, F_GETFL));
    if (offset(10) != 12345)
        wl_fail("fd 10 offset is %ld, expected 12345", (long)offset(10));
    uint8_t buf[20000];
    WL_CHECK(read(10, buf, 100) == 100, "read fd 10");
    if (memcmp(buf, f1_data + 12345, 100) != 0)
        wl_fail("fd 10 data at offset 12345 differs");
    if (offset(20) != 12445)
        wl_fail("fd 20 (dup of fd 10) offset is %ld after reading through fd 10, expected 12445: the "
                "descriptors no longer share one open file description",
                (long)offset(20));
    struct stat st;
    WL_CHECK(fstat(10, &st) == 0, "fstat 10");
    if ((st.st_mode & 07777) != 0640 || st.st_size != (off_t)sizeof f1_data)
        wl_fail("fd 10 mode %o size %ld, expected 640 %zu", st.st_mode & 07777, (long)st.st_size, sizeof f1_data);

    /* fd 11: appends go to the end. */
    if (!(fcntl(11, F_GETFL) & O_APPEND) || (fcntl(11, F_GETFL) & O_ACCMODE) != O_WRONLY)
        wl_fail("fd 11 flags 0x%x, expected O_WRONLY|O_APPEND", fcntl(11, F_GETFL));
    WL_CHECK(lseek(11, 0, SEEK_SET) == 0, "lseek 11");
    WL_CHECK(write(11, "appended", 8) == 8, "append");
    WL_CHECK(fstat(11, &st) == 0, "fstat 11");
    if (st.st_size != 1008)
        wl_fail("O_APPEND file size is %ld after appending 8 bytes, expected 1008", (long)st.st_size);
    int rd = open(p2, O_RDONLY | O_CLOEXEC);
    WL_CHECK(rd >= 0 && pread(rd, buf, 1008, 0) == 1008, "read back %s", p2);
    close(rd);
    if (memcmp(buf, f1_data, 1000) != 0 || memcmp(buf + 1000, "appended", 8) != 0)
        wl_fail("O_APPEND file contents wrong");

    /* fd 12: deleted file. */
    WL_CHECK(fstat(12, &st) == 0, "fstat 12");
    if (st.st_nlink != 0)
        wl_fail("deleted file has %lu links again", (unsigned long)st.st_nlink);
    if (st.st_size != 20000)
        wl_fail("deleted file size %ld, expected 20000", (long)st.st_size);
    if ((fcntl(12, F_GETFL) & O_ACCMODE) != O_RDWR)
        wl_fail("deleted file fd 12 is not O_RDWR");
    if (offset(12) != 777)
        wl_fail("deleted file offset %ld, expected 777", (long)offset(12));
    WL_CHECK(pread(12, buf, 20000, 0) == 20000, "pread deleted file");
    if (memcmp(buf, f3_data, 20000) != 0)
        wl_fail("deleted file contents differ");
    fd_link(12, link, sizeof link);
    if (strstr(link, " (deleted)") == NULL)
        wl_fail("fd 12 link '%s' does not end in (deleted)", link);
    if (access(p3, F_OK) == 0)
        wl_fail("the deleted file %s exists again", p3);
    (void)link3;

    /* fd 13 */
    if (fcntl(13, F_GETFD) != FD_CLOEXEC || (fcntl(13, F_GETFL) & O_ACCMODE) != O_RDONLY)
        wl_fail("fd 13 flags wrong (fd flags %d, file flags 0x%x)", fcntl(13, F_GETFD), fcntl(13, F_GETFL));
    if (offset(13) != 4096)
        wl_fail("fd 13 offset %ld, expected 4096", (long)offset(13));
    WL_CHECK(read(13, buf, 4096) == 4096, "read fd 13");
    if (memcmp(buf, f4_data + 4096, 4096) != 0)
        wl_fail("fd 13 data differs");
    if (fcntl(10, F_GETFD) != 0)
        wl_fail("fd 10 became close-on-exec");

    /* Devices. */
    WL_CHECK(fstat(42, &st) == 0, "fstat 42");
    if (!S_ISCHR(st.st_mode) || major(st.st_rdev) != 1 || minor(st.st_rdev) != 3)
        wl_fail("fd 42 is not /dev/null");
    if (write(42, buf, 1000) != 1000)
        wl_fail("write to /dev/null failed");
    WL_CHECK(fstat(43, &st) == 0, "fstat 43");
    if (!S_ISCHR(st.st_mode) || major(st.st_rdev) != 1 || minor(st.st_rdev) != 5)
        wl_fail("fd 43 is not /dev/zero");
    memset(buf, 1, 100);
    WL_CHECK(read(43, buf, 100) == 100, "read /dev/zero");
    for (int i = 0; i < 100; i++)
        if (buf[i])
            wl_fail("/dev/zero returned non-zero data");

    /* fd 15 is our own /proc/PID/stat again, reading our pid. */
    char link15[4096], want15[64], stat15[64] = { 0 };
    fd_link(15, link15, sizeof link15);
    snprintf(want15, sizeof want15, "/proc/%d/stat", (int)getpid());
    if (strcmp(link15, want15) != 0)
        wl_fail("fd 15 is %s, expected %s", link15, want15);
    WL_CHECK(pread(15, stat15, sizeof stat15 - 1, 0) > 0, "read fd 15");
    snprintf(want15, sizeof want15, "%d (", (int)getpid());
    if (strncmp(stat15, want15, strlen(want15)) != 0)
        wl_fail("fd 15 reads \"%.40s\", expected our own stat", stat15);

    /* Shared with the child: its lseek must move our offset. */
    WL_CHECK(kill(child, SIGTERM) == 0, "signal child");
    wl_expect_child_pass(child, "fd-sharing child");
    if (lseek(14, 0, SEEK_CUR) != 31337)
        wl_fail("fd 14 offset is %ld after the child moved it to 31337: parent and child no longer share the "
                "open file description",
                (long)lseek(14, 0, SEEK_CUR));
    wl_pass();
}
