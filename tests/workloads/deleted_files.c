/* deleted_files: regular files deleted while open or mapped, across checkpoint/restore.
 *  D1 (OUTFILE.del1): 16 pages + 50 bytes, pages 0 and 7 written (the rest holes), owner
 *     1234:5678, mode 0640, mtime set to the nanosecond; opened read-write (fd a, position
 *     100, shared with a child by fork) and read-only (fd b, its own description), mapped
 *     MAP_SHARED read-write, then unlinked.
 *  D2 (OUTFILE.del2): 2 pages, mapped MAP_PRIVATE with one page written (copy-on-write),
 *     descriptor closed, unlinked: mapped only.
 * After restore: a and b are the same file (same inode), link count 0, size, owner, mode,
 * mtime, holes (SEEK_DATA/SEEK_HOLE), contents, position; a write through the mapping is
 * read through b, the child's write through a is seen by the root; D2's private page kept
 * its copy and its other page the file's bytes. */
#include "wl.h"
#include <sys/mman.h>
#include <sys/stat.h>

#define PAGE 4096
#define D1_SIZE (16 * PAGE + 50)

static void fill(char *p, int seed, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (char)(seed * 17 + i * 5 + (i >> 7));
}

static void check(const char *p, int seed, size_t n, const char *what)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != (char)(seed * 17 + i * 5 + (i >> 7)))
            wl_fail("%s: byte %zu is 0x%02x", what, i, (unsigned char)p[i]);
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    char p1[4096], p2[4096];
    wl_path(p1, sizeof p1, ".del1");
    wl_path(p2, sizeof p2, ".del2");
    int a = open(p1, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    WL_CHECK(a >= 0, "create %s", p1);
    static char buf[PAGE];
    WL_CHECK(ftruncate(a, D1_SIZE) == 0, "ftruncate");
    fill(buf, 1, PAGE);
    WL_CHECK(pwrite(a, buf, PAGE, 0) == PAGE, "write page 0");
    fill(buf, 8, PAGE);
    WL_CHECK(pwrite(a, buf, PAGE, 7 * PAGE) == PAGE, "write page 7");
    WL_CHECK(fchown(a, 1234, 5678) == 0 && fchmod(a, 0640) == 0, "fchown/fchmod");
    struct timespec ts[2] = { { 1000000000, 5 }, { 1500000000, 123456789 } };
    WL_CHECK(futimens(a, ts) == 0, "futimens");
    WL_CHECK(lseek(a, 100, SEEK_SET) == 100, "lseek");
    int b = open(p1, O_RDONLY);
    WL_CHECK(b >= 0, "open read-only");
    char *map = mmap(NULL, 17 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, a, 0);
    WL_CHECK(map != MAP_FAILED, "mmap D1");
    WL_CHECK(unlink(p1) == 0, "unlink D1");

    int t = open(p2, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    WL_CHECK(t >= 0 && ftruncate(t, 2 * PAGE) == 0, "create %s", p2);
    fill(buf, 3, PAGE);
    WL_CHECK(pwrite(t, buf, PAGE, PAGE) == PAGE, "write D2");
    char *priv = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, t, 0);
    WL_CHECK(priv != MAP_FAILED, "mmap D2");
    fill(priv, 4, PAGE);
    close(t);
    WL_CHECK(unlink(p2) == 0, "unlink D2");

    pid_t child = fork();
    WL_CHECK(child >= 0, "fork");
    if (child == 0) {
        wl_is_child = 1;
        wl_wait_term();
        char c[PAGE];
        WL_CHECK(pread(a, c, PAGE, 7 * PAGE) == PAGE, "child: pread");
        check(c, 8, PAGE, "child: D1 page 7");
        WL_CHECK(pwrite(a, "K", 1, 3 * PAGE) == 1, "child: pwrite");
        wl_pass();
    }

    wl_ready();
    wl_wait_term();

    struct stat sa, sb;
    WL_CHECK(fstat(a, &sa) == 0 && fstat(b, &sb) == 0, "fstat");
    if (sa.st_ino != sb.st_ino || sa.st_dev != sb.st_dev)
        wl_fail("the two descriptions are of different files (inodes %lu, %lu)", (unsigned long)sa.st_ino,
                (unsigned long)sb.st_ino);
    if (sa.st_nlink != 0 || sa.st_size != D1_SIZE || sa.st_uid != 1234 || sa.st_gid != 5678 ||
        (sa.st_mode & 07777) != 0640)
        wl_fail("D1: links %lu size %lld owner %u:%u mode %o", (unsigned long)sa.st_nlink, (long long)sa.st_size,
                sa.st_uid, sa.st_gid, sa.st_mode & 07777);
    if (sa.st_mtim.tv_sec != 1500000000 || sa.st_mtim.tv_nsec != 123456789)
        wl_fail("D1 mtime %lld.%09ld, expected 1500000000.123456789", (long long)sa.st_mtim.tv_sec,
                sa.st_mtim.tv_nsec);
    if (lseek(a, 0, SEEK_CUR) != 100)
        wl_fail("D1 position %lld, expected 100", (long long)lseek(a, 0, SEEK_CUR));
    if (lseek(b, PAGE, SEEK_DATA) != 7 * PAGE || lseek(b, 0, SEEK_HOLE) != PAGE || lseek(b, 7 * PAGE, SEEK_HOLE) != 8 * PAGE)
        wl_fail("D1 holes: data after page 1 at %lld, holes at %lld and %lld", (long long)lseek(b, PAGE, SEEK_DATA),
                (long long)lseek(b, 0, SEEK_HOLE), (long long)lseek(b, 7 * PAGE, SEEK_HOLE));
    WL_CHECK(pread(b, buf, PAGE, 0) == PAGE, "read D1");
    check(buf, 1, PAGE, "D1 page 0");
    check(map + 7 * PAGE, 8, PAGE, "D1 mapping page 7");
    map[10 * PAGE] = 'M';
    WL_CHECK(pread(b, buf, 1, 10 * PAGE) == 1, "read D1 page 10");
    if (buf[0] != 'M')
        wl_fail("a write through the D1 mapping is not in the file");
    if ((fcntl(b, F_GETFL) & O_ACCMODE) != O_RDONLY || fcntl(a, F_GETFD) != FD_CLOEXEC || fcntl(b, F_GETFD) != 0)
        wl_fail("descriptor flags changed");
    check(priv, 4, PAGE, "D2 private page 0");
    check(priv + PAGE, 3, PAGE, "D2 page 1");
    WL_CHECK(kill(child, SIGTERM) == 0, "signal child");
    wl_expect_child_pass(child, "deleted-file child");
    if (map[3 * PAGE] != 'K')
        wl_fail("the child's write through the shared description is not seen by the root");
    wl_pass();
}
