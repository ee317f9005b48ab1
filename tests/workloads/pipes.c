/* pipes: buffered data in pipes and a FIFO across checkpoint/restore.
 *  p1: 10000 bytes unread, both ends held, write end close-on-exec.
 *  p2: non-blocking pipe filled to capacity (a further write must still get EAGAIN).
 *  p3: pipe enlarged with F_SETPIPE_SZ holding 100000 bytes.
 *  p4: shared with a child that holds the only write end; the child writes more after restore
 *      and exits, after which the parent must see EOF.
 *  p5: data left in a pipe whose write end is closed: data then EOF.
 *  fifo: a named FIFO (both ends open) with 3000 bytes. */
#include "wl.h"
#include <sys/ioctl.h>
#include <sys/stat.h>

static uint8_t *stream(uint64_t seed, size_t len)
{
    uint8_t *buf = malloc(len + 8);
    wl_fill(buf, (len + 7) & ~7UL, seed);
    return buf;
}

static void put(int fd, uint64_t seed, size_t len, const char *what)
{
    uint8_t *buf = stream(seed, len);
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(fd, buf + done, len - done);
        WL_CHECK(n > 0, "write %s", what);
        done += (size_t)n;
    }
    free(buf);
}

static int unread(int fd)
{
    int n = -1;
    WL_CHECK(ioctl(fd, FIONREAD, &n) == 0, "FIONREAD on fd %d", fd);
    return n;
}

/* Reads len bytes and compares them with the stream `seed` starting at byte `from`. */
static void expect(int fd, uint64_t seed, size_t from, size_t len, const char *what)
{
    uint8_t *want = stream(seed, from + len);
    uint8_t *got = malloc(len);
    size_t done = 0;
    while (done < len) {
        ssize_t n = read(fd, got + done, len - done);
        if (n == 0)
            wl_fail("%s: EOF after %zu of %zu bytes", what, done, len);
        WL_CHECK(n > 0, "%s: read after %zu of %zu bytes", what, done, len);
        done += (size_t)n;
    }
    for (size_t i = 0; i < len; i++)
        if (got[i] != want[from + i])
            wl_fail("%s: byte %zu is 0x%02x, expected 0x%02x", what, from + i, got[i], want[from + i]);
    free(want);
    free(got);
}

static void expect_eof(int fd, const char *what)
{
    char c;
    ssize_t n = read(fd, &c, 1);
    if (n != 0)
        wl_fail("%s: expected EOF, read returned %zd (%s): a write end is still open somewhere", what, n,
                n < 0 ? strerror(errno) : "data");
}

