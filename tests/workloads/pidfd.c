/* pidfd: pidfds of processes inside the dumped tree, and O_PATH descriptors.
 *   fd 3  pidfd_open(C)                    C: a child waiting for SIGTERM
 *   fd 4  pidfd_open(C, PIDFD_NONBLOCK)    another description of the same process
 *   fd 5  pidfd_open(self)
 *   fd 6  O_PATH descriptor of the file OUTFILE.opath
 *   fd 7  O_PATH|O_DIRECTORY descriptor of the run directory
 *   fd 8  an eventfd; fd 10 an epoll watching it as fd 9, a duplicate closed since (the watch
 *         lives on with number 9 as long as the file is open)
 * After SIGTERM: every pidfd's fdinfo names the right (restored) process, fd 4 is still
 * non-blocking; C is signalled through fd 3 (pidfd_send_signal), fd 4 polls readable once it
 * has exited and waitid(P_PIDFD) on fd 3 reaps it with exit status 0; the O_PATH descriptors
 * keep O_PATH, name the same inodes and fd 7 still opens a file relative to it; the epoll still
 * has its watch as fd 9 with its data (fdinfo) and reports the eventfd ready through it. */
#include "wl.h"
#include <libgen.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>

#ifndef PIDFD_NONBLOCK
#define PIDFD_NONBLOCK O_NONBLOCK
#endif
#ifndef P_PIDFD
#define P_PIDFD 3
#endif

static int pidfd_open_(pid_t pid, unsigned int flags)
{
    return (int)syscall(SYS_pidfd_open, pid, flags);
}

