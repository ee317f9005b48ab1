/* access_modes: state whose restore used to fail or come back different.
 *
 * - A file opened read-only, mapped PROT_READ|PROT_WRITE MAP_PRIVATE, one page written
 *   (copy-on-write): the page keeps its bytes, the file does not change.
 * - A file opened O_RDWR, mapped PROT_READ MAP_SHARED: after restore mprotect(PROT_WRITE)
 *   must still work (the area may write: VmFlags "mw") and writes reach the file.
 * - A file opened O_RDONLY, mapped PROT_READ MAP_SHARED: mprotect(PROT_WRITE) must still
 *   fail with EACCES (no "mw").
 * - An area locked with mlock (VmFlags "lo", every page resident) and one locked with
 *   mlock2(MLOCK_ONFAULT) with one page touched ("lo" and "lf", the other pages still not
 *   resident); VmLck the same as at READY.
 * - Deleted-but-open files of mode 0000 and of another owner (uid 1234, gid 1235, mode 0640):
 *   mode, owner, link count 0, contents, and the first one still writable.
 * - A child chrooted into OUTFILE.root with its working directory /sub: the same root and
 *   working directory (seen from outside by path, and from inside: "/sub", "/marker").
 */
#include "wl.h"
#include <sys/mman.h>
#include <sys/stat.h>

#define PG 4096

static char data_path[4096], root_path[4096];
static char *m_priv, *m_rw_shared, *m_ro_shared, *m_lock, *m_onfault;
static int g_zero = -1, g_owned = -1;
static char vmlck_ready[64];
static int locks;

static void pattern(char *buf, int page)
{
    for (int i = 0; i < PG; i++)
        buf[i] = (char)('a' + (page * 7 + i) % 26);
}

/* The VmFlags line of the smaps area starting at `addr`, in `out`. */
static int vmflags(void *addr, char *out, size_t size)
{
    FILE *f = fopen("/proc/self/smaps", "re");
    if (!f)
        return -1;
    char line[512];
    int in = 0, found = -1;
    snprintf(out, size, "(no area starts there)");
    unsigned long want = (unsigned long)addr;
    while (fgets(line, sizeof line, f)) {
        unsigned long a, b;
        if (sscanf(line, "%lx-%lx", &a, &b) == 2 && line[0] != 'V' && strstr(line, "kB") == NULL) {
            in = a == want;
            continue;
        }
        if (in && strncmp(line, "VmFlags:", 8) == 0) {
            snprintf(out, size, "%s", line + 8);
            out[strcspn(out, "\n")] = 0;
            found = 0;
            break;
        }
    }
    fclose(f);
    return found;
}

/* "start perms flags;" of the areas within 64 KiB of `addr` (for failure reasons). */
static const char *near(void *addr)
{
    static char out[700];
    out[0] = 0;
    FILE *f = fopen("/proc/self/smaps", "re");
    if (!f)
        return "no smaps";
    char line[512], hdr[64] = "";
    unsigned long want = (unsigned long)addr;
    int keep = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long a, b;
        char perms[8];
        if (sscanf(line, "%lx-%lx %7s", &a, &b, perms) == 3 && line[0] != 'V' && strstr(line, "kB") == NULL) {
            keep = b + 65536 > want && a < want + 65536;
            snprintf(hdr, sizeof hdr, "%lx-%lx %s", a, b, perms);
            continue;
        }
        if (keep && strncmp(line, "VmFlags:", 8) == 0) {
            line[strcspn(line, "\n")] = 0;
            size_t n = strlen(out);
            snprintf(out + n, sizeof out - n, "%s:%s;", hdr, line + 8);
        }
    }
    fclose(f);
    return out;
}

static int has_flag(const char *flags, const char *flag)
{
    char buf[512];
    snprintf(buf, sizeof buf, " %s ", flags);
    char want[8];
    snprintf(want, sizeof want, " %s ", flag);
    return strstr(buf, want) != NULL;
}

static void status_field(const char *key, char *out, size_t size)
{
    out[0] = 0;
    FILE *f = fopen("/proc/self/status", "re");
    if (!f)
        return;
    char line[256];
    size_t k = strlen(key);
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, key, k) == 0 && line[k] == ':') {
            char *v = line + k + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            snprintf(out, size, "%s", v);
            out[strcspn(out, "\n")] = 0;
        }
    }
    fclose(f);
}

