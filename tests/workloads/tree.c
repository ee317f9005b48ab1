/* tree: a process tree with sessions, groups and zombies.
 *   R (root, in the runner's session)
 *   |- Z   exits with status 7 right away; stays a zombie until the check
 *   |- S   session leader (setsid)
 *   |  |- G1  own process group inside S's session
 *   |  |- G2  in S's group
 *   |  `- Z2  exits with status 9; zombie of S
 *   |- P   process group leader (setpgid) in R's session
 *   `- Q   member of P's group
 * After SIGTERM every process checks its own pid/ppid/pgid/sid, R and S check and reap their
 * zombies (state Z, exit status) and the relations between the others, then collect verdicts. */
#include "wl.h"

struct ids {
    pid_t pid, ppid, pgid, sid;
};

static struct ids self_ids(void)
{
    struct ids i = { getpid(), getppid(), getpgrp(), getsid(0) };
    return i;
}

static void check_self(const char *name, struct ids want)
{
    struct ids now = self_ids();
    if (now.pid != want.pid || now.ppid != want.ppid || now.pgid != want.pgid || now.sid != want.sid)
        wl_fail("%s: pid/ppid/pgid/sid are %d/%d/%d/%d, expected %d/%d/%d/%d", name, now.pid, now.ppid, now.pgid,
                now.sid, want.pid, want.ppid, want.pgid, want.sid);
}

static void announce(int fd)
{
    WL_CHECK(write(fd, "x", 1) == 1, "ready byte");
    close(fd);
}

/* Leaf: record identity, announce, wait, verify. */
static void leaf(const char *name, int ready_fd)
{
    wl_is_child = 1;
    struct ids me = self_ids();
    announce(ready_fd);
    wl_wait_term();
    check_self(name, me);
    wl_pass();
}

static char proc_state(pid_t pid, pid_t *ppid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return '?';
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return '?';
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    char state = '?';
    int pp = 0;
    if (!p || sscanf(p + 1, " %c %d", &state, &pp) != 2)
        return '?';
    if (ppid)
        *ppid = pp;
    return state;
}

static void wait_zombie(pid_t pid)
{
    for (int i = 0; i < 500 && proc_state(pid, NULL) != 'Z'; i++)
        wl_sleep_ms(10);
}

static void check_zombie(const char *name, pid_t pid, pid_t parent, int code)
{
    pid_t pp = 0;
    char st = proc_state(pid, &pp);
    if (st != 'Z')
        wl_fail("%s (pid %d) is in state '%c', expected a zombie 'Z'", name, (int)pid, st);
    if (pp != parent)
        wl_fail("%s (pid %d) has parent %d, expected %d", name, (int)pid, (int)pp, (int)parent);
    int status = wl_wait_child(pid);
    char desc[128];
    if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != code)
        wl_fail("%s (pid %d): %s, expected exit code %d", name, (int)pid, wl_describe_status(status, desc, sizeof desc),
                code);
}

static void expect_group(const char *name, pid_t pid, pid_t pgid, pid_t sid)
{
    pid_t g = getpgid(pid), s = getsid(pid);
    if (g != pgid || s != sid)
        wl_fail("%s (pid %d) seen from the root: pgid %d sid %d, expected %d %d", name, (int)pid, (int)g, (int)s,
                (int)pgid, (int)sid);
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    struct ids root = self_ids();
    int rp[2];
    WL_CHECK(pipe(rp) == 0, "pipe");

    pid_t z = fork();
    WL_CHECK(z >= 0, "fork Z");
    if (z == 0)
        _exit(7);

    pid_t s = fork();
    WL_CHECK(s >= 0, "fork S");
    if (s == 0) {
        wl_is_child = 1;
        close(rp[0]);
        WL_CHECK(setsid() == getpid(), "setsid");
        struct ids me = self_ids();
        pid_t g1 = fork();
        WL_CHECK(g1 >= 0, "fork G1");
        if (g1 == 0) {
            WL_CHECK(setpgid(0, 0) == 0, "G1 setpgid");
            leaf("G1", rp[1]);
        }
        setpgid(g1, g1);
        pid_t g2 = fork();
        WL_CHECK(g2 >= 0, "fork G2");
        if (g2 == 0)
            leaf("G2", rp[1]);
        pid_t z2 = fork();
        WL_CHECK(z2 >= 0, "fork Z2");
        if (z2 == 0)
            _exit(9);
        wait_zombie(z2);
        /* G1 must be in its own group before S reports ready. */
        while (getpgid(g1) != g1)
            wl_sleep_ms(1);
        announce(rp[1]);
        wl_wait_term();
        check_self("S", me);
        if (getpgid(g1) != g1 || getsid(g1) != me.pid)
            wl_fail("G1 seen from S: pgid %d sid %d, expected %d %d", (int)getpgid(g1), (int)getsid(g1), (int)g1,
                    (int)me.pid);
        if (getpgid(g2) != me.pid || getsid(g2) != me.pid)
            wl_fail("G2 seen from S: pgid %d sid %d, expected %d %d", (int)getpgid(g2), (int)getsid(g2),
                    (int)me.pid, (int)me.pid);
        check_zombie("zombie Z2 of S", z2, me.pid, 9);
        WL_CHECK(kill(g1, SIGTERM) == 0 && kill(g2, SIGTERM) == 0, "signal G1/G2");
        wl_expect_child_pass(g1, "G1");
        wl_expect_child_pass(g2, "G2");
        wl_pass();
    }

    pid_t p = fork();
    WL_CHECK(p >= 0, "fork P");
    if (p == 0) {
        close(rp[0]);
        setpgid(0, 0);
        leaf("P", rp[1]);
    }
    setpgid(p, p);
    pid_t q = fork();
    WL_CHECK(q >= 0, "fork Q");
    if (q == 0) {
        close(rp[0]);
        WL_CHECK(setpgid(0, p) == 0, "Q joins P's group");
        leaf("Q", rp[1]);
    }
    setpgid(q, p);
    close(rp[1]);
    for (int i = 0; i < 5; i++) {
        char c;
        WL_CHECK(read(rp[0], &c, 1) == 1, "waiting for descendant %d of 5 to be ready", i + 1);
    }
    close(rp[0]);
    wait_zombie(z);

    wl_ready();
    wl_wait_term();

    check_self("R", root);
    expect_group("S", s, s, s);
    expect_group("P", p, p, root.sid);
    expect_group("Q", q, p, root.sid);
    check_zombie("zombie Z of R", z, root.pid, 7);
    WL_CHECK(kill(s, SIGTERM) == 0 && kill(p, SIGTERM) == 0 && kill(q, SIGTERM) == 0, "signal S/P/Q");
    wl_expect_child_pass(s, "S");
    wl_expect_child_pass(p, "P");
    wl_expect_child_pass(q, "Q");
    wl_pass();
}