static pid_t pidfd_pid(int fd)
{
    char path[64], text[1024];
    snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
    int f = open(path, O_RDONLY | O_CLOEXEC);
    WL_CHECK(f >= 0, "open %s", path);
    ssize_t n = read(f, text, sizeof text - 1);
    close(f);
    WL_CHECK(n > 0, "read %s", path);
    text[n] = 0;
    char *p = strstr(text, "Pid:");
    WL_CHECK(p != NULL, "no Pid: in fdinfo of fd %d", fd);
    return (pid_t)atoi(p + 4);
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    pid_t c = fork();
    WL_CHECK(c >= 0, "fork");
    if (c == 0) {
        wl_is_child = 1;
        wl_wait_term();
        wl_pass();
    }
    WL_CHECK(pidfd_open_(c, 0) == 3, "pidfd_open(C) as fd 3");
    WL_CHECK(pidfd_open_(c, PIDFD_NONBLOCK) == 4, "pidfd_open(C, PIDFD_NONBLOCK) as fd 4");
    WL_CHECK(pidfd_open_(getpid(), 0) == 5, "pidfd_open(self) as fd 5");
    char file[4096], dirbuf[4096];
    wl_path(file, sizeof file, ".opath");
    WL_CHECK(wl_write_file(file, "o_path target\n") == 0, "write %.300s", file);
    snprintf(dirbuf, sizeof dirbuf, "%s", file);
    const char *dir = dirname(dirbuf);
    WL_CHECK(open(file, O_PATH) == 6, "O_PATH open as fd 6");
    WL_CHECK(open(dir, O_PATH | O_DIRECTORY) == 7, "O_PATH dir open as fd 7");
    WL_CHECK(eventfd(0, EFD_CLOEXEC) == 8 && dup(8) == 9, "eventfd as fd 8, dup as fd 9");
    WL_CHECK(epoll_create1(EPOLL_CLOEXEC) == 10, "epoll as fd 10");
    struct epoll_event ev = { .events = EPOLLIN, .data.u64 = 0x99 };
    WL_CHECK(epoll_ctl(10, EPOLL_CTL_ADD, 9, &ev) == 0, "watch fd 9");
    close(9);
    struct stat fst, dst;
    WL_CHECK(stat(file, &fst) == 0 && stat(dir, &dst) == 0, "stat");
    wl_ready();
    wl_wait_term();

    if (pidfd_pid(3) != c || pidfd_pid(4) != c)
        wl_fail("pidfds 3/4 refer to pids %d/%d, expected C %d", (int)pidfd_pid(3), (int)pidfd_pid(4), (int)c);
    if (pidfd_pid(5) != getpid())
        wl_fail("pidfd 5 refers to pid %d, expected self %d", (int)pidfd_pid(5), (int)getpid());
    if (!(fcntl(4, F_GETFL) & O_NONBLOCK) || (fcntl(3, F_GETFL) & O_NONBLOCK))
        wl_fail("pidfd status flags changed (fd 3 %#x, fd 4 %#x)", fcntl(3, F_GETFL), fcntl(4, F_GETFL));
    struct pollfd p = { 4, POLLIN, 0 };
    if (poll(&p, 1, 0) != 0)
        wl_fail("pidfd 4 polls readable (revents %#x) while C is alive", p.revents);
    for (int fd = 6; fd <= 7; fd++) {
        int fl = fcntl(fd, F_GETFL);
        if (fl < 0 || !(fl & O_PATH))
            wl_fail("fd %d lost O_PATH (flags %#x)", fd, fl);
    }
    struct stat st;
    WL_CHECK(fstatat(6, "", &st, AT_EMPTY_PATH) == 0, "fstatat fd 6");
    if (st.st_ino != fst.st_ino || st.st_dev != fst.st_dev)
        wl_fail("O_PATH fd 6 names inode %lu, expected %lu", (unsigned long)st.st_ino, (unsigned long)fst.st_ino);
    WL_CHECK(fstatat(7, "", &st, AT_EMPTY_PATH) == 0, "fstatat fd 7");
    if (st.st_ino != dst.st_ino)
        wl_fail("O_PATH fd 7 names inode %lu, expected the directory %lu", (unsigned long)st.st_ino,
                (unsigned long)dst.st_ino);
    const char *base = strrchr(file, '/') + 1;
    int g = openat(7, base, O_RDONLY | O_CLOEXEC);
    WL_CHECK(g >= 0, "openat(fd 7, %.300s)", base);
    close(g);
    char info[1024], fdinfo[64];
    snprintf(fdinfo, sizeof fdinfo, "/proc/self/fdinfo/10");
    int fi = open(fdinfo, O_RDONLY | O_CLOEXEC);
    ssize_t il = fi >= 0 ? read(fi, info, sizeof info - 1) : -1;
    if (fi >= 0)
        close(fi);
    WL_CHECK(il > 0, "read fdinfo of the epoll");
    info[il] = 0;
    char *t = strstr(info, "tfd:");
    int tfd = -1;
    unsigned long long data = 0;
    if (!t || sscanf(t, "tfd: %d events: %*x data: %llx", &tfd, &data) != 2 || tfd != 9 || data != 0x99 ||
        strstr(t + 4, "tfd:"))
        wl_fail("the epoll's watches are not the one of fd 9 with data 0x99: %.400s", t ? t : info);
    if (fcntl(9, F_GETFD) != -1)
        wl_fail("fd 9 is open again after the restore");
    struct epoll_event got;
    if (epoll_wait(10, &got, 1, 0) != 0)
        wl_fail("the epoll reports an event before the eventfd was written");
    uint64_t one = 1;
    WL_CHECK(write(8, &one, 8) == 8, "write eventfd");
    if (epoll_wait(10, &got, 1, 1000) != 1 || got.data.u64 != 0x99 || !(got.events & EPOLLIN))
        wl_fail("the epoll does not report the eventfd through its watch of the closed fd 9");
    WL_CHECK(syscall(SYS_pidfd_send_signal, 3, SIGTERM, NULL, 0) == 0, "pidfd_send_signal");
    WL_CHECK(poll(&p, 1, 10000) == 1 && (p.revents & POLLIN), "pidfd 4 readable once C exited");
    siginfo_t si;
    memset(&si, 0, sizeof si);
    WL_CHECK(waitid(P_PIDFD, 3, &si, WEXITED) == 0, "waitid(P_PIDFD)");
    if (si.si_pid != c || si.si_code != CLD_EXITED || si.si_status != 0)
        wl_fail("C (pid %d) ended with code %d status %d (pid %d)", (int)c, si.si_code, si.si_status, (int)si.si_pid);
    wl_pass();
}
