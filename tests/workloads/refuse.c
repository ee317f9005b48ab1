/* refuse MODE: holds one resource seamless cannot restore exactly, so `seamless dump` and
 * `seamless check` must refuse it up front, naming the pid and the resource, and leave the
 * process unharmed. Like refuse_netlink it keeps a heartbeat (8 bytes at offset 0 of
 * OUTFILE.progress, rewritten every 10 ms); after SIGTERM it checks the resource is exactly as
 * it was set up.
 *
 * Modes:
 *   cwd            the working directory is a deleted directory (OUTFILE.d, removed)
 *   exe            the executable was deleted (the workload re-executes a copy, then unlinks it)
 *   memfd_huge     a huge-page memfd (MFD_HUGETLB)
 *   unix_closed    a stream socketpair end with 1000 unread bytes whose peer end is closed
 *                  (carried now: the host tests run it as a round trip)
 *   unix_rights    a stream socketpair end with 10 unread bytes carrying a pipe's read end
 *                  (SCM_RIGHTS, a descriptor in flight); afterwards the bytes and the pipe
 *                  arrive, and the pipe still holds its 2 bytes (carried now: a round trip)
 *   unix_creds_gone a datagram socket with SO_PASSCRED holding a message from a child that
 *                  exited (SCM_CREDENTIALS of a pid that is gone); afterwards the message still
 *                  shows that pid
 *   unix_peeked_empty a datagram socketpair end whose queue starts with an empty message the
 *                  process peeked at (hidden from a walk of the queue), then "x"; afterwards
 *                  both arrive in order
 *   unix_nested    a stream socketpair end with 10 unread bytes carrying the end of another
 *                  stream pair (kept only in flight) that has a pipe's read end in flight in
 *                  its own queue; afterwards the socket, then the pipe arrive
 *   seccomp_strict the leader runs in SECCOMP_MODE_STRICT (a thread keeps the heartbeat)
 *   seccomp_filter a seccomp filter that kills the process on getitimer (a call the dump injects)
 *   seccomp_args   a filter like MemoryDenyWriteExecute=: mmap and mprotect asking for PROT_EXEC
 *                  fail with EPERM (it reads mmap's arguments, so whether the dump's own mmap
 *                  passes cannot be known); afterwards an executable mmap still fails, a plain one
 *                  works
 *   fifo_deleted   a FIFO opened read-write, then unlinked, with 300 bytes in it
 *   dir_deleted    a descriptor of a directory that was removed
 *                  (cwd, exe, fifo_deleted and dir_deleted are carried now: the host tests
 *                  run them as round trips)
 *   relinked       an open file whose name was removed while another hard link keeps it
 *   ebpf_filter    a UDP socket with an eBPF socket filter (SO_ATTACH_BPF) that keeps only
 *                  datagrams whose first byte is 'A' (no classic form to save)
 *   accept_queue   a TCP listener with a connection not yet accepted
 *   tcp_half_closed a loopback TCP connection whose client end shut its sending side down:
 *                  client in FIN_WAIT2, server end in CLOSE_WAIT (carried now: the host
 *                  tests run it as a round trip); afterwards the server end reads EOF and can
 *                  still send
 *   tcp_syn_sent   a non-blocking connect in progress (SYN_SENT): its SYNs are dropped by a
 *                  loopback listener whose accept queue (backlog 0) is full; still SYN_SENT afterwards
 *   clone_vm       a child made with clone(CLONE_VM) shares the root's memory
 *   compat32       a thread runs 32-bit code (far jump to the compat code segment, int 0x80
 *                  nanosleep loop)
 *   sud            syscall user dispatch is on (selector: allow); still traps after the dump
 *   netns          the process unshared its network namespace (it has only a loopback device)
 *   flock          an exclusive flock on OUTFILE.lock (a child's LOCK_NB attempt still fails)
 *   sched_batch    the process runs under SCHED_BATCH
 *   affinity       the process is pinned to CPU 0
 *   oom            oom_score_adj 500
 *   thp            PR_SET_THP_DISABLE
 *                  (these five are carried now: the host tests run them as round trips)
 *   mlock          one locked page (mlock): carried now, run as a round trip
 *   clone_files    a child sharing the root's descriptor table (CLONE_FILES without CLONE_VM):
 *                  still shared afterwards (kcmp), a descriptor the child opens shows in the root
 *   root_deleted   chrooted into a directory that was removed afterwards (OUTFILE is reached
 *                  relative to the working directory, which stays outside that root)
 *   mlockall       mlockall(MCL_CURRENT | MCL_FUTURE): every area locked, and so is a new one
 *   async_io       a pipe with O_ASYNC and F_SETOWN: writing to it still raises SIGIO
 *   unix_unlinked  a unix listener whose socket file was removed
 *   unix_rebound   a unix listener whose path now belongs to another listener
 *   ctty_outside   the process leads a session whose controlling terminal is a pty whose
 *                  master only a daemon outside the dumped tree holds (like a terminal
 *                  emulator or sshd); the daemon exits when the workload is gone
 *   pty_slave_outside the process holds a pty master whose slave a daemon outside the dumped
 *                  tree holds open (the daemon exits when the workload is gone)
 *   pidfd_outside  a pidfd of the parent (the runner, outside the dumped tree)
 *   inotify_queued an inotify watch on OUTFILE.iq with one event not read yet
 *   sched_deadline a thread runs under SCHED_DEADLINE (runtime 1 ms, deadline and period 100 ms)
 *   thread_creds   a thread dropped CAP_KILL from its own effective set (capset is per thread)
 *   lease_signal   a read lease on OUTFILE.lease whose break signal is SIGUSR1 (F_SETSIG)
 *   traced         a thread of the root is in a ptrace stop of a child (PTRACE_SEIZE +
 *                  PTRACE_INTERRUPT); afterwards it is still stopped, and runs once the child
 *                  detaches
 *   sem_undo       a System V semaphore raised with SEM_UNDO (an undo list the kernel does not show)
 *   shm_partial    a System V segment of 3 pages attached with its middle page made read-only
 *   mq_notify_pending an (unlinked) POSIX message queue with an mq_notify(SIGUSR2) registration
 *                  while a SIGUSR2 is pending (blocked): the notification's own signal could not
 *                  be told apart (registrations themselves are carried: workload mq_notify)
 *   fanotify       a fanotify group (FAN_CLASS_NOTIF) with a mark on OUTFILE.fan (FAN_MODIFY) and
 *                  one on the mount holding it; afterwards a write to the file is reported
 *   aio            an aio context (io_setup) with its ring mapped; afterwards io_destroy works
 */
#include "wl.h"
#include <arpa/inet.h>
#include <linux/bpf.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <net/if.h>
#include <sched.h>
#include <sys/file.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <sys/ptrace.h>
#include <termios.h>
#include <sys/inotify.h>
#include <sys/fanotify.h>
#include <linux/aio_abi.h>
#include <sys/ipc.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <mqueue.h>

static int prog = -1;
static uint64_t beat;

static void heartbeat(void)
{
    beat++;
    WL_CHECK(pwrite(prog, &beat, sizeof beat, 0) == sizeof beat, "heartbeat");
}

static void open_progress(void)
{
    char path[4096];
    wl_path(path, sizeof path, ".progress");
    prog = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    WL_CHECK(prog >= 0, "open %s", path);
    beat = 0;
    heartbeat();
}

static void beat_until_term(void)
{
    while (!wl_term) {
        heartbeat();
        wl_sleep_ms(10);
    }
}

/* ---- A thread with attributes of its own (sched_deadline, thread_creds). ---- */
static volatile pid_t own_tid;
static volatile int own_state; /* 0 starting, 1 set up, -1 failed */
static const char *own_mode;

struct wl_sched_attr {
    uint32_t size, policy;
    uint64_t flags;
    int32_t nice;
    uint32_t priority;
    uint64_t runtime, deadline, period;
};

