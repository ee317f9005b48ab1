/* pty_session: a terminal-multiplexer-like tree on a Unix98 pty.
 *   R  holds the master (packet mode on), like a tmux/screen server
 *   `- S  session leader with the slave as controlling terminal (fd 3, exclusive mode), own
 *      |  settings (canonical, no echo, VERASE ^H, ICRNL, ONLCR, 9600 baud) and window size
 *      |- F  its own process group, the terminal's foreground group
 *      `- B  its own process group, in the background
 * Unread both ways at the dump: "hello line\npartial" written by R waits for the slave (one
 * complete line and one partial line), "out from S\n" written by S waits for the master.
 * After SIGTERM: R checks ptsname, TIOCGPTN, packet mode and reads exactly "\0out from S\r\n",
 * then writes "-end\n"; S checks tcgetsid, tcgetpgrp, termios, window size, TIOCGEXCL, its
 * tty_nr; F and B check their groups, session and tty_nr; then S takes the foreground back and
 * reads "hello line\n" then "partial-end\n". */
#include "wl.h"
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <termios.h>

static char pts_name[64];
static struct termios want_t;
static const struct winsize want_ws = { 30, 100, 800, 600 };

static void announce(int fd)
{
    WL_CHECK(write(fd, "x", 1) == 1, "ready byte");
    close(fd);
}

static void await(int fd, const char *who)
{
    char c;
    WL_CHECK(read(fd, &c, 1) == 1, "waiting for %s", who);
    close(fd);
}

static unsigned long tty_nr(void)
{
    char buf[1024];
    int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
    WL_CHECK(fd >= 0, "open /proc/self/stat");
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    WL_CHECK(n > 0, "read /proc/self/stat");
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    WL_CHECK(p != NULL, "stat format");
    char state;
    int ppid, pgrp, sid;
    unsigned long tty;
    WL_CHECK(sscanf(p + 2, "%c %d %d %d %lu", &state, &ppid, &pgrp, &sid, &tty) == 5, "stat fields");
    return tty;
}

static void check_ctty(const char *who, pid_t sid)
{
    struct stat st;
    WL_CHECK(stat(pts_name, &st) == 0, "%s: stat %s", who, pts_name);
    unsigned long nr = tty_nr();
    unsigned long want = (minor(st.st_rdev) & 0xff) | (major(st.st_rdev) << 8) | ((minor(st.st_rdev) & ~0xffu) << 12);
    if (nr != want)
        wl_fail("%s: tty_nr %#lx, expected %#lx (%s)", who, nr, want, pts_name);
    if (getsid(0) != sid)
        wl_fail("%s: session %d, expected %d", who, (int)getsid(0), (int)sid);
}

