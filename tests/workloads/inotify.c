/* inotify: two inotify instances with watches whose descriptors must come back the same.
 *   fd 3 (non-blocking): wd 1 on the directory OUTFILE.idir (IN_CREATE|IN_DELETE|IN_MOVED_TO),
 *        wd 2 on idir/a removed again (a gap), wd 3 on idir/b (IN_MODIFY|IN_CLOSE_WRITE),
 *        wd 4 on idir/c (IN_ATTRIB|IN_ONESHOT)
 *   fd 4 (blocking):     wd 1 on idir/a (IN_OPEN|IN_EXCL_UNLINK)
 * No event is left unread at the dump. After SIGTERM: each instance's watches in
 * /proc/self/fdinfo (descriptor, mask, inode), its status flags, no event pending; then real
 * events arrive on the right descriptors: create idir/new (wd 1 IN_CREATE "new"), write idir/b
 * (wd 3 IN_MODIFY, IN_CLOSE_WRITE), chmod idir/c (wd 4 IN_ATTRIB, then IN_IGNORED: one-shot),
 * open idir/a (fd 4, wd 1 IN_OPEN). */
#include "wl.h"
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/stat.h>

static char dir[4096];

static void sub(char *buf, size_t size, const char *name)
{
    snprintf(buf, size, "%s/%s", dir, name);
}

static void touch(const char *name)
{
    char p[4200];
    sub(p, sizeof p, name);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    WL_CHECK(fd >= 0, "create %.300s", p);
    close(fd);
}

static int watch(int ifd, const char *name, uint32_t mask)
{
    char p[4200];
    if (name)
        sub(p, sizeof p, name);
    else
        snprintf(p, sizeof p, "%s", dir);
    int wd = inotify_add_watch(ifd, p, mask);
    WL_CHECK(wd > 0, "inotify_add_watch %.300s", p);
    return wd;
}

struct want {
    int wd;
    uint32_t mask;
    const char *name; /* NULL: the directory */
};

static void check_fdinfo(int ifd, const struct want *w, int n)
{
    char path[64], text[8192];
    snprintf(path, sizeof path, "/proc/self/fdinfo/%d", ifd);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    WL_CHECK(fd >= 0, "open %s", path);
    ssize_t len = read(fd, text, sizeof text - 1);
    close(fd);
    WL_CHECK(len > 0, "read %s", path);
    text[len] = 0;
    int found = 0;
    for (char *l = strstr(text, "inotify wd:"); l; l = strstr(l + 1, "inotify wd:")) {
        unsigned int wd, mask;
        unsigned long ino;
        WL_CHECK(sscanf(l, "inotify wd:%x ino:%lx %*s mask:%x", &wd, &ino, &mask) == 3, "fdinfo line of fd %d", ifd);
        int i = 0;
        while (i < n && w[i].wd != (int)wd)
            i++;
        if (i == n)
            wl_fail("fd %d has watch %u, which it did not have", ifd, wd);
        if (mask != w[i].mask)
            wl_fail("fd %d watch %u has mask %#x, expected %#x", ifd, wd, mask, w[i].mask);
        char p[4200];
        if (w[i].name)
            sub(p, sizeof p, w[i].name);
        else
            snprintf(p, sizeof p, "%s", dir);
        struct stat st;
        WL_CHECK(stat(p, &st) == 0, "stat %.300s", p);
        if (st.st_ino != ino)
            wl_fail("fd %d watch %u is on inode %lu, expected %.300s (inode %lu)", ifd, wd, ino, p,
                    (unsigned long)st.st_ino);
        found++;
    }
    if (found != n)
        wl_fail("fd %d has %d watches, expected %d", ifd, found, n);
}