static void *own_thread(void *arg)
{
    (void)arg;
    own_tid = (pid_t)syscall(SYS_gettid);
    int ok;
    if (strcmp(own_mode, "sched_deadline") == 0) {
        struct wl_sched_attr a = { sizeof a, 6 /* SCHED_DEADLINE */, 0, 0, 0, 1000000, 100000000, 100000000 };
        ok = syscall(SYS_sched_setattr, 0, &a, 0) == 0;
    } else {
        struct { uint32_t version; int pid; } h = { 0x20080522, 0 };
        struct { uint32_t eff, prm, inh; } d[2];
        ok = syscall(SYS_capget, &h, d) == 0;
        d[0].eff &= ~(1u << 5); /* CAP_KILL */
        ok = ok && syscall(SYS_capset, &h, d) == 0;
    }
    own_state = ok ? 1 : -1;
    for (;;)
        wl_sleep_ms(20);
    return NULL;
}

static void start_own_thread(const char *mode)
{
    own_mode = mode;
    pthread_t t;
    WL_CHECK(pthread_create(&t, NULL, own_thread, NULL) == 0, "pthread_create");
    while (own_state == 0)
        wl_sleep_ms(1);
    WL_CHECK(own_state == 1, "setting up the thread for %s", mode);
}

/* ---- traced: a second thread of the root counts in a shared page; a child traces and stops it. */
struct traced_page {
    volatile pid_t tid;
    volatile uint64_t count;
    volatile int stopped;
};
static struct traced_page *tp;
static pid_t tracer_child;

static void *traced_spin(void *arg)
{
    (void)arg;
    tp->tid = (pid_t)syscall(SYS_gettid);
    for (;;) {
        tp->count++;
        wl_sleep_ms(2);
    }
    return NULL;
}

static void mode_traced(void)
{
    tp = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    WL_CHECK(tp != MAP_FAILED, "mmap shared");
    pthread_t th;
    WL_CHECK(pthread_create(&th, NULL, traced_spin, NULL) == 0, "pthread_create");
    while (tp->tid == 0 || tp->count < 5)
        wl_sleep_ms(5);
    /* Any process may trace its parent's threads only with Yama off or ptrace_scope 0: as root
     * (the tests run as root) PTRACE_SEIZE works regardless. */
    tracer_child = fork();
    WL_CHECK(tracer_child >= 0, "fork");
    if (tracer_child == 0) {
        wl_is_child = 1;
        pid_t t = tp->tid;
        WL_CHECK(ptrace(PTRACE_SEIZE, t, 0, 0) == 0, "PTRACE_SEIZE %d", (int)t);
        WL_CHECK(ptrace(PTRACE_INTERRUPT, t, 0, 0) == 0, "PTRACE_INTERRUPT");
        int st;
        WL_CHECK(waitpid(t, &st, __WALL) == t && WIFSTOPPED(st), "waitpid for the ptrace stop");
        tp->stopped = 1;
        wl_wait_term();
        WL_CHECK(ptrace(PTRACE_DETACH, t, 0, 0) == 0, "PTRACE_DETACH");
        wl_pass();
    }
    while (!tp->stopped)
        wl_sleep_ms(5);
}

static void verify_traced(void)
{
    pid_t t = tp->tid;
    char s = wl_task_state(getpid(), t);
    if (s != 't')
        wl_fail("thread %d is in state %c, expected t (still in the child's ptrace stop)", (int)t, s);
    uint64_t before = tp->count;
    wl_sleep_ms(100);
    if (tp->count != before)
        wl_fail("the traced thread ran while in its ptrace stop");
    kill(tracer_child, SIGTERM);
    int st;
    WL_CHECK(waitpid(tracer_child, &st, 0) == tracer_child, "waitpid child");
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        wl_fail("the tracing child ended with status %#x", st);
    double t0 = wl_now(CLOCK_MONOTONIC);
    while (tp->count == before) {
        if (wl_now(CLOCK_MONOTONIC) > t0 + 5)
            wl_fail("the thread did not run again after PTRACE_DETACH");
        wl_sleep_ms(5);
    }
}

static void fd_link(int fd, char *out, size_t size)
{
    char p[64];
    snprintf(p, sizeof p, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(p, out, size - 1);
    WL_CHECK(n > 0, "readlink %s", p);
    out[n] = 0;
}

/* ---- seccomp strict: the leader blocks in read() on a pipe and echoes every byte back;
 * the heartbeat thread pings it and does the verdict. ---- */
static int ping[2], pong[2];
static pid_t leader_tid;

static void *strict_helper(void *arg)
{
    (void)arg;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    char c = 'x';
    int ready_sent = 0;
    while (!wl_term) {
        heartbeat();
        WL_CHECK(write(ping[1], &c, 1) == 1, "ping the strict leader");
        char r;
        ssize_t n;
        while ((n = read(pong[0], &r, 1)) < 0 && errno == EINTR)
            ;
        WL_CHECK(n == 1 && r == c, "pong from the strict leader");
        /* The leader only echoes once it is in strict mode: only now is everything in place. */
        if (!ready_sent) {
            ready_sent = 1;
            wl_ready();
        }
        c = c == 'x' ? 'y' : 'x';
        wl_sleep_ms(10);
    }
    char mode[32];
    char key[64];
    snprintf(key, sizeof key, "%d", (int)leader_tid);
    char path[128], line[256];
    snprintf(path, sizeof path, "/proc/self/task/%d/status", (int)leader_tid);
    FILE *f = fopen(path, "re");
    WL_CHECK(f != NULL, "open %s", path);
    mode[0] = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "Seccomp: %31s", mode) == 1)
            break;
    fclose(f);
    if (strcmp(mode, "1") != 0)
        wl_fail("leader %s Seccomp is %s, expected 1 (strict)", key, mode);
    /* exit_group from this (unrestricted) thread ends the strict leader too. */
    wl_pass();
    return NULL;
}

static void mode_seccomp_strict(void)
{
    WL_CHECK(pipe(ping) == 0 && pipe(pong) == 0, "pipes");
    leader_tid = getpid();
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    WL_CHECK(pthread_sigmask(SIG_BLOCK, &set, NULL) == 0, "block SIGTERM in the leader");
    pthread_t t;
    WL_CHECK(pthread_create(&t, NULL, strict_helper, NULL) == 0, "pthread_create");
    WL_CHECK(prctl(PR_SET_SECCOMP, SECCOMP_MODE_STRICT) == 0, "PR_SET_SECCOMP strict");
    /* From here on only read, write, exit and rt_sigreturn are allowed in this thread. */
    for (;;) {
        char c;
        if (syscall(SYS_read, ping[0], &c, 1) == 1)
            syscall(SYS_write, pong[1], &c, 1);
    }
}

/* ---- seccomp filter: kill the process on getitimer. ---- */
/* ---- seccomp args: kill on mmap or mprotect asking for writable and executable memory. ---- */
static void mode_seccomp_args(void)
{
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_mmap, 1, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_mprotect, 0, 3),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[2])),
        BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, PROT_EXEC, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog fp = { .len = sizeof f / sizeof f[0], .filter = f };
    WL_CHECK(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0, "no_new_privs");
    WL_CHECK(prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &fp) == 0, "seccomp filter");
}

static void mode_seccomp_filter(void)
{
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_getitimer, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog fp = { .len = sizeof f / sizeof f[0], .filter = f };
    WL_CHECK(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0, "no_new_privs");
    WL_CHECK(prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &fp) == 0, "seccomp filter");
}

/* ---- clone_vm: the child sleeps until the root sets `stop`, then acknowledges. ---- */
static volatile int vm_stop, vm_ack, vm_started;

static int vm_child(void *arg)
{
    (void)arg;
    vm_started = 1;
    while (!vm_stop)
        wl_sleep_ms(10);
    vm_ack = 1;
    return 0;
}

