/* cgroup_member: processes in cgroup v2 groups other than the dumper's.
 *
 * The root makes CG = /seamless-wl-PID with two children groups, moves itself into CG/b and
 * a forked child into CG/a (each its own path in the unified hierarchy). Where the pids or
 * memory controller can be enabled for CG (not on hybrid hosts, whose cgroup2 has no such
 * controller), CG/a gets pids.max 77 and memory.max 64 MiB, CG gets pids.max 500. After
 * restore: both processes are back in their paths (/proc/PID/cgroup), the limits read back
 * as set, and the child can still fork (below its pids.max). At the end both leave and
 * the groups are removed.
 */
#include "wl.h"
#include <sys/mount.h>
#include <sys/stat.h>

static char mnt[4096], cg[512];

/* The cgroup2 mount point seen by this process (the first cgroup2 line of mountinfo). */
static int find_mount(char *out, size_t size)
{
    FILE *f = fopen("/proc/self/mountinfo", "re");
    if (!f)
        return -1;
    char line[4096];
    int found = -1;
    while (fgets(line, sizeof line, f)) {
        char *sep = strstr(line, " - cgroup2 ");
        if (!sep)
            continue;
        char mp[4096];
        if (sscanf(line, "%*s %*s %*s %*s %4095s", mp) == 1) {
            snprintf(out, size, "%s", mp);
            found = 0;
            break;
        }
    }
    fclose(f);
    return found;
}

static void v2_path(pid_t pid, char *out, size_t size)
{
    char p[64], line[1024];
    out[0] = 0;
    snprintf(p, sizeof p, "/proc/%d/cgroup", (int)pid);
    FILE *f = fopen(p, "re");
    if (!f)
        return;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "0::", 3) == 0) {
            snprintf(out, size, "%s", line + 3);
            out[strcspn(out, "\n")] = 0;
        }
    fclose(f);
}

static int put(const char *rel, const char *file, const char *value)
{
    char p[8192];
    snprintf(p, sizeof p, "%s%s/%s", mnt, rel, file);
    int fd = open(p, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = write(fd, value, strlen(value));
    close(fd);
    return n == (ssize_t)strlen(value) ? 0 : -1;
}

static int get(const char *rel, const char *file, char *out, size_t size)
{
    char p[8192];
    snprintf(p, sizeof p, "%s%s/%s", mnt, rel, file);
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, out, size - 1);
    close(fd);
    if (n < 0)
        return -1;
    out[n] = 0;
    out[strcspn(out, "\n")] = 0;
    return 0;
}

static void move(const char *rel, pid_t pid)
{
    char v[32];
    snprintf(v, sizeof v, "%d", (int)pid);
    WL_CHECK(put(rel, "cgroup.procs", v) == 0, "moving pid %d into %s", (int)pid, rel);
}

static void expect(const char *rel, const char *file, const char *want)
{
    char v[128];
    if (get(rel, file, v, sizeof v) != 0 || strcmp(v, want) != 0)
        wl_fail("%s of %s is \"%s\", expected \"%s\"", file, rel, v, want);
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    if (find_mount(mnt, sizeof mnt) != 0) {
        char dir[4096];
        wl_path(dir, sizeof dir, ".cgroup2");
        WL_CHECK(mkdir(dir, 0755) == 0 && mount("cgroup2", dir, "cgroup2", 0, NULL) == 0, "mount cgroup2");
        snprintf(mnt, sizeof mnt, "%s", dir);
    }
    snprintf(cg, sizeof cg, "/seamless-wl-%d", (int)getpid());
    char a[600], b[600], p[8192];
    snprintf(a, sizeof a, "%s/a", cg);
    snprintf(b, sizeof b, "%s/b", cg);
    const char *dirs[] = { cg, a, b };
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s%s", mnt, dirs[i]);
        WL_CHECK(mkdir(p, 0755) == 0, "mkdir %s", p);
    }
    /* Limits where the controllers exist (the root's subtree_control, then CG's). */
    int limits = put("", "cgroup.subtree_control", "+pids") == 0 && put(cg, "cgroup.subtree_control", "+pids") == 0;
    int memory = put("", "cgroup.subtree_control", "+memory") == 0 && put(cg, "cgroup.subtree_control", "+memory") == 0;
    if (limits) {
        WL_CHECK(put(a, "pids.max", "77") == 0 && put(cg, "pids.max", "500") == 0, "pids.max");
    }
    if (memory)
        WL_CHECK(put(a, "memory.max", "67108864") == 0, "memory.max");
    fprintf(stderr, "cgroup2 at %s, pids limits %s, memory limit %s\n", mnt, limits ? "set" : "unavailable",
            memory ? "set" : "unavailable");

    int go[2];
    WL_CHECK(pipe2(go, O_CLOEXEC) == 0, "pipe");
    pid_t child = fork();
    WL_CHECK(child >= 0, "fork");
    if (child == 0) {
        wl_is_child = 1;
        close(go[1]);
        char c;
        /* Waits for the root's word (EOF) after SIGTERM, then forks once. */
        while (read(go[0], &c, 1) < 0 && errno == EINTR)
            ;
        pid_t g = fork();
        if (g == 0)
            _exit(0);
        int st;
        if (g < 0 || waitpid(g, &st, 0) != g)
            wl_fail("the child in %s cannot fork any more (errno %d)", a, errno);
        wl_pass();
    }
    close(go[0]);
    move(a, child);
    move(b, getpid());
    char want_a[700], want_b[700], got[1024];
    snprintf(want_a, sizeof want_a, "%s", a);
    snprintf(want_b, sizeof want_b, "%s", b);
    wl_ready();

    while (!wl_term)
        wl_sleep_ms(20);

    v2_path(getpid(), got, sizeof got);
    if (strcmp(got, want_b) != 0)
        wl_fail("root in cgroup %s, expected %s", got, want_b);
    v2_path(child, got, sizeof got);
    if (strcmp(got, want_a) != 0)
        wl_fail("child in cgroup %s, expected %s", got, want_a);
    if (find_mount(mnt, sizeof mnt) != 0)
        wl_fail("no cgroup2 mount after restore");
    if (limits) {
        expect(a, "pids.max", "77");
        expect(cg, "pids.max", "500");
        expect(b, "pids.max", "max");
    }
    if (memory)
        expect(a, "memory.max", "67108864");
    close(go[1]);
    int st = wl_wait_child(child);
    if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        wl_fail("child ended with status %#x", st);
    /* Leave and remove the groups. */
    move("", getpid());
    for (int i = 2; i >= 0; i--) {
        snprintf(p, sizeof p, "%s%s", mnt, dirs[i]);
        if (rmdir(p) != 0)
            wl_fail("rmdir %s: errno %d", p, errno);
    }
    wl_pass();
}
