/* deleted_fifo: FIFOs and directories removed while held, across checkpoint/restore.
 *  F1 (OUTFILE.fifo1): mode 0640, owner 1234:5678, capacity 8192; the root holds the read end
 *     (non-blocking), a child the write end; 300 bytes queued; then unlinked.
 *  F2 (OUTFILE.fifo2): one read-write descriptor, 100 bytes queued, unlinked.
 *  F3 (OUTFILE.fifo3): only a write end left open (its reader closed), 50 bytes queued.
 *  D1 (OUTFILE.dir1): mode 0751, owner 1234:5678; a read descriptor and an O_PATH one, removed.
 *  D2 (OUTFILE.dir2): the child's working directory, the root holds a descriptor of it too;
 *     removed by the child.
 * After restore: each node is of its type with link count 0, its mode, owner and the same
 * inode in every descriptor (and the child's cwd); the descriptor's link ends with the name
 * and " (deleted)"; the FIFOs' capacities, status flags and queued bytes; F1's ends still
 * connected (the child writes, the root reads it after the old bytes); F3 still has no
 * reader (EPIPE); getcwd() and a create inside the directories fail as before. */
#include "wl.h"
#include <dirent.h>
#include <sys/ioctl.h>
#include <sys/stat.h>

static char p1[4096], p2[4096], p3[4096], d1p[4096], d2p[4096];

static void pattern(char *b, int seed, size_t n)
{
    for (size_t i = 0; i < n; i++)
        b[i] = (char)(seed * 31 + i * 7);
}

static void expect_bytes(const char *got, int seed, size_t n, const char *what)
{
    char want[512];
    pattern(want, seed, n);
    for (size_t i = 0; i < n; i++)
        if (got[i] != want[i])
            wl_fail("%s: byte %zu is 0x%02x, expected 0x%02x", what, i, (unsigned char)got[i], (unsigned char)want[i]);
}

