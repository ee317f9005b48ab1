/* tmpfs_service: a service's runtime files on tmpfs, which a new kernel starts without. Makes
 * /run/seamless-wl-PID/ (mode 0750) with a pid file and a listening unix socket in it, a POSIX
 * shared memory segment /dev/shm/seamless-wl-PID (1 MiB, mapped shared, filled with a pattern)
 * and a 0640 state file in /tmp that it keeps open. After SIGTERM: the directory's mode, the pid
 * file's contents, the shm contents through the old mapping and through a fresh shm_open by name,
 * the state file by path and through its descriptor, and a client (a forked child) that connects
 * to the socket by path and gets an answer on the accepted connection. */
#include "wl.h"
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#define SHM_LEN (1 << 20)

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    char dir[128], pidfile[160], sock[160], shm[64], state[128];
    int pid = (int)getpid();
    snprintf(dir, sizeof dir, "/run/seamless-wl-%d", pid);
    snprintf(pidfile, sizeof pidfile, "%s/pid", dir);
    snprintf(sock, sizeof sock, "%s/sock", dir);
    snprintf(shm, sizeof shm, "/seamless-wl-%d", pid);
    snprintf(state, sizeof state, "/tmp/seamless-wl-%d.state", pid);
    WL_CHECK(mkdir(dir, 0750) == 0 && chmod(dir, 0750) == 0, "mkdir %s", dir);
    char text[32];
    snprintf(text, sizeof text, "%d\n", pid);
    WL_CHECK(wl_write_file(pidfile, text) == 0, "pid file");

    int l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", sock);
    WL_CHECK(l >= 0 && bind(l, (struct sockaddr *)&sa, sizeof sa) == 0 && listen(l, 8) == 0, "listen on %s", sock);

    int s = shm_open(shm, O_RDWR | O_CREAT | O_EXCL, 0600);
    WL_CHECK(s >= 0 && ftruncate(s, SHM_LEN) == 0, "shm_open %s", shm);
    uint8_t *area = mmap(NULL, SHM_LEN, PROT_READ | PROT_WRITE, MAP_SHARED, s, 0);
    WL_CHECK(area != MAP_FAILED, "mmap shm");
    close(s);
    wl_fill(area, SHM_LEN, 0x5E6);

    int st = open(state, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    WL_CHECK(st >= 0 && fchmod(st, 0640) == 0 && write(st, "state-1\n", 8) == 8, "state file %s", state);

    wl_ready();
    wl_wait_term();

    struct stat sb;
    WL_CHECK(stat(dir, &sb) == 0, "stat %s after restore", dir);
    if ((sb.st_mode & 07777) != 0750)
        wl_fail("%s has mode %o, expected 0750", dir, sb.st_mode & 07777);
    char buf[64] = { 0 };
    int pf = open(pidfile, O_RDONLY | O_CLOEXEC);
    WL_CHECK(pf >= 0 && read(pf, buf, sizeof buf - 1) > 0, "read %s", pidfile);
    close(pf);
    if (strcmp(buf, text) != 0)
        wl_fail("pid file holds %s", buf);
    if (wl_verify(area, SHM_LEN, 0x5E6) != -1)
        wl_fail("shm contents through the mapping differ");
    s = shm_open(shm, O_RDWR, 0);
    WL_CHECK(s >= 0, "shm_open %s by name after restore", shm);
    uint8_t *again = mmap(NULL, SHM_LEN, PROT_READ | PROT_WRITE, MAP_SHARED, s, 0);
    WL_CHECK(again != MAP_FAILED, "mmap shm again");
    if (wl_verify(again, SHM_LEN, 0x5E6) != -1)
        wl_fail("shm contents by name differ");
    again[0] ^= 1;
    if (area[0] != again[0])
        wl_fail("the mapped segment and the one opened by name are not the same memory");
    memset(buf, 0, sizeof buf);
    WL_CHECK(pread(st, buf, 8, 0) == 8 && memcmp(buf, "state-1\n", 8) == 0, "state file through its fd");
    WL_CHECK(stat(state, &sb) == 0 && (sb.st_mode & 07777) == 0640, "state file by path, mode 0640");

    pid_t c = fork();
    WL_CHECK(c >= 0, "fork");
    if (c == 0) {
        wl_is_child = 1;
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        WL_CHECK(fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0, "connect to %s", sock);
        char r = 0;
        WL_CHECK(write(fd, "?", 1) == 1 && read(fd, &r, 1) == 1 && r == '!', "answer on %s", sock);
        _exit(0);
    }
    int a = accept4(l, NULL, NULL, SOCK_CLOEXEC);
    char q = 0;
    WL_CHECK(a >= 0 && read(a, &q, 1) == 1 && q == '?' && write(a, "!", 1) == 1, "serve on %s", sock);
    wl_expect_child_pass(c, "client connecting by path");
    unlink(sock);
    unlink(pidfile);
    rmdir(dir);
    shm_unlink(shm);
    unlink(state);
    wl_pass();
}