static void expect_pipe_pair(int r, int w, const char *what)
{
    struct stat a, b;
    WL_CHECK(fstat(r, &a) == 0 && fstat(w, &b) == 0, "fstat %s", what);
    if (!S_ISFIFO(a.st_mode) || !S_ISFIFO(b.st_mode))
        wl_fail("%s: fds %d/%d are not pipes any more", what, r, w);
    if (a.st_ino != b.st_ino)
        wl_fail("%s: read fd %d and write fd %d are different pipes (inode %lu vs %lu)", what, r, w,
                (unsigned long)a.st_ino, (unsigned long)b.st_ino);
    int fr = fcntl(r, F_GETFL), fw = fcntl(w, F_GETFL);
    if ((fr & O_ACCMODE) != O_RDONLY || (fw & O_ACCMODE) != O_WRONLY)
        wl_fail("%s: access modes are 0x%x/0x%x", what, fr, fw);
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);

    int p1[2], p2[2], p3[2], p4[2], p5[2];
    WL_CHECK(pipe(p1) == 0, "pipe p1");
    WL_CHECK(fcntl(p1[1], F_SETFD, FD_CLOEXEC) == 0, "cloexec");
    put(p1[1], 0x101, 10000, "p1");

    WL_CHECK(pipe2(p2, O_NONBLOCK) == 0, "pipe p2");
    uint8_t *fill = stream(0x102, 1 << 20);
    size_t p2_len = 0;
    for (;;) {
        ssize_t n = write(p2[1], fill + p2_len, 4096);
        if (n < 0 && errno == EAGAIN)
            break;
        WL_CHECK(n > 0, "fill p2");
        p2_len += (size_t)n;
    }
    free(fill);

    WL_CHECK(pipe(p3) == 0, "pipe p3");
    WL_CHECK(fcntl(p3[1], F_SETPIPE_SZ, 256 * 1024) >= 256 * 1024, "F_SETPIPE_SZ");
    int p3_size = fcntl(p3[1], F_GETPIPE_SZ);
    put(p3[1], 0x103, 100000, "p3");

    WL_CHECK(pipe(p4) == 0, "pipe p4");
    pid_t child = fork();
    WL_CHECK(child >= 0, "fork");
    if (child == 0) {
        wl_is_child = 1;
        close(p4[0]);
        put(p4[1], 0x104, 2000, "p4 child");
        wl_wait_term();
        /* The rest of the stream, written after restore. */
        uint8_t *s = stream(0x104, 3000);
        WL_CHECK(write(p4[1], s + 2000, 1000) == 1000, "child write after restore");
        wl_pass();
    }
    close(p4[1]);
    while (unread(p4[0]) < 2000)
        wl_sleep_ms(5);

    WL_CHECK(pipe(p5) == 0, "pipe p5");
    put(p5[1], 0x105, 5000, "p5");
    close(p5[1]);

    char fifo_path[4096];
    wl_path(fifo_path, sizeof fifo_path, ".fifo");
    unlink(fifo_path);
    WL_CHECK(mkfifo(fifo_path, 0600) == 0, "mkfifo %s", fifo_path);
    int fr = open(fifo_path, O_RDONLY | O_NONBLOCK);
    WL_CHECK(fr >= 0, "open fifo for reading");
    int fw = open(fifo_path, O_WRONLY);
    WL_CHECK(fw >= 0, "open fifo for writing");
    WL_CHECK(fcntl(fr, F_SETFL, 0) == 0, "fifo blocking");
    put(fw, 0x106, 3000, "fifo");

    wl_ready();
    wl_wait_term();

    expect_pipe_pair(p1[0], p1[1], "p1");
    expect_pipe_pair(p2[0], p2[1], "p2");
    expect_pipe_pair(p3[0], p3[1], "p3");
    if (fcntl(p1[1], F_GETFD) != FD_CLOEXEC || fcntl(p1[0], F_GETFD) != 0)
        wl_fail("p1 close-on-exec flags are %d/%d, expected 0/1", fcntl(p1[0], F_GETFD), fcntl(p1[1], F_GETFD));
    if (!(fcntl(p2[0], F_GETFL) & O_NONBLOCK) || !(fcntl(p2[1], F_GETFL) & O_NONBLOCK))
        wl_fail("p2 lost O_NONBLOCK");
    if (fcntl(p1[0], F_GETFL) & O_NONBLOCK)
        wl_fail("p1 gained O_NONBLOCK");

    int n1 = unread(p1[0]), n2 = unread(p2[0]), n3 = unread(p3[0]), n5 = unread(p5[0]), nf = unread(fr);
    if (n1 != 10000 || n2 != (int)p2_len || n3 != 100000 || n5 != 5000 || nf != 3000)
        wl_fail("unread bytes p1=%d p2=%d p3=%d p5=%d fifo=%d, expected 10000 %zu 100000 5000 3000", n1, n2, n3, n5,
                nf, p2_len);
    if (fcntl(p3[0], F_GETPIPE_SZ) != p3_size)
        wl_fail("p3 capacity is %d, expected %d", fcntl(p3[0], F_GETPIPE_SZ), p3_size);
    char byte = 1;
    if (write(p2[1], &byte, 1) != -1 || errno != EAGAIN)
        wl_fail("full p2 accepted another byte: capacity changed");

    /* Ends still connected: data written now comes out after the old data. */
    put(p1[1], 0x201, 500, "p1 new");
    expect(p1[0], 0x101, 0, 10000, "p1 old data");
    expect(p1[0], 0x201, 0, 500, "p1 new data");
    expect(p2[0], 0x102, 0, p2_len, "p2");
    expect(p3[0], 0x103, 0, 100000, "p3");
    expect(p5[0], 0x105, 0, 5000, "p5");
    expect_eof(p5[0], "p5");

    struct stat fst, rst, wst;
    WL_CHECK(stat(fifo_path, &fst) == 0 && fstat(fr, &rst) == 0 && fstat(fw, &wst) == 0, "stat fifo");
    if (!S_ISFIFO(rst.st_mode) || rst.st_ino != fst.st_ino || wst.st_ino != fst.st_ino)
        wl_fail("fifo descriptors do not refer to %s any more", fifo_path);
    expect(fr, 0x106, 0, 3000, "fifo");
    put(fw, 0x206, 100, "fifo new");
    expect(fr, 0x206, 0, 100, "fifo new data");

    expect(p4[0], 0x104, 0, 2000, "p4 data from the child before the dump");
    WL_CHECK(kill(child, SIGTERM) == 0, "signal child");
    wl_expect_child_pass(child, "p4 writer child");
    expect(p4[0], 0x104, 2000, 1000, "p4 data from the child after restore");
    expect_eof(p4[0], "p4");
    unlink(fifo_path);
    wl_pass();
}