/* The node's type, link count, mode and owner; its link ends with its name + " (deleted)". */
static void expect_node(int fd, const char *path, mode_t type, mode_t mode, uid_t uid, gid_t gid, struct stat *out)
{
    struct stat st;
    WL_CHECK(fstat(fd, &st) == 0, "fstat %s", path);
    if ((st.st_mode & S_IFMT) != type || st.st_nlink != 0 || (st.st_mode & 07777) != mode || st.st_uid != uid ||
        st.st_gid != gid)
        wl_fail("%s (fd %d): type %o links %lu mode %o owner %u:%u, expected type %o links 0 mode %o owner %u:%u", path,
                fd, st.st_mode & S_IFMT, (unsigned long)st.st_nlink, st.st_mode & 07777, st.st_uid, st.st_gid, type,
                mode, uid, gid);
    char l[64], link[4200], want[4200];
    snprintf(l, sizeof l, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(l, link, sizeof link - 1);
    WL_CHECK(n > 0, "readlink %s", l);
    link[n] = 0;
    const char *base = strrchr(path, '/');
    snprintf(want, sizeof want, "%s (deleted)", base ? base : path);
    size_t lw = strlen(want);
    if ((size_t)n < lw || strcmp(link + n - lw, want) != 0)
        wl_fail("fd %d links to %s, expected a name ending with %s", fd, link, want);
    if (out)
        *out = st;
}

static void same_inode(const struct stat *a, const struct stat *b, const char *what)
{
    if (a->st_dev != b->st_dev || a->st_ino != b->st_ino)
        wl_fail("%s: inodes %lu:%lu and %lu:%lu differ", what, (unsigned long)a->st_dev, (unsigned long)a->st_ino,
                (unsigned long)b->st_dev, (unsigned long)b->st_ino);
}

static int queued(int fd)
{
    int n = -1;
    WL_CHECK(ioctl(fd, FIONREAD, &n) == 0, "FIONREAD fd %d", fd);
    return n;
}

/* What a create inside a removed directory fails with. */
static int create_errno(int dirfd)
{
    int f = openat(dirfd, "inside", O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (f >= 0) {
        close(f);
        return 0;
    }
    return errno;
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    wl_path(p1, sizeof p1, ".fifo1");
    wl_path(p2, sizeof p2, ".fifo2");
    wl_path(p3, sizeof p3, ".fifo3");
    wl_path(d1p, sizeof d1p, ".dir1");
    wl_path(d2p, sizeof d2p, ".dir2");
    char buf[512];

    WL_CHECK(mkfifo(p1, 0600) == 0 && chown(p1, 1234, 5678) == 0 && chmod(p1, 0640) == 0, "mkfifo %s", p1);
    int r1 = open(p1, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    int w1 = open(p1, O_WRONLY | O_CLOEXEC);
    WL_CHECK(r1 >= 0 && w1 >= 0, "open both ends of %s", p1);
    WL_CHECK(fcntl(w1, F_SETPIPE_SZ, 8192) >= 8192, "F_SETPIPE_SZ");
    pattern(buf, 1, 300);
    WL_CHECK(write(w1, buf, 300) == 300, "write F1");

    WL_CHECK(mkfifo(p2, 0600) == 0, "mkfifo %s", p2);
    int rw2 = open(p2, O_RDWR);
    WL_CHECK(rw2 >= 0, "open %s", p2);
    pattern(buf, 2, 100);
    WL_CHECK(write(rw2, buf, 100) == 100, "write F2");

    WL_CHECK(mkfifo(p3, 0620) == 0, "mkfifo %s", p3);
    int tmp = open(p3, O_RDWR | O_CLOEXEC);
    int w3 = open(p3, O_WRONLY | O_CLOEXEC);
    WL_CHECK(tmp >= 0 && w3 >= 0, "open %s", p3);
    pattern(buf, 3, 50);
    WL_CHECK(write(w3, buf, 50) == 50, "write F3");
    close(tmp);
    struct stat s3;
    WL_CHECK(fstat(w3, &s3) == 0, "fstat F3");
    mode_t m3 = s3.st_mode & 07777;

    WL_CHECK(mkdir(d1p, 0700) == 0 && chown(d1p, 1234, 5678) == 0 && chmod(d1p, 0751) == 0, "mkdir %s", d1p);
    int d1 = open(d1p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int d1path = open(d1p, O_PATH | O_DIRECTORY);
    WL_CHECK(d1 >= 0 && d1path >= 0, "open %s", d1p);
    WL_CHECK(mkdir(d2p, 0700) == 0, "mkdir %s", d2p);
    int d2 = open(d2p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    WL_CHECK(d2 >= 0, "open %s", d2p);

    int go[2];
    WL_CHECK(pipe2(go, O_CLOEXEC) == 0, "pipe");
    pid_t child = fork();
    WL_CHECK(child >= 0, "fork");
    if (child == 0) {
        wl_is_child = 1;
        close(r1);
        WL_CHECK(chdir(d2p) == 0 && rmdir(d2p) == 0, "child: chdir into and remove %s", d2p);
        char cwd[4096];
        int before = getcwd(cwd, sizeof cwd) ? 0 : errno;
        WL_CHECK(write(go[1], "k", 1) == 1, "child: report");
        wl_wait_term();
        int after = getcwd(cwd, sizeof cwd) ? 0 : errno;
        if (after != before)
            wl_fail("child: getcwd() error %d after, %d before", after, before);
        struct stat here, held;
        WL_CHECK(stat(".", &here) == 0 && fstat(d2, &held) == 0, "child: stat .");
        same_inode(&here, &held, "child: cwd and the root's descriptor of it");
        if (!S_ISDIR(here.st_mode) || here.st_nlink != 0 || (here.st_mode & 07777) != 0700)
            wl_fail("child: cwd mode %o links %lu", here.st_mode, (unsigned long)here.st_nlink);
        char l[4200];
        ssize_t n = readlink("/proc/self/cwd", l, sizeof l - 1);
        WL_CHECK(n > 0, "child: readlink cwd");
        l[n] = 0;
        if (!strstr(l, ".dir2 (deleted)"))
            wl_fail("child: cwd links to %s", l);
        if (create_errno(AT_FDCWD) == 0)
            wl_fail("child: a file could be made in the removed working directory");
        pattern(buf, 4, 40);
        WL_CHECK(write(w1, buf, 40) == 40, "child: write F1 after restore");
        wl_pass();
    }
    close(w1);
    WL_CHECK(read(go[0], buf, 1) == 1, "child did not get ready");
    WL_CHECK(unlink(p1) == 0 && unlink(p2) == 0 && unlink(p3) == 0 && rmdir(d1p) == 0, "unlink/rmdir");
    int c1 = create_errno(d1);
    errno = 0;
    DIR *dir = fdopendir(dup(d1));
    WL_CHECK(dir != NULL, "fdopendir");
    errno = 0;
    struct dirent *de = readdir(dir);
    int rd_before = de ? -1 : errno;
    closedir(dir);

    wl_ready();
    wl_wait_term();

    struct stat a, b;
    expect_node(r1, p1, S_IFIFO, 0640, 1234, 5678, &a);
    expect_node(rw2, p2, S_IFIFO, 0600, 0, 0, NULL);
    expect_node(w3, p3, S_IFIFO, m3, 0, 0, NULL);
    expect_node(d1, d1p, S_IFDIR, 0751, 1234, 5678, &a);
    expect_node(d1path, d1p, S_IFDIR, 0751, 1234, 5678, &b);
    same_inode(&a, &b, "D1's two descriptors");
    expect_node(d2, d2p, S_IFDIR, 0700, 0, 0, NULL);
    if (fcntl(r1, F_GETPIPE_SZ) != 8192)
        wl_fail("F1 capacity %d, expected 8192", fcntl(r1, F_GETPIPE_SZ));
    if ((fcntl(r1, F_GETFL) & (O_ACCMODE | O_NONBLOCK)) != (O_RDONLY | O_NONBLOCK) ||
        (fcntl(rw2, F_GETFL) & (O_ACCMODE | O_NONBLOCK)) != O_RDWR ||
        (fcntl(w3, F_GETFL) & (O_ACCMODE | O_NONBLOCK)) != O_WRONLY)
        wl_fail("status flags %#x %#x %#x", fcntl(r1, F_GETFL), fcntl(rw2, F_GETFL), fcntl(w3, F_GETFL));
    if (fcntl(r1, F_GETFD) != FD_CLOEXEC || fcntl(rw2, F_GETFD) != 0)
        wl_fail("close-on-exec flags changed");
    if (queued(r1) != 300 || queued(rw2) != 100 || queued(w3) != 50)
        wl_fail("queued bytes %d %d %d, expected 300 100 50", queued(r1), queued(rw2), queued(w3));
    WL_CHECK(read(rw2, buf, 100) == 100, "read F2");
    expect_bytes(buf, 2, 100, "F2");
    if (write(w3, "x", 1) != -1 || errno != EPIPE)
        wl_fail("F3 gained a reader: write gave errno %d", errno);
    if (create_errno(d1) != c1)
        wl_fail("a create in D1 gave errno %d, %d before", create_errno(d1), c1);
    dir = fdopendir(dup(d1));
    WL_CHECK(dir != NULL, "fdopendir after");
    errno = 0;
    de = readdir(dir);
    if ((de ? -1 : errno) != rd_before)
        wl_fail("reading D1 gave %s/%d, before %d", de ? de->d_name : "nothing", errno, rd_before);
    closedir(dir);

    WL_CHECK(kill(child, SIGTERM) == 0, "signal child");
    wl_expect_child_pass(child, "deleted-node child");
    WL_CHECK(read(r1, buf, 300) == 300, "read F1");
    expect_bytes(buf, 1, 300, "F1 before the dump");
    WL_CHECK(read(r1, buf, 100) == 40, "read F1 after the child's write");
    expect_bytes(buf, 4, 40, "F1 written after the restore");
    if (read(r1, buf, 1) != 0)
        wl_fail("F1 still has a writer after the child exited");
    wl_pass();
}