static int ghost(const char *suffix, const char *text, int flags)
{
    char path[4096];
    wl_path(path, sizeof path, suffix);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    WL_CHECK(fd >= 0, "create %s", path);
    WL_CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text), "write %s", path);
    close(fd);
    fd = open(path, flags | O_CLOEXEC);
    WL_CHECK(fd >= 0, "open %s", path);
    WL_CHECK(unlink(path) == 0, "unlink %s", path);
    return fd;
}

static void check_ghost(int fd, const char *what, const char *text, mode_t mode, uid_t uid, gid_t gid)
{
    struct stat st;
    WL_CHECK(fstat(fd, &st) == 0, "fstat %s", what);
    if ((st.st_mode & 07777) != mode || st.st_uid != uid || st.st_gid != gid || st.st_nlink != 0)
        wl_fail("%s: mode %04o uid %u gid %u nlink %lu, expected %04o %u %u 0", what, st.st_mode & 07777,
                st.st_uid, st.st_gid, (unsigned long)st.st_nlink, mode, uid, gid);
    char buf[256] = { 0 };
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    if (n != (ssize_t)strlen(text) || memcmp(buf, text, (size_t)n) != 0)
        wl_fail("%s: contents \"%.*s\" (%zd bytes), expected \"%s\"", what, (int)(n > 0 ? n : 0), buf, n, text);
}

