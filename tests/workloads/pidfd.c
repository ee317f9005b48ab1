/* pidfd: pidfds of processes inside the dumped tree, and O_PATH descriptors.
 *   fd 3  pidfd_open(C)                    C: a child waiting for SIGTERM
 *   fd 4  pidfd_open(C, PIDFD_NONBLOCK)    another description of the same process
 *   fd 5  pidfd_open(self)
 *   fd 6  O_PATH descriptor of the file OUTFILE.opath
 *   fd 7  O_PATH|O_DIRECTORY descriptor of the run directory
 * After SIGTERM: every pidfd's fdinfo names the right (restored) process, fd 4 is still
 * non-blocking; C is signalled through fd 3 (pidfd_send_signal), fd 4 polls readable once it
 * has exited and waitid(P_PIDFD) on fd 3 reaps it with exit status 0; the O_PATH descriptors
 * keep O_PATH, name the same inodes and fd 7 still opens a file relative to it. */
#include "wl.h"
#include <libgen.h>
#include <poll.h>
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
    WL_CHECK(syscall(SYS_pidfd_send_signal, 3, SIGTERM, NULL, 0) == 0, "pidfd_send_signal");
    WL_CHECK(poll(&p, 1, 10000) == 1 && (p.revents & POLLIN), "pidfd 4 readable once C exited");
    siginfo_t si;
    memset(&si, 0, sizeof si);
    WL_CHECK(waitid(P_PIDFD, 3, &si, WEXITED) == 0, "waitid(P_PIDFD)");
    if (si.si_pid != c || si.si_code != CLD_EXITED || si.si_status != 0)
        wl_fail("C (pid %d) ended with code %d status %d (pid %d)", (int)c, si.si_code, si.si_status, (int)si.si_pid);
    wl_pass();
}
