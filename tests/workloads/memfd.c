/* memfd: memfd_create files across checkpoint/restore.
 *  m1 "wl-memfd-data": 16 pages + 123 bytes, pages 0 and 5 written (the rest holes), mode
 *     0640, seals SHRINK|GROW, position 777, close-on-exec; mapped MAP_SHARED by the root, a
 *     child inherits descriptor (same description) and mapping; also mapped MAP_PRIVATE with
 *     one page written (copy-on-write, the file keeps its byte), below the shared mapping.
 *  m2 "wl-memfd-sealed": "sealed contents", seals WRITE|SHRINK|GROW|SEAL.
 *  m3 "wl-memfd-nosealing": created without MFD_ALLOW_SEALING (seal F_SEAL_SEAL), not
 *     close-on-exec, opened a second time through /proc (its own description, O_RDONLY).
 *  m4 "wl-memfd-maponly": 2 pages mapped MAP_SHARED, descriptor closed.
 *  m5 "wl-memfd-noexec": MFD_NOEXEC_SEAL where the kernel has it (seal EXEC, mode 0666).
 * After restore: names (/proc/self/fd links), sizes, modes, owner, seals, positions, flags,
 * contents, holes (SEEK_DATA/SEEK_HOLE), refused writes and seals, the shared mappings are
 * the files (a write through a mapping is read through the descriptor, the child's writes are
 * seen by the root), the private page kept its copy. */
#include "wl.h"
#include <sys/mman.h>
#include <sys/stat.h>

#define PAGE 4096
#define M1_SIZE (16 * PAGE + 123)
#ifndef MFD_NOEXEC_SEAL
#define MFD_NOEXEC_SEAL 0x0008U
#endif
#ifndef F_SEAL_EXEC
#define F_SEAL_EXEC 0x0020
#endif

static void fill(char *p, int seed, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (char)(seed * 29 + i * 3 + (i >> 8));
}

static void check(const char *p, int seed, size_t n, const char *what)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != (char)(seed * 29 + i * 3 + (i >> 8)))
            wl_fail("%s: byte %zu is 0x%02x", what, i, (unsigned char)p[i]);
}

static void check_link(int fd, const char *name)
{
    char path[64], lnk[256], want[256];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(path, lnk, sizeof lnk - 1);
    WL_CHECK(n > 0, "readlink fd %d", fd);
    lnk[n] = 0;
    snprintf(want, sizeof want, "/memfd:%s (deleted)", name);
    if (strcmp(lnk, want) != 0)
        wl_fail("fd %d is \"%s\", expected \"%s\"", fd, lnk, want);
}

static void check_stat(int fd, off_t size, unsigned mode, const char *what)
{
    struct stat st;
    WL_CHECK(fstat(fd, &st) == 0, "fstat %s", what);
    if (st.st_size != size || (st.st_mode & 07777) != mode || !S_ISREG(st.st_mode) || st.st_uid != getuid())
        wl_fail("%s: size %lld mode %o owner %u, expected %lld, %o, %u", what, (long long)st.st_size,
                st.st_mode & 07777, st.st_uid, (long long)size, mode, getuid());
}