/* The chrooted child: reports a failure through `rep` (it cannot reach OUTFILE). */
static __attribute__((noreturn)) void chrooted(int rep)
{
    char sub[4096], marker[4096];
    snprintf(sub, sizeof sub, "%s/sub", root_path);
    snprintf(marker, sizeof marker, "%s/marker", root_path);
    if (mkdir(root_path, 0755) != 0 || mkdir(sub, 0755) != 0 || wl_write_file(marker, "inside\n") != 0 ||
        chroot(root_path) != 0 || chdir("/sub") != 0) {
        dprintf(rep, "setup of the chroot %s: %s\n", root_path, strerror(errno));
        _exit(1);
    }
    if (write(rep, "R", 1) != 1)
        _exit(1);
    while (!wl_term)
        wl_sleep_ms(20);
    char cwd[256];
    struct stat st;
    if (!getcwd(cwd, sizeof cwd) || strcmp(cwd, "/sub") != 0) {
        dprintf(rep, "chrooted child: cwd %s, expected /sub\n", cwd);
        _exit(1);
    }
    if (stat("/marker", &st) != 0 || st.st_size != 7) {
        dprintf(rep, "chrooted child: /marker not found in its root (errno %d)\n", errno);
        _exit(1);
    }
    if (stat(root_path, &st) == 0) {
        dprintf(rep, "chrooted child: %s reachable, so its root is not %s\n", root_path, root_path);
        _exit(1);
    }
    _exit(0);
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    wl_path(data_path, sizeof data_path, ".data");
    wl_path(root_path, sizeof root_path, ".root");
    char page[PG];
    int fd = open(data_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    WL_CHECK(fd >= 0, "create %s", data_path);
    for (int p = 0; p < 3; p++) {
        pattern(page, p);
        WL_CHECK(write(fd, page, PG) == PG, "write %s", data_path);
    }
    close(fd);

    fd = open(data_path, O_RDONLY | O_CLOEXEC);
    WL_CHECK(fd >= 0, "open %s", data_path);
    m_priv = mmap(NULL, 2 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    WL_CHECK(m_priv != MAP_FAILED, "private writable mapping of a read-only descriptor");
    memset(m_priv, 'P', 100);
    m_ro_shared = mmap(NULL, PG, PROT_READ, MAP_SHARED, fd, 2 * PG);
    WL_CHECK(m_ro_shared != MAP_FAILED, "shared mapping of a read-only descriptor");
    close(fd);
    fd = open(data_path, O_RDWR | O_CLOEXEC);
    WL_CHECK(fd >= 0, "open %s", data_path);
    m_rw_shared = mmap(NULL, PG, PROT_READ, MAP_SHARED, fd, PG);
    WL_CHECK(m_rw_shared != MAP_FAILED, "read-only shared mapping of a read-write descriptor");
    close(fd);

    m_lock = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    WL_CHECK(m_lock != MAP_FAILED && mlock(m_lock, 4 * PG) == 0, "mlock");
    for (int p = 0; p < 4; p++)
        pattern(m_lock + p * PG, p + 10);
    m_onfault = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    WL_CHECK(m_onfault != MAP_FAILED, "mmap");
    WL_CHECK(syscall(SYS_mlock2, m_onfault, 4 * PG, 1 /* MLOCK_ONFAULT */) == 0, "mlock2(MLOCK_ONFAULT)");
    pattern(m_onfault, 20);
    /* A kernel whose smaps does not show lock-on-fault (lf; 6.1) cannot tell the two locks
     * apart: seamless refuses locked memory there, so this workload locks nothing. */
    char lf[512];
    locks = vmflags(m_onfault, lf, sizeof lf) == 0 && has_flag(lf, "lf");
    if (!locks) {
        WL_CHECK(munlock(m_lock, 4 * PG) == 0 && munlock(m_onfault, 4 * PG) == 0, "munlock");
        fprintf(stderr, "smaps does not show lf here: memory locks left out\n");
    }

    g_zero = ghost(".g0000", "mode zero\n", O_RDWR);
    WL_CHECK(fchmod(g_zero, 0) == 0, "fchmod 0000");
    g_owned = ghost(".gown", "another owner\n", O_RDONLY);
    WL_CHECK(fchown(g_owned, 1234, 1235) == 0 && fchmod(g_owned, 0640) == 0, "fchown/fchmod");

    int rep[2];
    WL_CHECK(pipe2(rep, O_CLOEXEC) == 0, "pipe");
    pid_t child = fork();
    WL_CHECK(child >= 0, "fork");
    if (child == 0) {
        wl_is_child = 1;
        close(rep[0]);
        chrooted(rep[1]);
    }
    close(rep[1]);
    char c;
    if (read(rep[0], &c, 1) != 1 || c != 'R') {
        char why[512] = { 0 };
        ssize_t n = read(rep[0], why, sizeof why - 1);
        (void)n;
        wl_fail("chrooted child did not start: %s", why);
    }
    status_field("VmLck", vmlck_ready, sizeof vmlck_ready);
    wl_ready();

    while (!wl_term)
        wl_sleep_ms(20);

    /* Outside view of the child's root and working directory. */
    char link[4096], want[4096];
    char lpath[64];
    snprintf(lpath, sizeof lpath, "/proc/%d/root", (int)child);
    ssize_t n = readlink(lpath, link, sizeof link - 1);
    link[n > 0 ? n : 0] = 0;
    if (strcmp(link, root_path) != 0)
        wl_fail("child's root is %s, expected %s", link, root_path);
    snprintf(lpath, sizeof lpath, "/proc/%d/cwd", (int)child);
    n = readlink(lpath, link, sizeof link - 1);
    link[n > 0 ? n : 0] = 0;
    snprintf(want, sizeof want, "%s/sub", root_path);
    if (strcmp(link, want) != 0)
        wl_fail("child's cwd is %s, expected %s", link, want);
    kill(child, SIGTERM);
    int st;
    WL_CHECK(waitpid(child, &st, 0) == child, "waitpid");
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        char why[512] = { 0 };
        n = read(rep[0], why, sizeof why - 1);
        why[strcspn(why, "\n")] = 0;
        wl_fail("chrooted child failed (status %#x): %s", st, n > 0 ? why : "no reason");
    }

    /* Private writable mapping of a read-only descriptor. */
    char flags[512];
    for (int p = 0; p < 2; p++) {
        pattern(page, p);
        if (p == 0)
            memset(page, 'P', 100);
        if (memcmp(m_priv + p * PG, page, PG) != 0)
            wl_fail("private file mapping page %d differs", p);
    }
    fd = open(data_path, O_RDONLY | O_CLOEXEC);
    WL_CHECK(fd >= 0, "open %s", data_path);
    char filepage[PG];
    pattern(page, 0);
    WL_CHECK(pread(fd, filepage, PG, 0) == PG, "pread");
    if (memcmp(filepage, page, PG) != 0)
        wl_fail("the private mapping's write reached the file");

    /* Shared mappings: may they write? */
    if (vmflags(m_rw_shared, flags, sizeof flags) != 0 || !has_flag(flags, "mw"))
        wl_fail("read-only shared mapping of an O_RDWR file: VmFlags \"%s\" without mw", flags);
    if (mprotect(m_rw_shared, PG, PROT_READ | PROT_WRITE) != 0)
        wl_fail("mprotect(PROT_WRITE) of the shared mapping of an O_RDWR file: errno %d", errno);
    m_rw_shared[5] = '!';
    WL_CHECK(msync(m_rw_shared, PG, MS_SYNC) == 0, "msync");
    WL_CHECK(pread(fd, filepage, 16, PG) == 16, "pread");
    if (filepage[5] != '!')
        wl_fail("write through the re-protected shared mapping did not reach the file");
    if (vmflags(m_ro_shared, flags, sizeof flags) != 0 || has_flag(flags, "mw"))
        wl_fail("shared mapping of an O_RDONLY file: VmFlags \"%s\" (mw must be absent)", flags);
    errno = 0;
    if (mprotect(m_ro_shared, PG, PROT_READ | PROT_WRITE) == 0 || errno != EACCES)
        wl_fail("mprotect(PROT_WRITE) of the shared mapping of an O_RDONLY file: %d errno %d, expected EACCES",
                0, errno);
    pattern(page, 2);
    if (memcmp(m_ro_shared, page, PG) != 0)
        wl_fail("shared read-only mapping differs");
    close(fd);

    /* Locked areas. */
    if (locks) {
        if (vmflags(m_lock, flags, sizeof flags) != 0 || !has_flag(flags, "lo") || has_flag(flags, "lf"))
            wl_fail("mlock'ed area %p: expected lo without lf; areas near it: %s", (void *)m_lock, near(m_lock));
        /* A kernel without a name for VM_LOCKONFAULT (6.1, after an upgrade from 6.12) shows "??". */
        if (vmflags(m_onfault, flags, sizeof flags) != 0 || !has_flag(flags, "lo")
            || !(has_flag(flags, "lf") || has_flag(flags, "??")))
            wl_fail("mlock2(MLOCK_ONFAULT) area %p: expected lo and lf; areas near it: %s", (void *)m_onfault,
                    near(m_onfault));
        unsigned char vec[4];
        WL_CHECK(mincore(m_onfault, 4 * PG, vec) == 0, "mincore");
        if (!(vec[0] & 1) || (vec[1] & 1) || (vec[2] & 1) || (vec[3] & 1))
            wl_fail("lock-on-fault area residency %d%d%d%d, expected 1000", vec[0] & 1, vec[1] & 1, vec[2] & 1,
                    vec[3] & 1);
        WL_CHECK(mincore(m_lock, 4 * PG, vec) == 0, "mincore");
        for (int p = 0; p < 4; p++) {
            pattern(page, p + 10);
            if (!(vec[p] & 1) || memcmp(m_lock + p * PG, page, PG) != 0)
                wl_fail("locked page %d: resident %d or contents differ", p, vec[p] & 1);
        }
        pattern(page, 20);
        if (memcmp(m_onfault, page, PG) != 0)
            wl_fail("lock-on-fault page 0 differs");
    }
    char vmlck[64];
    status_field("VmLck", vmlck, sizeof vmlck);
    if (strcmp(vmlck, vmlck_ready) != 0)
        wl_fail("VmLck %s, was %s", vmlck, vmlck_ready);

    /* Deleted files. */
    check_ghost(g_zero, "deleted file of mode 0000", "mode zero\n", 0, getuid(), getgid());
    check_ghost(g_owned, "deleted file of uid 1234", "another owner\n", 0640, 1234, 1235);
    int acc = fcntl(g_zero, F_GETFL) & O_ACCMODE;
    if (acc != O_RDWR || pwrite(g_zero, "M", 1, 0) != 1)
        wl_fail("deleted file of mode 0000: access mode %d or not writable (errno %d)", acc, errno);
    acc = fcntl(g_owned, F_GETFL) & O_ACCMODE;
    if (acc != O_RDONLY)
        wl_fail("deleted file of uid 1234: access mode %d, expected O_RDONLY", acc);
    wl_pass();
}