/* Reads the next event of `ifd` (waiting up to 5 s) and checks it. */
static void expect(int ifd, int wd, uint32_t mask, const char *name)
{
    static char buf[4096] __attribute__((aligned(8)));
    static ssize_t have, off;
    static int from = -1;
    if (from != ifd) {
        have = off = 0;
        from = ifd;
    }
    if (off >= have) {
        for (int i = 0; i < 500; i++) {
            have = read(ifd, buf, sizeof buf);
            if (have > 0)
                break;
            WL_CHECK(errno == EAGAIN || errno == EINTR, "read events of fd %d", ifd);
            wl_sleep_ms(10);
        }
        WL_CHECK(have > 0, "no event on fd %d, expected wd %d mask %#x", ifd, wd, mask);
        off = 0;
    }
    struct inotify_event *e = (struct inotify_event *)(buf + off);
    off += (ssize_t)(sizeof *e + e->len);
    const char *got = e->len ? e->name : "";
    if (e->wd != wd || e->mask != mask || strcmp(got, name ? name : "") != 0)
        wl_fail("fd %d: event wd %d mask %#x \"%s\", expected wd %d mask %#x \"%s\"", ifd, e->wd, e->mask, got, wd, mask,
                name ? name : "");
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    wl_path(dir, sizeof dir, ".idir");
    WL_CHECK(mkdir(dir, 0755) == 0 || errno == EEXIST, "mkdir %.300s", dir);
    touch("a");
    touch("b");
    touch("c");
    int f = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    WL_CHECK(f == 3, "inotify_init1 as fd 3 (got %d)", f);
    int g = inotify_init1(0);
    WL_CHECK(g == 4, "inotify_init1 as fd 4 (got %d)", g);
    const uint32_t m1 = IN_CREATE | IN_DELETE | IN_MOVED_TO, m3 = IN_MODIFY | IN_CLOSE_WRITE;
    const uint32_t m4 = IN_ATTRIB | IN_ONESHOT, ma = IN_OPEN | IN_EXCL_UNLINK;
    WL_CHECK(watch(f, NULL, m1) == 1, "wd 1");
    int gap = watch(f, "a", IN_MODIFY);
    WL_CHECK(gap == 2 && inotify_rm_watch(f, gap) == 0, "wd 2 added and removed");
    expect(f, 2, IN_IGNORED, NULL);
    WL_CHECK(watch(f, "b", m3) == 3, "wd 3");
    WL_CHECK(watch(f, "c", m4) == 4, "wd 4");
    WL_CHECK(watch(g, "a", ma) == 1, "fd 4 wd 1");
    wl_ready();
    wl_wait_term();

    const struct want wf[] = { { 1, m1, NULL }, { 3, m3, "b" }, { 4, m4, "c" } };
    const struct want wg[] = { { 1, ma, "a" } };
    check_fdinfo(f, wf, 3);
    check_fdinfo(g, wg, 1);
    if (!(fcntl(f, F_GETFL) & O_NONBLOCK))
        wl_fail("fd 3 lost O_NONBLOCK");
    if (fcntl(g, F_GETFL) & O_NONBLOCK)
        wl_fail("fd 4 became non-blocking");
    if (!(fcntl(f, F_GETFD) & FD_CLOEXEC) || (fcntl(g, F_GETFD) & FD_CLOEXEC))
        wl_fail("close-on-exec flags of fd 3/4 changed");
    char buf[64];
    if (read(f, buf, sizeof buf) >= 0 || errno != EAGAIN)
        wl_fail("fd 3 has an event pending after the restore (or read failed: %s)", strerror(errno));
    int queued = -1;
    WL_CHECK(ioctl(g, FIONREAD, &queued) == 0, "FIONREAD fd 4");
    if (queued != 0)
        wl_fail("fd 4 has %d bytes of events pending after the restore", queued);

    touch("new");
    expect(f, 1, IN_CREATE, "new");
    char p[4200];
    sub(p, sizeof p, "b");
    int b = open(p, O_WRONLY | O_APPEND | O_CLOEXEC);
    WL_CHECK(b >= 0 && write(b, "x", 1) == 1, "write %.300s", p);
    close(b);
    expect(f, 3, IN_MODIFY, NULL);
    expect(f, 3, IN_CLOSE_WRITE, NULL);
    sub(p, sizeof p, "c");
    WL_CHECK(chmod(p, 0600) == 0, "chmod %.300s", p);
    expect(f, 4, IN_ATTRIB, NULL);
    expect(f, 4, IN_IGNORED, NULL);
    sub(p, sizeof p, "a");
    int a = open(p, O_RDONLY | O_CLOEXEC);
    WL_CHECK(a >= 0, "open %.300s", p);
    close(a);
    expect(g, 1, IN_OPEN, NULL);
    wl_pass();
}