static void check_seals(int fd, int seals, const char *what)
{
    int s = fcntl(fd, F_GET_SEALS);
    if (s != seals)
        wl_fail("%s: seals %#x, expected %#x", what, s, seals);
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    int m1 = memfd_create("wl-memfd-data", MFD_ALLOW_SEALING | MFD_CLOEXEC);
    WL_CHECK(m1 >= 0, "memfd_create m1");
    WL_CHECK(ftruncate(m1, M1_SIZE) == 0, "ftruncate m1");
    static char buf[PAGE];
    fill(buf, 1, PAGE);
    WL_CHECK(pwrite(m1, buf, PAGE, 0) == PAGE, "write m1 page 0");
    fill(buf, 6, PAGE);
    WL_CHECK(pwrite(m1, buf, PAGE, 5 * PAGE) == PAGE, "write m1 page 5");
    WL_CHECK(fchmod(m1, 0640) == 0, "fchmod m1");
    WL_CHECK(fcntl(m1, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) == 0, "seal m1");
    WL_CHECK(lseek(m1, 777, SEEK_SET) == 777, "lseek m1");
    char *shared = mmap(NULL, 17 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, m1, 0);
    WL_CHECK(shared != MAP_FAILED, "mmap m1 shared");
    /* Below the shared mapping: the restore meets the private area of the file first. */
    char *priv = mmap(shared - 8 * PAGE, 6 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED_NOREPLACE, m1, 0);
    if (priv == MAP_FAILED)
        priv = mmap(NULL, 6 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, m1, 0);
    WL_CHECK(priv != MAP_FAILED, "mmap m1 private");
    priv[5 * PAGE + 9] = 'P';

    int m2 = memfd_create("wl-memfd-sealed", MFD_ALLOW_SEALING);
    WL_CHECK(m2 >= 0, "memfd_create m2");
    WL_CHECK(write(m2, "sealed contents", 15) == 15, "write m2");
    WL_CHECK(fcntl(m2, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) == 0, "seal m2");

    int m3 = memfd_create("wl-memfd-nosealing", 0);
    WL_CHECK(m3 >= 0, "memfd_create m3");
    WL_CHECK(write(m3, "abc", 3) == 3, "write m3");
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", m3);
    int m3r = open(path, O_RDONLY | O_CLOEXEC);
    WL_CHECK(m3r >= 0, "reopen m3");

    int m4 = memfd_create("wl-memfd-maponly", MFD_CLOEXEC);
    WL_CHECK(m4 >= 0 && ftruncate(m4, 2 * PAGE) == 0, "memfd_create m4");
    char *only = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, m4, 0);
    WL_CHECK(only != MAP_FAILED, "mmap m4");
    fill(only + PAGE, 4, PAGE);
    close(m4);

    int m5 = memfd_create("wl-memfd-noexec", MFD_NOEXEC_SEAL | MFD_CLOEXEC);
    int have_noexec = m5 >= 0;
    if (have_noexec)
        WL_CHECK(write(m5, "nx", 2) == 2, "write m5");

    pid_t child = fork();
    WL_CHECK(child >= 0, "fork");
    if (child == 0) {
        wl_is_child = 1;
        wl_wait_term();
        check(shared, 1, PAGE, "child: m1 mapping page 0");
        check_link(m1, "wl-memfd-data");
        shared[3 * PAGE + 1] = 'C';
        wl_pass();
    }

    wl_ready();
    wl_wait_term();

    check_link(m1, "wl-memfd-data");
    check_link(m2, "wl-memfd-sealed");
    check_link(m3, "wl-memfd-nosealing");
    check_link(m3r, "wl-memfd-nosealing");
    check_stat(m1, M1_SIZE, 0640, "m1");
    check_stat(m2, 15, 0777, "m2");
    check_stat(m3, 3, 0777, "m3");
    check_seals(m1, F_SEAL_SHRINK | F_SEAL_GROW, "m1");
    check_seals(m2, F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL, "m2");
    check_seals(m3, F_SEAL_SEAL, "m3");
    if (lseek(m1, 0, SEEK_CUR) != 777)
        wl_fail("m1 position %lld, expected 777", (long long)lseek(m1, 0, SEEK_CUR));
    if (fcntl(m1, F_GETFD) != FD_CLOEXEC || fcntl(m3, F_GETFD) != 0 || fcntl(m3r, F_GETFD) != FD_CLOEXEC)
        wl_fail("close-on-exec flags changed");
    if ((fcntl(m3r, F_GETFL) & O_ACCMODE) != O_RDONLY || (fcntl(m3, F_GETFL) & O_ACCMODE) != O_RDWR)
        wl_fail("access modes changed");
    /* Contents and holes of m1. */
    WL_CHECK(pread(m1, buf, PAGE, 0) == PAGE, "read m1 page 0");
    check(buf, 1, PAGE, "m1 page 0");
    WL_CHECK(pread(m1, buf, PAGE, 5 * PAGE) == PAGE, "read m1 page 5");
    check(buf, 6, PAGE, "m1 page 5");
    if (lseek(m1, PAGE, SEEK_DATA) != 5 * PAGE || lseek(m1, 0, SEEK_HOLE) != PAGE ||
        lseek(m1, 5 * PAGE, SEEK_HOLE) != 6 * PAGE)
        wl_fail("m1 holes: data after page 1 at %lld, holes at %lld and %lld", (long long)lseek(m1, PAGE, SEEK_DATA),
                (long long)lseek(m1, 0, SEEK_HOLE), (long long)lseek(m1, 5 * PAGE, SEEK_HOLE));
    if (lseek(m1, 6 * PAGE, SEEK_DATA) != -1 || errno != ENXIO)
        wl_fail("m1 has data after page 6");
    WL_CHECK(lseek(m1, 777, SEEK_SET) == 777, "lseek m1 back");
    /* Seals hold. */
    if (ftruncate(m1, PAGE) != -1 || errno != EPERM)
        wl_fail("m1 could shrink");
    if (pwrite(m2, "x", 1, 0) != -1 || errno != EPERM)
        wl_fail("m2 could be written");
    if (fcntl(m2, F_ADD_SEALS, F_SEAL_FUTURE_WRITE) != -1 || fcntl(m3, F_ADD_SEALS, F_SEAL_GROW) != -1)
        wl_fail("seals could be added to a sealed memfd");
    WL_CHECK(pread(m2, buf, 15, 0) == 15 && memcmp(buf, "sealed contents", 15) == 0, "m2 contents");
    WL_CHECK(pread(m3r, buf, 3, 0) == 3 && memcmp(buf, "abc", 3) == 0, "m3 contents");
    /* Mappings are the files. */
    check(shared, 1, PAGE, "m1 mapping page 0");
    check(shared + 5 * PAGE, 6, PAGE, "m1 mapping page 5");
    shared[7 * PAGE] = 'S';
    WL_CHECK(pread(m1, buf, 1, 7 * PAGE) == 1 && buf[0] == 'S', "a write to the m1 mapping is not in the file");
    if (priv[5 * PAGE + 9] != 'P' || shared[5 * PAGE + 9] == 'P')
        wl_fail("m1 private page: 0x%02x, shared 0x%02x", (unsigned char)priv[5 * PAGE + 9],
                (unsigned char)shared[5 * PAGE + 9]);
    check(priv, 1, PAGE, "m1 private mapping page 0");
    check(only + PAGE, 4, PAGE, "m4 mapping page 1");
    char d[512];
    if (wl_maps_describe(only, 2 * PAGE, d, sizeof d) != 0 || strstr(d, "rw-s /memfd:wl-memfd-maponly (deleted)") != d)
        wl_fail("m4 mapping: \"%s\"", d);
    if (have_noexec) {
        check_seals(m5, F_SEAL_EXEC, "m5");
        check_stat(m5, 2, 0666, "m5");
        if (fchmod(m5, 0777) != -1)
            wl_fail("m5 could be made executable");
    }
    WL_CHECK(kill(child, SIGTERM) == 0, "signal child");
    wl_expect_child_pass(child, "memfd child");
    if (shared[3 * PAGE + 1] != 'C')
        wl_fail("the child's write to the m1 mapping is not seen by the root: not the same memory");
    wl_pass();
}