static void wait_child(pid_t pid, const char *who)
{
    int status;
    WL_CHECK(waitpid(pid, &status, 0) == pid, "waitpid %s", who);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return;
    char path[4096], reason[600] = "no reason written";
    snprintf(path, sizeof path, "%s.fail.%d", wl_outfile, (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t n = read(fd, reason, sizeof reason - 1);
        reason[n > 0 ? n : 0] = 0;
        close(fd);
    }
    wl_fail("%s (pid %d) failed (status %#x): %s", who, (int)pid, status, reason);
}

/* F and B: own process group in S's session. */
static void member(const char *who, int ready_fd, pid_t sid, int foreground)
{
    wl_is_child = 1;
    WL_CHECK(setpgid(0, 0) == 0, "%s: setpgid", who);
    announce(ready_fd);
    wl_wait_term();
    check_ctty(who, sid);
    pid_t fg = tcgetpgrp(3);
    if (foreground && fg != getpgrp())
        wl_fail("%s: foreground group %d, expected its own %d", who, (int)fg, (int)getpgrp());
    if (!foreground && fg == getpgrp())
        wl_fail("%s: its group %d is in the foreground", who, (int)fg);
    wl_pass();
}

static void read_line(int fd, const char *want)
{
    char buf[256];
    ssize_t n;
    do
        n = read(fd, buf, sizeof buf - 1);
    while (n < 0 && errno == EINTR);
    WL_CHECK(n >= 0, "S: read slave");
    buf[n] = 0;
    if ((size_t)n != strlen(want) || memcmp(buf, want, (size_t)n) != 0)
        wl_fail("S: read %zd bytes \"%s\" from the slave, expected \"%s\"", n, buf, want);
}

static void session_leader(int ready_fd)
{
    wl_is_child = 1;
    pid_t me = getpid();
    WL_CHECK(setsid() == me, "S: setsid");
    int s = open(pts_name, O_RDWR);
    WL_CHECK(s == 3, "S: open %s as fd 3 (got %d)", pts_name, s);
    struct termios t;
    WL_CHECK(tcgetattr(s, &t) == 0, "S: tcgetattr");
    t.c_lflag = ICANON | ISIG | IEXTEN;
    t.c_iflag = ICRNL | IXON;
    t.c_oflag = OPOST | ONLCR;
    t.c_cc[VERASE] = 0x08;
    t.c_cc[VKILL] = 0x15;
    WL_CHECK(cfsetispeed(&t, B9600) == 0 && cfsetospeed(&t, B9600) == 0, "S: speed");
    WL_CHECK(tcsetattr(s, TCSANOW, &t) == 0, "S: tcsetattr");
    WL_CHECK(tcgetattr(s, &want_t) == 0, "S: tcgetattr");
    WL_CHECK(ioctl(s, TIOCSWINSZ, &want_ws) == 0, "S: TIOCSWINSZ");
    WL_CHECK(ioctl(s, TIOCEXCL) == 0, "S: TIOCEXCL");
    int pf[2], pb[2];
    WL_CHECK(pipe2(pf, O_CLOEXEC) == 0 && pipe2(pb, O_CLOEXEC) == 0, "S: pipes");
    pid_t f = fork();
    WL_CHECK(f >= 0, "S: fork F");
    if (f == 0) {
        close(pf[0]);
        member("F", pf[1], me, 1);
    }
    pid_t b = fork();
    WL_CHECK(b >= 0, "S: fork B");
    if (b == 0) {
        close(pb[0]);
        member("B", pb[1], me, 0);
    }
    close(pf[1]);
    close(pb[1]);
    await(pf[0], "F");
    await(pb[0], "B");
    WL_CHECK(tcsetpgrp(s, f) == 0, "S: tcsetpgrp F");
    WL_CHECK(write(s, "out from S\n", 11) == 11, "S: write slave");
    announce(ready_fd);
    wl_wait_term();
    check_ctty("S", me);
    if (tcgetsid(s) != me)
        wl_fail("S: tcgetsid %d, expected %d", (int)tcgetsid(s), (int)me);
    if (tcgetpgrp(s) != f)
        wl_fail("S: tcgetpgrp %d, expected F's group %d", (int)tcgetpgrp(s), (int)f);
    struct termios now;
    WL_CHECK(tcgetattr(s, &now) == 0, "S: tcgetattr");
    if (now.c_iflag != want_t.c_iflag || now.c_oflag != want_t.c_oflag || now.c_cflag != want_t.c_cflag ||
        now.c_lflag != want_t.c_lflag)
        wl_fail("S: termios flags i/o/c/l %#x/%#x/%#x/%#x, expected %#x/%#x/%#x/%#x", now.c_iflag, now.c_oflag,
                now.c_cflag, now.c_lflag, want_t.c_iflag, want_t.c_oflag, want_t.c_cflag, want_t.c_lflag);
    for (int i = 0; i < NCCS; i++)
        if (now.c_cc[i] != want_t.c_cc[i])
            wl_fail("S: c_cc[%d] is %#x, expected %#x", i, now.c_cc[i], want_t.c_cc[i]);
    if (cfgetospeed(&now) != B9600 || cfgetispeed(&now) != B9600)
        wl_fail("S: speeds %#x/%#x, expected B9600", cfgetispeed(&now), cfgetospeed(&now));
    struct winsize ws;
    WL_CHECK(ioctl(s, TIOCGWINSZ, &ws) == 0, "S: TIOCGWINSZ");
    if (memcmp(&ws, &want_ws, sizeof ws) != 0)
        wl_fail("S: window size %ux%u %ux%u px, expected %ux%u %ux%u px", ws.ws_row, ws.ws_col, ws.ws_xpixel,
                ws.ws_ypixel, want_ws.ws_row, want_ws.ws_col, want_ws.ws_xpixel, want_ws.ws_ypixel);
    int excl = 0;
    WL_CHECK(ioctl(s, TIOCGEXCL, &excl) == 0, "S: TIOCGEXCL");
    if (!excl)
        wl_fail("S: the slave is no longer in exclusive mode");
    WL_CHECK(kill(f, SIGTERM) == 0 && kill(b, SIGTERM) == 0, "S: signal F/B");
    wait_child(f, "F");
    wait_child(b, "B");
    /* Reading needs the foreground: S takes it back (SIGTTOU ignored, as a shell does). */
    signal(SIGTTOU, SIG_IGN);
    WL_CHECK(tcsetpgrp(s, me) == 0, "S: tcsetpgrp S");
    alarm(20);
    read_line(s, "hello line\n");
    read_line(s, "partial-end\n");
    wl_pass();
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    int m = posix_openpt(O_RDWR | O_NOCTTY);
    WL_CHECK(m == 3, "posix_openpt as fd 3 (got %d)", m);
    WL_CHECK(grantpt(m) == 0 && unlockpt(m) == 0, "grantpt/unlockpt");
    WL_CHECK(ptsname_r(m, pts_name, sizeof pts_name) == 0, "ptsname");
    unsigned int index;
    WL_CHECK(ioctl(m, TIOCGPTN, &index) == 0, "TIOCGPTN");
    int ps[2];
    WL_CHECK(pipe2(ps, O_CLOEXEC) == 0, "pipe");
    pid_t s = fork();
    WL_CHECK(s >= 0, "fork S");
    if (s == 0) {
        close(m);
        close(ps[0]);
        session_leader(ps[1]);
    }
    close(ps[1]);
    await(ps[0], "S");
    int on = 1;
    WL_CHECK(ioctl(m, TIOCPKT, &on) == 0, "TIOCPKT");
    WL_CHECK(write(m, "hello line\npartial", 18) == 18, "write master");
    wl_sleep_ms(200);
    wl_ready();
    wl_wait_term();
    char name[64];
    WL_CHECK(ptsname_r(m, name, sizeof name) == 0, "ptsname after");
    if (strcmp(name, pts_name) != 0)
        wl_fail("ptsname is %s, was %s", name, pts_name);
    unsigned int now_index;
    WL_CHECK(ioctl(m, TIOCGPTN, &now_index) == 0, "TIOCGPTN after");
    if (now_index != index)
        wl_fail("TIOCGPTN %u, was %u", now_index, index);
    int pkt = 0;
    WL_CHECK(ioctl(m, TIOCGPKT, &pkt) == 0, "TIOCGPKT");
    if (!pkt)
        wl_fail("the master is no longer in packet mode");
    struct pollfd p = { m, POLLIN, 0 };
    WL_CHECK(poll(&p, 1, 5000) == 1, "poll master for S's output");
    char buf[256];
    ssize_t n = read(m, buf, sizeof buf);
    const char want[] = "\0out from S\r\n";
    if (n != (ssize_t)sizeof want - 1 || memcmp(buf, want, sizeof want - 1) != 0) {
        for (ssize_t i = 0; i < n; i++)
            if (buf[i] == 0)
                buf[i] = '@';
        buf[n > 0 ? n : 0] = 0;
        wl_fail("master read %zd bytes \"%s\", expected 13 bytes \"@out from S\\r\\n\"", n, buf);
    }
    p.revents = 0;
    if (poll(&p, 1, 0) != 0)
        wl_fail("more to read on the master than S's output (revents %#x)", p.revents);
    WL_CHECK(kill(s, SIGTERM) == 0, "signal S");
    WL_CHECK(write(m, "-end\n", 5) == 5, "write master");
    wait_child(s, "S");
    wl_pass();
}