/* ---- clone_files: the child shares the root's descriptor table; on SIGUSR1 it opens
 * /dev/null at descriptor 200 (which the root then sees), then it sleeps until killed. ---- */
static volatile sig_atomic_t files_go;
static void on_files_go(int sig) { (void)sig; files_go = 1; }

static int files_child(void *arg)
{
    (void)arg;
    for (;;) {
        if (files_go) {
            files_go = 0;
            int n = open("/dev/null", O_RDONLY | O_CLOEXEC);
            if (n >= 0 && n != 200) {
                dup2(n, 200);
                close(n);
            }
        }
        wl_sleep_ms(10);
    }
    return 0;
}

/* ---- compat32: 32-bit code in a page below 4 GiB: nanosleep(&ts, 0) by int 0x80 in a loop. */
static volatile uint8_t *c32_page;

static void *compat32_thread(void *arg)
{
    (void)arg;
    struct __attribute__((packed)) {
        uint32_t off;
        uint16_t sel;
    } far = { (uint32_t)(uintptr_t)c32_page, 0x23 };
    __asm__ volatile("ljmpl *%0" : : "m"(far) : "memory");
    return NULL;
}

static void compat32_setup(void)
{
    c32_page = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
    WL_CHECK(c32_page != MAP_FAILED, "mmap MAP_32BIT");
    uint32_t ts = (uint32_t)(uintptr_t)c32_page + 64;
    /* struct timespec (32-bit): 0 s, 20 ms */
    uint32_t tv[2] = { 0, 20000000 };
    memcpy((void *)(c32_page + 64), tv, sizeof tv);
    uint32_t flag = (uint32_t)(uintptr_t)c32_page + 128;
    uint8_t code[30] = { 0xb8, 0x2b, 0, 0, 0,       /* mov $__USER_DS, %eax */
                         0x8e, 0xd8,                /* mov %eax, %ds (null in 64-bit mode) */
                         0xc6, 0x05, 0, 0, 0, 0, 1, /* movb $1, flag: "in 32-bit code now" */
                         0xb8, 162, 0, 0, 0,        /* loop: mov $162 (nanosleep), %eax */
                         0xbb, 0, 0, 0, 0,          /* mov $ts, %ebx */
                         0x31, 0xc9,                /* xor %ecx, %ecx */
                         0xcd, 0x80,                /* int $0x80 */
                         0xeb, 0xf0 };              /* jmp loop */
    memcpy(code + 9, &flag, 4);
    memcpy(code + 20, &ts, 4);
    memcpy((void *)c32_page, code, sizeof code);
    pthread_t t;
    WL_CHECK(pthread_create(&t, NULL, compat32_thread, NULL) == 0, "pthread_create");
    /* READY only once the thread runs 32-bit code. */
    for (int i = 0; i < 3000 && !c32_page[128]; i++)
        wl_sleep_ms(10);
    WL_CHECK(c32_page[128] == 1, "the 32-bit thread never started");
}

/* ---- sud: syscall user dispatch with an allowing selector. ---- */
#ifndef PR_SET_SYSCALL_USER_DISPATCH
#define PR_SET_SYSCALL_USER_DISPATCH 59
#define PR_SYS_DISPATCH_ON 1
#endif
static volatile char sud_selector; /* 0: SYSCALL_DISPATCH_FILTER_ALLOW, 1: BLOCK */
static volatile sig_atomic_t sud_traps;

static void on_sigsys(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)si;
    (void)uc;
    sud_selector = 0; /* allow again, or the handler's own rt_sigreturn would trap */
    sud_traps++;
}

static volatile sig_atomic_t sigio_count;
static void on_sigio(int sig)
{
    (void)sig;
    sigio_count++;
}

static int unix_listener(const char *path)
{
    int l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
    WL_CHECK(l >= 0 && bind(l, (struct sockaddr *)&a, sizeof a) == 0 && listen(l, 4) == 0, "unix listener %s", path);
    return l;
}

static int unix_connect(const char *path)
{
    int c = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
    if (c < 0 || connect(c, (struct sockaddr *)&a, sizeof a) != 0) {
        if (c >= 0)
            close(c);
        return -1;
    }
    return c;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 2 ? argv[2] : "";
    if (strcmp(mode, "exe") == 0 && argc > 3) {
        /* The re-executed copy: OUTFILE exe COPY. Unlink the copy we run from. */
        wl_init(argc, argv);
        WL_CHECK(unlink(argv[3]) == 0, "unlink %s", argv[3]);
    } else if (strcmp(mode, "exe") == 0) {
        wl_init(argc, argv);
        char copy[4096];
        wl_path(copy, sizeof copy, ".exe");
        int in = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
        int out = open(copy, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
        WL_CHECK(in >= 0 && out >= 0, "copying the executable to %s", copy);
        char buf[65536];
        ssize_t n;
        while ((n = read(in, buf, sizeof buf)) > 0)
            WL_CHECK(write(out, buf, (size_t)n) == n, "write %s", copy);
        close(in);
        close(out);
        char *args[] = { copy, argv[1], "exe", copy, NULL };
        execv(copy, args);
        wl_fail("execv %s: %s", copy, strerror(errno));
    } else {
        wl_init(argc, argv);
    }
    open_progress();
    char path[4096], lnk[4096];
    int fd = -1, fd2 = -1;
    volatile char *map = NULL;

    if (strcmp(mode, "cwd") == 0) {
        wl_path(path, sizeof path, ".d");
        WL_CHECK(mkdir(path, 0755) == 0, "mkdir %s", path);
        WL_CHECK(chdir(path) == 0, "chdir %s", path);
        WL_CHECK(rmdir(path) == 0, "rmdir %s", path);
    } else if (strcmp(mode, "root_deleted") == 0) {
        static char dir[4096];
        snprintf(dir, sizeof dir, "%s", wl_outfile);
        char *slash = strrchr(dir, '/');
        WL_CHECK(slash != NULL, "OUTFILE %s is not absolute", wl_outfile);
        *slash = 0;
        WL_CHECK(chdir(dir[0] ? dir : "/") == 0, "chdir %s", dir);
        wl_outfile = slash + 1;
        wl_path(path, sizeof path, ".root");
        WL_CHECK(mkdir(path, 0755) == 0 && chroot(path) == 0 && rmdir(path) == 0, "chroot into %s, rmdir", path);
    } else if (strcmp(mode, "exe") == 0) {
        /* set up above */
    } else if (strcmp(mode, "memfd_huge") == 0) {
        fd = memfd_create("wl-memfd-huge", MFD_HUGETLB | MFD_CLOEXEC);
        WL_CHECK(fd >= 0, "memfd_create(MFD_HUGETLB)");
    } else if (strcmp(mode, "unix_closed") == 0) {
        int sv[2];
        WL_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0, "socketpair");
        char buf[1000];
        for (int i = 0; i < 1000; i++)
            buf[i] = (char)(i * 7);
        WL_CHECK(write(sv[1], buf, sizeof buf) == sizeof buf, "write to the pair");
        close(sv[1]);
        fd = sv[0];
    } else if (strcmp(mode, "unix_rights") == 0) {
        int sv[2], pp[2];
        WL_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0, "socketpair");
        WL_CHECK(pipe2(pp, O_CLOEXEC) == 0 && write(pp[1], "hi", 2) == 2, "pipe");
        char cbuf[CMSG_SPACE(sizeof(int))];
        memset(cbuf, 0, sizeof cbuf);
        struct iovec iov = { .iov_base = "0123456789", .iov_len = 10 };
        struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf };
        struct cmsghdr *h = CMSG_FIRSTHDR(&m);
        h->cmsg_level = SOL_SOCKET;
        h->cmsg_type = SCM_RIGHTS;
        h->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(h), &pp[0], sizeof(int));
        WL_CHECK(sendmsg(sv[1], &m, 0) == 10, "sendmsg SCM_RIGHTS");
        close(pp[0]);
        fd = sv[0];
        fd2 = pp[1];
    } else if (strcmp(mode, "unix_peeked_empty") == 0) {
        int sv[2];
        char c;
        WL_CHECK(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv) == 0, "socketpair");
        WL_CHECK(send(sv[1], "", 0, 0) == 0 && send(sv[1], "x", 1, 0) == 1, "send");
        WL_CHECK(recv(sv[0], &c, 1, MSG_PEEK) == 0, "peek the empty message");
        fd = sv[0];
        fd2 = sv[1];
    } else if (strcmp(mode, "unix_creds_gone") == 0) {
        int sv[2], on = 1;
        WL_CHECK(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv) == 0, "socketpair");
        WL_CHECK(setsockopt(sv[0], SOL_SOCKET, SO_PASSCRED, &on, sizeof on) == 0, "SO_PASSCRED");
        pid_t c = fork();
        WL_CHECK(c >= 0, "fork");
        if (c == 0)
            _exit(send(sv[1], "gone", 4, 0) == 4 ? 0 : 1);
        int st;
        WL_CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 0, "sender");
        fd = sv[0];
        fd2 = c;
    } else if (strcmp(mode, "unix_nested") == 0) {
        int sv[2], bv[2], pp[2];
        WL_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0, "socketpair");
        WL_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, bv) == 0, "socketpair 2");
        WL_CHECK(pipe2(pp, O_CLOEXEC) == 0 && write(pp[1], "hi", 2) == 2, "pipe");
        for (int k = 0; k < 2; k++) {
            char cbuf[CMSG_SPACE(sizeof(int))];
            memset(cbuf, 0, sizeof cbuf);
            struct iovec iov = { .iov_base = "0123456789", .iov_len = 10 };
            struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf };
            struct cmsghdr *h = CMSG_FIRSTHDR(&m);
            h->cmsg_level = SOL_SOCKET;
            h->cmsg_type = SCM_RIGHTS;
            h->cmsg_len = CMSG_LEN(sizeof(int));
            memcpy(CMSG_DATA(h), k == 0 ? &pp[0] : &bv[1], sizeof(int));
            WL_CHECK(sendmsg(k == 0 ? bv[0] : sv[1], &m, 0) == 10, "sendmsg SCM_RIGHTS %d", k);
        }
        close(pp[0]);
        close(bv[1]);
        fd = sv[0];
        fd2 = bv[0];
    } else if (strcmp(mode, "seccomp_strict") == 0) {
        mode_seccomp_strict(); /* READY comes from its helper thread */
    } else if (strcmp(mode, "seccomp_filter") == 0) {
        mode_seccomp_filter();
    } else if (strcmp(mode, "seccomp_args") == 0) {
        mode_seccomp_args();
    } else if (strcmp(mode, "fifo_deleted") == 0) {
        wl_path(path, sizeof path, ".fifo");
        WL_CHECK(mkfifo(path, 0600) == 0, "mkfifo %s", path);
        fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
        WL_CHECK(fd >= 0, "open %s", path);
        char buf[300];
        memset(buf, 'f', sizeof buf);
        WL_CHECK(write(fd, buf, sizeof buf) == sizeof buf, "write fifo");
        WL_CHECK(unlink(path) == 0, "unlink %s", path);
    } else if (strcmp(mode, "dir_deleted") == 0) {
        wl_path(path, sizeof path, ".dir");
        WL_CHECK(mkdir(path, 0755) == 0, "mkdir %s", path);
        fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        WL_CHECK(fd >= 0, "open %s", path);
        WL_CHECK(rmdir(path) == 0, "rmdir %s", path);
    } else if (strcmp(mode, "relinked") == 0) {
        wl_path(path, sizeof path, ".orig");
        fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        WL_CHECK(fd >= 0 && write(fd, "original", 8) == 8, "create %s", path);
        char other[4096];
        wl_path(other, sizeof other, ".other");
        WL_CHECK(link(path, other) == 0, "link %s %s", path, other);
        WL_CHECK(unlink(path) == 0, "unlink %s", path);
    } else if (strcmp(mode, "ebpf_filter") == 0) {
        /* r0 = first payload byte (skb offset 8, past the UDP header); keep the datagram when
         * it is 'A', drop it otherwise. */
        struct bpf_insn insns[] = {
            { .code = BPF_ALU64 | BPF_MOV | BPF_X, .dst_reg = 6, .src_reg = 1 },
            { .code = BPF_LD | BPF_ABS | BPF_B, .imm = 8 },
            { .code = BPF_JMP | BPF_JEQ | BPF_K, .dst_reg = 0, .off = 2, .imm = 'A' },
            { .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = 0, .imm = 0 },
            { .code = BPF_JMP | BPF_EXIT },
            { .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = 0, .imm = 0xffff },
            { .code = BPF_JMP | BPF_EXIT },
        };
        union bpf_attr attr;
        memset(&attr, 0, sizeof attr);
        attr.prog_type = BPF_PROG_TYPE_SOCKET_FILTER;
        attr.insns = (uint64_t)(uintptr_t)insns;
        attr.insn_cnt = sizeof insns / sizeof insns[0];
        attr.license = (uint64_t)(uintptr_t)"GPL";
        int pfd = (int)syscall(SYS_bpf, BPF_PROG_LOAD, &attr, sizeof attr);
        WL_CHECK(pfd >= 0, "BPF_PROG_LOAD");
        fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        WL_CHECK(bind(fd, (struct sockaddr *)&a, sizeof a) == 0, "bind udp");
        WL_CHECK(setsockopt(fd, SOL_SOCKET, SO_ATTACH_BPF, &pfd, sizeof pfd) == 0, "SO_ATTACH_BPF");
        close(pfd);
        fd2 = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        WL_CHECK(fd2 >= 0, "udp socket");
    } else if (strcmp(mode, "accept_queue") == 0) {
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof a;
        WL_CHECK(bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && listen(fd, 4) == 0, "listen");
        WL_CHECK(getsockname(fd, (struct sockaddr *)&a, &len) == 0, "getsockname");
        fd2 = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        WL_CHECK(connect(fd2, (struct sockaddr *)&a, sizeof a) == 0, "connect");
        WL_CHECK(write(fd2, "hello", 5) == 5, "write client");
        wl_sleep_ms(50); /* the handshake completes in the kernel */
    } else if (strcmp(mode, "tcp_half_closed") == 0) {
        int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof a;
        WL_CHECK(bind(l, (struct sockaddr *)&a, sizeof a) == 0 && listen(l, 4) == 0, "listen");
        WL_CHECK(getsockname(l, (struct sockaddr *)&a, &len) == 0, "getsockname");
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        WL_CHECK(connect(fd, (struct sockaddr *)&a, sizeof a) == 0, "connect");
        fd2 = accept4(l, NULL, NULL, SOCK_CLOEXEC);
        WL_CHECK(fd2 >= 0, "accept");
        close(l);
        WL_CHECK(shutdown(fd, SHUT_WR) == 0, "shutdown client");
        wl_sleep_ms(50); /* the FIN is acknowledged in the kernel */
    } else if (strcmp(mode, "tcp_syn_sent") == 0) {
        /* The connecting socket first: the lowest descriptor, found before the listener. */
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof a;
        WL_CHECK(bind(l, (struct sockaddr *)&a, sizeof a) == 0 && listen(l, 0) == 0, "listen");
        WL_CHECK(getsockname(l, (struct sockaddr *)&a, &len) == 0, "getsockname");
        fd2 = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        WL_CHECK(connect(fd2, (struct sockaddr *)&a, sizeof a) == 0, "connect filling the accept queue");
        wl_sleep_ms(50);
        WL_CHECK(connect(fd, (struct sockaddr *)&a, sizeof a) < 0 && errno == EINPROGRESS, "non-blocking connect");
        wl_sleep_ms(50);
        struct tcp_info ti;
        socklen_t tl = sizeof ti;
        WL_CHECK(getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &tl) == 0 && ti.tcpi_state == TCP_SYN_SENT,
                 "the connect is not in SYN_SENT (state %d)", ti.tcpi_state);
    } else if (strcmp(mode, "clone_vm") == 0) {
        static char stack[256 * 1024] __attribute__((aligned(16)));
        pid_t c = clone(vm_child, stack + sizeof stack, CLONE_VM | SIGCHLD, NULL);
        WL_CHECK(c > 0, "clone(CLONE_VM)");
        fd = c;
        while (!vm_started)
            wl_sleep_ms(5);
    } else if (strcmp(mode, "clone_files") == 0) {
        static char fstack[256 * 1024] __attribute__((aligned(16)));
        signal(SIGUSR1, on_files_go);
        pid_t c = clone(files_child, fstack + sizeof fstack, CLONE_FILES | SIGCHLD, NULL);
        WL_CHECK(c > 0, "clone(CLONE_FILES)");
        fd = c;
    } else if (strcmp(mode, "compat32") == 0) {
        compat32_setup();
    } else if (strcmp(mode, "sud") == 0) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = on_sigsys;
        sa.sa_flags = SA_SIGINFO;
        WL_CHECK(sigaction(SIGSYS, &sa, NULL) == 0, "sigaction SIGSYS");
        WL_CHECK(prctl(PR_SET_SYSCALL_USER_DISPATCH, PR_SYS_DISPATCH_ON, 0, 0, &sud_selector) == 0,
                 "PR_SET_SYSCALL_USER_DISPATCH");
    } else if (strcmp(mode, "netns") == 0) {
        WL_CHECK(unshare(CLONE_NEWNET) == 0, "unshare(CLONE_NEWNET)");
    } else if (strcmp(mode, "flock") == 0) {
        wl_path(path, sizeof path, ".lock");
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        WL_CHECK(fd >= 0 && flock(fd, LOCK_EX) == 0, "flock %s", path);
    } else if (strcmp(mode, "sched_batch") == 0) {
        struct sched_param sp = { 0 };
        WL_CHECK(sched_setscheduler(0, SCHED_BATCH, &sp) == 0, "SCHED_BATCH");
    } else if (strcmp(mode, "affinity") == 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(0, &set);
        WL_CHECK(sched_setaffinity(0, sizeof set, &set) == 0, "sched_setaffinity");
    } else if (strcmp(mode, "oom") == 0) {
        WL_CHECK(wl_write_file("/proc/self/oom_score_adj", "500\n") == 0, "oom_score_adj");
    } else if (strcmp(mode, "mlock") == 0) {
        map = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        WL_CHECK(map != MAP_FAILED && mlock((void *)map, 4096) == 0, "mlock");
        map[0] = 42;
    } else if (strcmp(mode, "mlockall") == 0) {
        WL_CHECK(mlockall(MCL_CURRENT | MCL_FUTURE) == 0, "mlockall");
    } else if (strcmp(mode, "thp") == 0) {
        WL_CHECK(prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) == 0, "PR_SET_THP_DISABLE");
    } else if (strcmp(mode, "async_io") == 0) {
        int p[2];
        WL_CHECK(pipe2(p, O_CLOEXEC | O_NONBLOCK) == 0, "pipe");
        signal(SIGIO, on_sigio);
        WL_CHECK(fcntl(p[0], F_SETOWN, getpid()) == 0, "F_SETOWN");
        WL_CHECK(fcntl(p[0], F_SETFL, O_ASYNC | O_NONBLOCK) == 0, "F_SETFL O_ASYNC");
        fd = p[0];
        fd2 = p[1];
    } else if (strcmp(mode, "unix_unlinked") == 0) {
        wl_path(path, sizeof path, ".sock");
        fd = unix_listener(path);
        WL_CHECK(unlink(path) == 0, "unlink %s", path);
    } else if (strcmp(mode, "unix_rebound") == 0) {
        wl_path(path, sizeof path, ".sock");
        fd = unix_listener(path);
        WL_CHECK(unlink(path) == 0, "unlink %s", path);
        fd2 = unix_listener(path);
    } else if (strcmp(mode, "pty_slave_outside") == 0) {
        fd = posix_openpt(O_RDWR | O_NOCTTY);
        WL_CHECK(fd >= 0 && grantpt(fd) == 0 && unlockpt(fd) == 0, "posix_openpt");
        WL_CHECK(ptsname_r(fd, lnk, sizeof lnk) == 0, "ptsname");
        int ready[2];
        WL_CHECK(pipe(ready) == 0, "pipe");
        pid_t me = getpid(), d = fork();
        WL_CHECK(d >= 0, "fork");
        if (d == 0) {
            if (fork() != 0)
                _exit(0);
            close(fd);
            int s = open(lnk, O_RDWR | O_NOCTTY);
            if (s < 0 || write(ready[1], "x", 1) != 1)
                _exit(1);
            while (kill(me, 0) == 0)
                wl_sleep_ms(50);
            _exit(0);
        }
        WL_CHECK(waitpid(d, NULL, 0) == d, "waitpid");
        char c;
        WL_CHECK(read(ready[0], &c, 1) == 1, "daemon holds the slave");
        close(ready[0]);
        close(ready[1]);
    } else if (strcmp(mode, "pidfd_outside") == 0) {
        fd = (int)syscall(SYS_pidfd_open, getppid(), 0);
        WL_CHECK(fd >= 0, "pidfd_open(parent)");
    } else if (strcmp(mode, "inotify_queued") == 0) {
        wl_path(path, sizeof path, ".iq");
        WL_CHECK(wl_write_file(path, "x") == 0, "write %.300s", path);
        fd = inotify_init1(IN_CLOEXEC);
        WL_CHECK(fd >= 0 && inotify_add_watch(fd, path, IN_ATTRIB) == 1, "inotify watch");
        WL_CHECK(chmod(path, 0600) == 0, "chmod");
    } else if (strcmp(mode, "ctty_outside") == 0) {
        int m = posix_openpt(O_RDWR | O_NOCTTY);
        WL_CHECK(m >= 0 && grantpt(m) == 0 && unlockpt(m) == 0, "posix_openpt");
        WL_CHECK(ptsname_r(m, lnk, sizeof lnk) == 0, "ptsname");
        pid_t me = getpid(), d = fork();
        WL_CHECK(d >= 0, "fork");
        if (d == 0) {
            /* The daemon: reparented away from the tree, it holds the master while we live. */
            if (fork() != 0)
                _exit(0);
            while (kill(me, 0) == 0)
                wl_sleep_ms(50);
            _exit(0);
        }
        WL_CHECK(waitpid(d, NULL, 0) == d, "waitpid");
        close(m);
        WL_CHECK(setsid() == me, "setsid");
        fd = open(lnk, O_RDWR);
        WL_CHECK(fd >= 0, "open %s", lnk);
    } else if (strcmp(mode, "sched_deadline") == 0 || strcmp(mode, "thread_creds") == 0) {
        start_own_thread(mode);
    } else if (strcmp(mode, "lease_signal") == 0) {
        wl_path(path, sizeof path, ".lease");
        WL_CHECK(wl_write_file(path, "leased\n") == 0, "create %s", path);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        WL_CHECK(fd >= 0 && fcntl(fd, F_SETLEASE, F_RDLCK) == 0, "read lease on %s", path);
        WL_CHECK(fcntl(fd, F_SETSIG, SIGUSR1) == 0, "F_SETSIG");
    } else if (strcmp(mode, "traced") == 0) {
        mode_traced();
    } else if (strcmp(mode, "sem_undo") == 0) {
        fd = semget(IPC_PRIVATE, 1, IPC_CREAT | 0600);
        WL_CHECK(fd >= 0, "semget");
        struct sembuf op = { .sem_num = 0, .sem_op = 2, .sem_flg = SEM_UNDO };
        WL_CHECK(semop(fd, &op, 1) == 0, "semop SEM_UNDO");
    } else if (strcmp(mode, "shm_partial") == 0) {
        fd = shmget(IPC_PRIVATE, 3 * 4096, IPC_CREAT | 0600);
        WL_CHECK(fd >= 0, "shmget");
        map = shmat(fd, NULL, 0);
        WL_CHECK(map != (void *)-1, "shmat");
        map[4096] = 42;
        WL_CHECK(mprotect((void *)(map + 4096), 4096, PROT_READ) == 0, "mprotect");
    } else if (strcmp(mode, "fanotify") == 0) {
        wl_path(path, sizeof path, ".fan");
        WL_CHECK(wl_write_file(path, "x") == 0, "create %s", path);
        fd = fanotify_init(FAN_CLASS_NOTIF | FAN_CLOEXEC | FAN_NONBLOCK, O_RDONLY | O_LARGEFILE);
        WL_CHECK(fd >= 0, "fanotify_init");
        WL_CHECK(fanotify_mark(fd, FAN_MARK_ADD, FAN_MODIFY, AT_FDCWD, path) == 0, "fanotify_mark %s", path);
        WL_CHECK(fanotify_mark(fd, FAN_MARK_ADD | FAN_MARK_MOUNT, FAN_CLOSE_WRITE, AT_FDCWD, path) == 0,
                 "fanotify_mark the mount of %s", path);
    } else if (strcmp(mode, "aio") == 0) {
        static aio_context_t ctx;
        WL_CHECK(syscall(SYS_io_setup, 8, &ctx) == 0, "io_setup");
        map = (volatile char *)ctx;
    } else if (strcmp(mode, "mq_notify_pending") == 0) {
        char name[64];
        snprintf(name, sizeof name, "/wl-refuse-%d", (int)getpid());
        fd = mq_open(name, O_CREAT | O_EXCL | O_RDWR | O_NONBLOCK, 0600, NULL);
        WL_CHECK(fd >= 0, "mq_open");
        WL_CHECK(mq_unlink(name) == 0, "mq_unlink");
        signal(SIGUSR2, on_sigio);
        sigset_t usr2;
        sigemptyset(&usr2);
        sigaddset(&usr2, SIGUSR2);
        WL_CHECK(sigprocmask(SIG_BLOCK, &usr2, NULL) == 0 && raise(SIGUSR2) == 0, "a pending SIGUSR2");
        struct sigevent sev = { .sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGUSR2 };
        WL_CHECK(mq_notify(fd, &sev) == 0, "mq_notify");
    } else {
        wl_fail("unknown mode %s", mode);
    }

    wl_ready();
    beat_until_term();

    /* ---- Verify: the resource is exactly as it was. ---- */
    if (strcmp(mode, "traced") == 0) {
        verify_traced();
    } else if (strcmp(mode, "pty_slave_outside") == 0) {
        char name[64];
        WL_CHECK(ptsname_r(fd, name, sizeof name) == 0 && strcmp(name, lnk) == 0, "the master is still %.60s", lnk);
    } else if (strcmp(mode, "pidfd_outside") == 0) {
        WL_CHECK(syscall(SYS_pidfd_send_signal, fd, 0, NULL, 0) == 0, "pidfd of the parent still works");
    } else if (strcmp(mode, "inotify_queued") == 0) {
        struct inotify_event e;
        if (read(fd, &e, sizeof e) != (ssize_t)sizeof e || e.wd != 1 || e.mask != IN_ATTRIB)
            wl_fail("the queued inotify event is not there any more");
    } else if (strcmp(mode, "ctty_outside") == 0) {
        if (tcgetsid(fd) != getpid())
            wl_fail("the pty is no longer the controlling terminal of the session (tcgetsid %d)", (int)tcgetsid(fd));
    } else if (strcmp(mode, "cwd") == 0) {
        struct stat st;
        WL_CHECK(stat(".", &st) == 0, "stat .");
        if (st.st_nlink != 0)
            wl_fail("cwd link count %lu, expected 0 (the deleted directory)", (unsigned long)st.st_nlink);
        WL_CHECK(readlink("/proc/self/cwd", lnk, sizeof lnk - 1) > 0, "readlink cwd");
    } else if (strcmp(mode, "root_deleted") == 0) {
        struct stat st;
        WL_CHECK(stat("/", &st) == 0, "stat /");
        if (st.st_nlink != 0)
            wl_fail("root link count %lu, expected 0 (the deleted directory)", (unsigned long)st.st_nlink);
    } else if (strcmp(mode, "exe") == 0) {
        ssize_t n = readlink("/proc/self/exe", lnk, sizeof lnk - 1);
        WL_CHECK(n > 0, "readlink exe");
        lnk[n] = 0;
        if (!strstr(lnk, "(deleted)"))
            wl_fail("exe is %s, expected the deleted copy", lnk);
    } else if (strcmp(mode, "memfd_huge") == 0) {
        fd_link(fd, lnk, sizeof lnk);
        if (strcmp(lnk, "/memfd:wl-memfd-huge (deleted)") != 0 || !(fcntl(fd, F_GETFD) & FD_CLOEXEC))
            wl_fail("fd %d is %s, expected the close-on-exec memfd", fd, lnk);
    } else if (strcmp(mode, "unix_closed") == 0) {
        char buf[1001];
        size_t got = 0;
        while (got < 1000) {
            ssize_t n = read(fd, buf + got, sizeof buf - got);
            WL_CHECK(n > 0, "read the pair after %zu bytes", got);
            got += (size_t)n;
        }
        for (int i = 0; i < 1000; i++)
            if (buf[i] != (char)(i * 7))
                wl_fail("unix queue byte %d is %d", i, buf[i]);
        ssize_t n = read(fd, buf, 1);
        if (n != 0)
            wl_fail("read after the queued bytes returned %zd (errno %d), expected EOF", n, errno);
    } else if (strcmp(mode, "unix_peeked_empty") == 0) {
        char c[4];
        if (recv(fd, c, sizeof c, MSG_DONTWAIT) != 0 || recv(fd, c, sizeof c, MSG_DONTWAIT) != 1 || c[0] != 'x')
            wl_fail("the empty message and x are not queued in order");
    } else if (strcmp(mode, "unix_creds_gone") == 0) {
        char buf[8], ctl[CMSG_SPACE(sizeof(struct ucred))];
        struct iovec iov = { buf, sizeof buf };
        struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof ctl };
        if (recvmsg(fd, &m, MSG_DONTWAIT) != 4 || memcmp(buf, "gone", 4) != 0)
            wl_fail("the queued message is gone");
        struct cmsghdr *h = CMSG_FIRSTHDR(&m);
        struct ucred u;
        if (!h || h->cmsg_type != SCM_CREDENTIALS || (memcpy(&u, CMSG_DATA(h), sizeof u), u.pid != fd2))
            wl_fail("the message lost the credentials of pid %d", fd2);
    } else if (strcmp(mode, "unix_rights") == 0 || strcmp(mode, "unix_nested") == 0) {
        char buf[16], cbuf[CMSG_SPACE(sizeof(int))];
        struct iovec iov = { .iov_base = buf, .iov_len = sizeof buf };
        struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf };
        ssize_t n = recvmsg(fd, &m, MSG_DONTWAIT);
        if (n != 10 || memcmp(buf, "0123456789", 10) != 0)
            wl_fail("the queued bytes are gone (recvmsg %zd)", n);
        struct cmsghdr *h = CMSG_FIRSTHDR(&m);
        if (!h || h->cmsg_type != SCM_RIGHTS)
            wl_fail("the descriptor in flight is gone");
        int p;
        memcpy(&p, CMSG_DATA(h), sizeof p);
        if (strcmp(mode, "unix_nested") == 0) {
            m.msg_controllen = sizeof cbuf;
            if (recvmsg(p, &m, MSG_DONTWAIT) != 10 || !(h = CMSG_FIRSTHDR(&m)) || h->cmsg_type != SCM_RIGHTS)
                wl_fail("the socket in flight lost its own message or descriptor");
            memcpy(&p, CMSG_DATA(h), sizeof p);
        }
        char two[3];
        if (read(p, two, sizeof two) != 2 || memcmp(two, "hi", 2) != 0)
            wl_fail("the pipe in flight lost its bytes");
    } else if (strcmp(mode, "seccomp_args") == 0) {
        void *x = mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (x != MAP_FAILED || errno != EPERM)
            wl_fail("an executable mmap gave %p errno %d, expected EPERM from the filter", x, errno);
        void *y = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (y == MAP_FAILED)
            wl_fail("a plain mmap failed: errno %d", errno);
    } else if (strcmp(mode, "seccomp_filter") == 0) {
        char v[32];
        if (wl_status_field(0, "Seccomp", v, sizeof v) != 0 || strcmp(v, "2") != 0)
            wl_fail("Seccomp is %s, expected 2 (filter)", v);
    } else if (strcmp(mode, "fifo_deleted") == 0) {
        char buf[301];
        ssize_t n = read(fd, buf, sizeof buf);
        if (n != 300)
            wl_fail("deleted FIFO holds %zd bytes, expected 300", n);
    } else if (strcmp(mode, "dir_deleted") == 0) {
        struct stat st;
        WL_CHECK(fstat(fd, &st) == 0 && S_ISDIR(st.st_mode), "fstat the directory");
        if (st.st_nlink != 0)
            wl_fail("directory link count %lu, expected 0", (unsigned long)st.st_nlink);
    } else if (strcmp(mode, "relinked") == 0) {
        struct stat st;
        WL_CHECK(fstat(fd, &st) == 0, "fstat");
        if (st.st_nlink != 1)
            wl_fail("the open file has %lu links, expected 1 (its other name)", (unsigned long)st.st_nlink);
        char buf[16] = { 0 };
        WL_CHECK(pread(fd, buf, sizeof buf - 1, 0) == 8, "pread the original file");
        if (strcmp(buf, "original") != 0)
            wl_fail("the open file reads %s, expected original", buf);
    } else if (strcmp(mode, "tcp_half_closed") == 0) {
        char buf[16] = { 0 };
        ssize_t n = recv(fd2, buf, sizeof buf, MSG_DONTWAIT);
        if (n != 0)
            wl_fail("half-closed connection: the server end read %zd (errno %d), expected EOF", n, errno);
        WL_CHECK(send(fd2, "bye", 3, MSG_NOSIGNAL) == 3, "send on the half-closed connection");
        for (int i = 0; i < 200 && (n = recv(fd, buf, sizeof buf, MSG_DONTWAIT)) < 0 && errno == EAGAIN; i++)
            wl_sleep_ms(10);
        if (n != 3 || memcmp(buf, "bye", 3) != 0)
            wl_fail("half-closed connection: the client end read %zd bytes (errno %d), expected \"bye\"", n, errno);
    } else if (strcmp(mode, "tcp_syn_sent") == 0) {
        struct tcp_info ti;
        socklen_t tl = sizeof ti;
        WL_CHECK(getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &tl) == 0, "TCP_INFO");
        if (ti.tcpi_state != TCP_SYN_SENT)
            wl_fail("the connect in progress is in TCP state %d, expected SYN_SENT", ti.tcpi_state);
    } else if (strcmp(mode, "ebpf_filter") == 0) {
        /* The filter still filters. */
        struct sockaddr_in a;
        socklen_t len = sizeof a;
        WL_CHECK(getsockname(fd, (struct sockaddr *)&a, &len) == 0, "getsockname");
        WL_CHECK(sendto(fd2, "Bdrop", 5, 0, (struct sockaddr *)&a, sizeof a) == 5, "sendto");
        WL_CHECK(sendto(fd2, "Akeep", 5, 0, (struct sockaddr *)&a, sizeof a) == 5, "sendto");
        char buf[16] = { 0 };
        ssize_t n = -1;
        for (int i = 0; i < 200 && (n = recv(fd, buf, sizeof buf, MSG_DONTWAIT)) < 0 && errno == EAGAIN; i++)
            wl_sleep_ms(10);
        if (n != 5 || memcmp(buf, "Akeep", 5) != 0)
            wl_fail("eBPF filter: got %zd bytes %.5s (errno %d), expected Akeep", n, buf, errno);
        if (recv(fd, buf, sizeof buf, MSG_DONTWAIT) >= 0)
            wl_fail("eBPF filter: a second datagram got through");
    } else if (strcmp(mode, "accept_queue") == 0) {
        int c = accept(fd, NULL, NULL);
        WL_CHECK(c >= 0, "accept the waiting connection");
        char buf[8] = { 0 };
        ssize_t n = recv(c, buf, sizeof buf, MSG_DONTWAIT);
        if (n != 5 || memcmp(buf, "hello", 5) != 0)
            wl_fail("accepted connection: got %zd bytes (errno %d)", n, errno);
        WL_CHECK(write(c, "back", 4) == 4, "answer");
        n = recv(fd2, buf, sizeof buf, MSG_DONTWAIT);
        if (n != 4)
            wl_fail("client got %zd bytes back (errno %d)", n, errno);
    } else if (strcmp(mode, "clone_vm") == 0) {
        vm_stop = 1;
        int st = wl_wait_child(fd);
        if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
            wl_fail("the CLONE_VM child ended with status %#x", st);
        if (!vm_ack)
            wl_fail("the CLONE_VM child did not see the shared flag");
    } else if (strcmp(mode, "clone_files") == 0) {
        pid_t c = fd;
        if (syscall(SYS_kcmp, getpid(), c, 2 /* KCMP_FILES */, 0, 0) != 0)
            wl_fail("the CLONE_FILES child no longer shares the descriptor table");
        kill(c, SIGUSR1);
        struct stat st;
        int seen = 0;
        for (int i = 0; i < 300 && !seen; i++) {
            seen = fstat(200, &st) == 0;
            wl_sleep_ms(10);
        }
        kill(c, SIGKILL);
        wl_wait_child(c);
        if (!seen)
            wl_fail("descriptor 200 the CLONE_FILES child opened does not show in the root");
    } else if (strcmp(mode, "compat32") == 0) {
        char v[32];
        if (wl_status_field(0, "Threads", v, sizeof v) != 0 || strcmp(v, "2") != 0)
            wl_fail("%s threads, expected 2 (the 32-bit one still running)", v);
    } else if (strcmp(mode, "netns") == 0) {
        /* A fresh network namespace has only lo (index 1), and it is down. */
        if (if_nametoindex("lo") != 1 || if_nametoindex("eth0") != 0)
            wl_fail("not in the unshared network namespace any more");
        struct if_nameindex *ifs = if_nameindex();
        int count = 0;
        for (struct if_nameindex *i = ifs; i && i->if_index; i++)
            count++;
        if_freenameindex(ifs);
        if (count != 1)
            wl_fail("%d network devices, expected only lo (the unshared namespace)", count);
    } else if (strcmp(mode, "flock") == 0) {
        pid_t c = fork();
        WL_CHECK(c >= 0, "fork");
        if (c == 0) {
            wl_is_child = 1;
            wl_path(path, sizeof path, ".lock");
            int f = open(path, O_RDWR | O_CLOEXEC);
            if (f < 0)
                wl_fail("open %s", path);
            if (flock(f, LOCK_EX | LOCK_NB) == 0)
                wl_fail("took the lock: the root does not hold it any more");
            if (errno != EWOULDBLOCK)
                wl_fail("flock LOCK_NB: errno %d", errno);
            _exit(0);
        }
        wl_expect_child_pass(c, "lock probe");
    } else if (strcmp(mode, "sched_batch") == 0) {
        if (sched_getscheduler(0) != SCHED_BATCH)
            wl_fail("policy %d, expected SCHED_BATCH", sched_getscheduler(0));
    } else if (strcmp(mode, "affinity") == 0) {
        cpu_set_t set;
        WL_CHECK(sched_getaffinity(0, sizeof set, &set) == 0, "sched_getaffinity");
        if (CPU_COUNT(&set) != 1 || !CPU_ISSET(0, &set))
            wl_fail("affinity has %d CPUs, expected only CPU 0", CPU_COUNT(&set));
    } else if (strcmp(mode, "oom") == 0) {
        char v[32] = { 0 };
        int f = open("/proc/self/oom_score_adj", O_RDONLY | O_CLOEXEC);
        WL_CHECK(f >= 0 && read(f, v, sizeof v - 1) > 0, "read oom_score_adj");
        close(f);
        if (atoi(v) != 500)
            wl_fail("oom_score_adj %s, expected 500", v);
    } else if (strcmp(mode, "mlock") == 0) {
        char v[32];
        if (wl_status_field(0, "VmLck", v, sizeof v) != 0 || strcmp(v, "4 kB") != 0 || map[0] != 42)
            wl_fail("VmLck %s, expected 4 kB (the locked page)", v);
    } else if (strcmp(mode, "mlockall") == 0) {
        char before[32], after[32];
        WL_CHECK(wl_status_field(0, "VmLck", before, sizeof before) == 0, "VmLck");
        char *fresh = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        WL_CHECK(fresh != MAP_FAILED, "mmap");
        WL_CHECK(wl_status_field(0, "VmLck", after, sizeof after) == 0, "VmLck");
        if (atol(after) != atol(before) + 1024)
            wl_fail("VmLck %s after mapping 1 MiB (was %s): MCL_FUTURE no longer in effect", after, before);
    } else if (strcmp(mode, "thp") == 0) {
        if (prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0) != 1)
            wl_fail("THP no longer disabled");
    } else if (strcmp(mode, "async_io") == 0) {
        int before = sigio_count;
        WL_CHECK(write(fd2, "x", 1) == 1, "write the pipe");
        for (int i = 0; i < 100 && sigio_count == before; i++)
            wl_sleep_ms(10);
        if (sigio_count == before)
            wl_fail("no SIGIO for data on the O_ASYNC pipe");
    } else if (strcmp(mode, "unix_unlinked") == 0) {
        if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &(int){ 0 }, &(socklen_t){ sizeof(int) }) != 0)
            wl_fail("the listener is gone");
        wl_path(path, sizeof path, ".sock");
        if (access(path, F_OK) == 0)
            wl_fail("%s exists again", path);
    } else if (strcmp(mode, "unix_rebound") == 0) {
        wl_path(path, sizeof path, ".sock");
        int c = unix_connect(path);
        WL_CHECK(c >= 0, "connect %s", path);
        int a = accept4(fd2, NULL, NULL, SOCK_NONBLOCK);
        if (a < 0)
            wl_fail("the client did not reach the second listener (errno %d)", errno);
        WL_CHECK(fcntl(fd, F_SETFL, O_NONBLOCK) == 0, "O_NONBLOCK on the first listener");
        int b = accept4(fd, NULL, NULL, SOCK_NONBLOCK);
        if (b >= 0 || errno != EAGAIN)
            wl_fail("the first listener got a connection");
    } else if (strcmp(mode, "sched_deadline") == 0) {
        int pol = sched_getscheduler(own_tid);
        if (pol != 6)
            wl_fail("thread %d policy %d, expected 6 (SCHED_DEADLINE)", (int)own_tid, pol);
    } else if (strcmp(mode, "thread_creds") == 0) {
        char v[64], w[64], key[64];
        snprintf(key, sizeof key, "/proc/self/task/%d/status", (int)own_tid);
        FILE *f = fopen(key, "re");
        WL_CHECK(f != NULL, "open %s", key);
        char line[256];
        v[0] = 0;
        while (fgets(line, sizeof line, f))
            if (sscanf(line, "CapEff: %63s", v) == 1)
                break;
        fclose(f);
        WL_CHECK(wl_status_field(0, "CapEff", w, sizeof w) == 0, "CapEff");
        uint64_t mine = strtoull(w, NULL, 16), theirs = strtoull(v, NULL, 16);
        if (theirs != (mine & ~(1ull << 5)) || !(mine & (1ull << 5)))
            wl_fail("thread CapEff %s, leader %s: expected the leader's without CAP_KILL", v, w);
    } else if (strcmp(mode, "lease_signal") == 0) {
        if (fcntl(fd, F_GETLEASE) != F_RDLCK || fcntl(fd, F_GETSIG) != SIGUSR1)
            wl_fail("lease %d signal %d, expected a read lease with SIGUSR1", fcntl(fd, F_GETLEASE), fcntl(fd, F_GETSIG));
    } else if (strcmp(mode, "fanotify") == 0) {
        int w = open(path, O_WRONLY | O_CLOEXEC);
        WL_CHECK(w >= 0 && write(w, "y", 1) == 1, "write %s", path);
        close(w);
        /* The mount mark also reports files closed after writing (OUTFILE.ready, ...). */
        /* On a busy machine that mount's queue holds many of those before ours: read it all. */
        struct fanotify_event_metadata ev[64];
        ssize_t n, total = 0;
        int modified = 0;
        while (!modified && (n = read(fd, ev, sizeof ev)) > 0) {
            total += n;
            for (ssize_t i = 0; i < n / (ssize_t)sizeof ev[0]; i++) {
                if (ev[i].vers == FANOTIFY_METADATA_VERSION && (ev[i].mask & FAN_MODIFY))
                    modified = 1;
                if (ev[i].fd >= 0)
                    close(ev[i].fd);
            }
        }
        if (!modified)
            wl_fail("no FAN_MODIFY event after a write (read %zd bytes of events)", total);
    } else if (strcmp(mode, "aio") == 0) {
        if (syscall(SYS_io_destroy, (aio_context_t)(uintptr_t)map) != 0)
            wl_fail("io_destroy of the aio context failed: errno %d", errno);
    } else if (strcmp(mode, "mq_notify_pending") == 0) {
        sigset_t usr2, pend;
        sigemptyset(&usr2);
        sigaddset(&usr2, SIGUSR2);
        WL_CHECK(sigpending(&pend) == 0 && sigismember(&pend, SIGUSR2) == 1, "SIGUSR2 is no longer pending");
        int first = sigio_count;
        WL_CHECK(sigprocmask(SIG_UNBLOCK, &usr2, NULL) == 0, "unblock SIGUSR2");
        if (sigio_count != first + 1)
            wl_fail("unblocking SIGUSR2 ran the handler %d times, expected once", sigio_count - first);
        int before = sigio_count;
        WL_CHECK(mq_send(fd, "x", 1, 0) == 0, "mq_send");
        for (int i = 0; i < 100 && sigio_count == before; i++)
            wl_sleep_ms(10);
        if (sigio_count == before)
            wl_fail("no SIGUSR2 for a message sent to the empty queue: the registration is gone");
    } else if (strcmp(mode, "sem_undo") == 0) {
        int v = semctl(fd, 0, GETVAL);
        semctl(fd, 0, IPC_RMID);
        if (v != 2)
            wl_fail("semaphore value %d, expected 2", v);
    } else if (strcmp(mode, "shm_partial") == 0) {
        char d[256];
        int r = wl_maps_describe((void *)(map + 4096), 4096, d, sizeof d);
        shmctl(fd, IPC_RMID, NULL);
        if (r != 0 || strncmp(d, "r--s", 4) != 0 || map[4096] != 42 || map[0] != 0)
            wl_fail("segment's middle page: \"%s\", byte %d", d, map[4096]);
    } else if (strcmp(mode, "sud") == 0) {
        sud_selector = 1;
        syscall(SYS_getppid);
        if (sud_traps != 1)
            wl_fail("syscall user dispatch: %d SIGSYS traps for a blocked getppid, expected 1", (int)sud_traps);
    }
    wl_pass();
}
